"""Room physics: shoebox rooms, the array's placement, source positions and their impulse responses
(image sources, randomized ISM, a stochastic diffuse tail). It must not render dry signals or write files.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_msl.arrays import SPEED_OF_SOUND_M_S
from train_tf.simulate.settings import SimSettings


def _import_pra():
    # pyroomacoustics reads PRA_NUM_THREADS once at import; a pool of workers each using all
    # cores crawls, so pin it before the first import in this process.
    os.environ.setdefault("PRA_NUM_THREADS", "1")
    import pyroomacoustics as pra

    return pra


def sabine_absorption(rt60_s: float, room_dim_m: Sequence[float]) -> float:
    """Energy absorption coefficient giving ``rt60_s`` by Sabine's formula (may exceed 1)."""
    lx, ly, lz = room_dim_m
    volume = lx * ly * lz
    surface = 2 * (lx * ly + lx * lz + ly * lz)
    return 24 * math.log(10) * volume / (SPEED_OF_SOUND_M_S * surface * rt60_s)


def sabine_rt60(absorption: float, room_dim_m: Sequence[float]) -> float:
    """RT60 that Sabine's formula gives for an absorption coefficient."""
    lx, ly, lz = room_dim_m
    volume = lx * ly * lz
    surface = 2 * (lx * ly + lx * lz + ly * lz)
    return 24 * math.log(10) * volume / (SPEED_OF_SOUND_M_S * surface * absorption)


SURFACES = ("west", "east", "south", "north", "floor", "ceiling")
"""pyroomacoustics' names of a shoebox's surfaces: x = 0, x = Lx, y = 0, y = Ly, z = 0, z = Lz."""


def surface_areas(room_dim_m: Sequence[float]) -> np.ndarray:
    """Areas of the six :data:`SURFACES` of a shoebox."""
    lx, ly, lz = room_dim_m
    return np.array([ly * lz, ly * lz, lx * lz, lx * lz, lx * ly, lx * ly], dtype=np.float64)


def surface_absorption(mean: float, room_dim_m: Sequence[float], spread: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Absorption of the six :data:`SURFACES`: ``mean`` times ``exp(u)``, ``u`` uniform in
    +/- ``spread``, scaled so that the area-weighted mean stays ``mean`` (then clipped to
    [0.01, 0.99], which may move it a little)."""
    areas = surface_areas(room_dim_m)
    factor = np.exp(rng.uniform(-spread, spread, 6))
    return np.clip(mean * factor * areas.sum() / float(areas @ factor), 0.01, 0.99)


def _spread_materials(pra, mean: float, dim: np.ndarray, spread: float, rng: np.random.Generator):
    alpha = surface_absorption(mean, dim, spread, rng)
    areas = surface_areas(dim)
    rt60 = sabine_rt60(float(areas @ alpha / areas.sum()), dim)
    return pra.make_materials(**{name: float(a) for name, a in zip(SURFACES, alpha)}), rt60


def ism_complete_radius_m(order: int, room_dim_m: Sequence[float]) -> float:
    """Radius around a source inside which all images up to ``order`` are included.

    The images of order <= K fill a diamond-shaped pile of mirrored rooms; the largest sphere
    inside it has radius K times the smallest face-diagonal height l1 l2 / sqrt(l1^2 + l2^2).
    """
    lx, ly, lz = room_dim_m
    pairs = [(lx, ly), (lx, lz), (ly, lz)]
    return order * min(a * b / math.hypot(a, b) for a, b in pairs)


@functools.lru_cache(maxsize=64)
def _diffuse_factor(mic_key: bytes, n_mics: int, n: int, sample_rate_hz: int) -> np.ndarray:
    mic_xyz = np.frombuffer(mic_key, dtype=np.float64).reshape(n_mics, 3)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    dist = np.linalg.norm(mic_xyz[:, None, :] - mic_xyz[None, :, :], axis=-1)
    gamma = np.sinc(2.0 * freqs[:, None, None] * dist[None] / SPEED_OF_SOUND_M_S)
    w, v = np.linalg.eigh(gamma)
    return v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]


def diffuse_mix(mic_xyz: np.ndarray, independent: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Mix independent channels (M, n) into a spherically isotropic diffuse field at the mics.

    Each frequency bin is multiplied by a factor C(f) with C C^T = Gamma(f), the diffuse
    coherence sinc(2 f d_ij / c) between microphones i and j (cached per geometry and length).
    """
    m, n = independent.shape
    spec = np.fft.rfft(independent, axis=1)
    mic = np.ascontiguousarray(mic_xyz, dtype=np.float64)
    mix = _diffuse_factor(mic.tobytes(), m, n, sample_rate_hz)
    out = np.einsum("fij,jf->if", mix, spec)
    return np.fft.irfft(out, n=n, axis=1).astype(np.float32)


def stochastic_tail(rir: np.ndarray, mic_xyz: np.ndarray, t_start_s: float, rt60_s: float, length: int,
                    sample_rate_hz: int, rng: np.random.Generator, fade_s: float = 0.01) -> np.ndarray:
    """Continue truncated image-source RIRs (M, L) with a diffuse exponentially decaying tail.

    The image method with a capped order is complete only up to ``t_start_s``; after it the
    response thins out unrealistically. The tail is diffuse noise (inter-mic coherence of an
    isotropic field) decaying by 60 dB per ``rt60_s``, level-matched to the image-source energy
    in the 20 ms before ``t_start_s`` and cross-faded over ``fade_s``.
    """
    m = rir.shape[0]
    out = np.zeros((m, length), dtype=np.float32)
    n_copy = min(length, rir.shape[1])
    out[:, :n_copy] = rir[:, :n_copy]
    i0 = int(t_start_s * sample_rate_hz)
    if i0 >= length - 1:
        return out
    ref = out[:, max(0, i0 - int(0.02 * sample_rate_hz)):i0]
    power = float(np.mean(ref.astype(np.float64) ** 2)) if ref.size else 0.0
    if power <= 0.0:
        return out
    n_tail = length - i0
    noise = diffuse_mix(mic_xyz, rng.standard_normal((m, n_tail)), sample_rate_hz)
    noise /= np.sqrt(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    t = np.arange(n_tail) / sample_rate_hz
    envelope = math.sqrt(power) * 10.0 ** (-3.0 * t / rt60_s)
    n_fade = max(1, min(n_tail, int(fade_s * sample_rate_hz)))
    fade_in = np.ones(n_tail)
    fade_in[:n_fade] = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_fade) / n_fade)
    out[:, i0:] = out[:, i0:] * (1.0 - fade_in) + noise * envelope * fade_in
    return out


@dataclass
class RoomRirs:
    """Impulse responses from several source positions in one room to one array."""

    rirs: np.ndarray
    """Float32 (P, M, L): RIR from position p to microphone m."""
    azimuth_deg: np.ndarray
    """(P,) azimuth of each position in the array frame."""
    elevation_deg: np.ndarray
    """(P,) elevation of each position seen from the array centre."""
    distance_m: np.ndarray
    """(P,) horizontal distance from the array centre."""
    distance3d_m: np.ndarray
    """(P,) 3-D distance from the array centre."""
    room_dim_m: np.ndarray
    """(3,) room size."""
    rt60_s: float
    """Reverberation time (Sabine) of the room; 0 for anechoic rooms."""
    mic_xyz: np.ndarray
    """(M, 3) microphone positions in the room (with position jitter)."""
    mic_gain: np.ndarray
    """(M,) linear gain error of each microphone."""


def _ray_to_box(origin: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Distance from ``origin`` (inside the box) along ``direction`` to the box surface."""
    t = np.inf
    for k in range(3):
        if direction[k] > 1e-12:
            t = min(t, (hi[k] - origin[k]) / direction[k])
        elif direction[k] < -1e-12:
            t = min(t, (lo[k] - origin[k]) / direction[k])
    return float(t)


@dataclass
class RoomPlan:
    """A drawn room and array placement, before any source: what :func:`room_rirs` needs."""

    dim: np.ndarray
    """(3,) room size."""
    anechoic: bool
    """Direct path only."""
    rt60_s: float
    """Reverberation time (Sabine); 0 for anechoic rooms."""
    absorption: float
    """Mean energy absorption of the surfaces."""
    order: int
    """Image-source order."""
    yaw_deg: float
    """Rotation of the array's x axis in the room."""
    centre: np.ndarray
    """(3,) array centre in the room."""
    mic_xyz: np.ndarray
    """(M, 3) microphone positions (with position jitter)."""
    mic_gain: np.ndarray
    """(M,) linear gain error of each microphone."""
    lo: np.ndarray
    """(3,) lower corner of the box where sources may stand (wall clearance)."""
    hi: np.ndarray
    """(3,) upper corner of that box."""

    def to_room(self, azimuth_deg: float, elevation_deg: float, distance3d_m: float) -> np.ndarray:
        """Room coordinates of a point given in the array frame."""
        a, e = math.radians(azimuth_deg + self.yaw_deg), math.radians(elevation_deg)
        return self.centre + distance3d_m * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])

    def to_array(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(azimuth_deg, elevation_deg, horizontal distance) in the array frame of room points (P, 3)."""
        v = np.atleast_2d(xyz) - self.centre
        horiz = np.hypot(v[:, 0], v[:, 1])
        az = (np.degrees(np.arctan2(v[:, 1], v[:, 0])) - self.yaw_deg) % 360.0
        return az, np.degrees(np.arctan2(v[:, 2], horiz)), horiz


def plan_room(settings: SimSettings, rng: np.random.Generator) -> RoomPlan:
    """Draw a room, its reverberation and the array's placement (no sources yet)."""
    array = settings.mic_array()
    dim = np.array([rng.uniform(*settings.room_x_m), rng.uniform(*settings.room_y_m), rng.uniform(*settings.room_z_m)])
    anechoic = rng.uniform() < settings.anechoic_prob
    if anechoic:
        rt60 = 0.0
        absorption = 1.0
        order = 0
    else:
        rt60 = rng.uniform(*settings.rt60_s)
        absorption = sabine_absorption(rt60, dim)
        if absorption > 0.99:  # Sabine cannot make this big room that dry: use the driest it allows
            absorption = 0.99
            rt60 = sabine_rt60(absorption, dim)
        order = settings.max_image_order
    # array placement: any yaw, clear of the walls by the clearance plus the aperture
    yaw = rng.uniform(0.0, 360.0)
    radius = float(np.max(np.linalg.norm(array.positions()[:, :2], axis=1)))
    margin = settings.array_wall_clearance_m + radius
    centre = np.array([
        rng.uniform(margin, dim[0] - margin),
        rng.uniform(margin, dim[1] - margin),
        rng.uniform(max(settings.array_height_m[0], 0.3), min(settings.array_height_m[1], dim[2] - 0.3)),
    ])
    if settings.array_wall_prob > 0 and rng.uniform() < settings.array_wall_prob:
        axis, far_side = int(rng.integers(2)), bool(rng.integers(2))
        edge = radius + rng.uniform(*settings.array_wall_gap_m)
        centre[axis] = dim[axis] - edge if far_side else edge
    mic_xyz = array.rotated(yaw) + centre
    mic_xyz = mic_xyz + rng.uniform(-settings.mic_jitter_m, settings.mic_jitter_m, mic_xyz.shape)
    mic_gain = 10.0 ** (rng.uniform(-settings.mic_gain_db, settings.mic_gain_db, array.n_mics) / 20.0)
    clear = settings.source_wall_clearance_m
    return RoomPlan(dim=dim, anechoic=bool(anechoic), rt60_s=float(rt60), absorption=float(absorption), order=order,
                    yaw_deg=float(yaw), centre=centre, mic_xyz=mic_xyz, mic_gain=mic_gain,
                    lo=np.full(3, clear), hi=dim - clear)


def room_rirs(plan: RoomPlan, settings: SimSettings, positions: np.ndarray, rng: np.random.Generator,
              rir_samples: int | None = None) -> RoomRirs:
    """RIRs from source points (P, 3) in the room of ``plan`` to its microphones (image sources,
    randomized ISM, a stochastic diffuse tail beyond the complete image pile).

    ``rir_samples`` fixes the RIR length (RIR-bank mode); by default it covers the RT60."""
    pra = _import_pra()
    fs = settings.sample_rate_hz
    n_mics = len(plan.mic_xyz)
    positions = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    n_pos = len(positions)
    az, el, horiz = plan.to_array(positions)
    d3 = np.linalg.norm(positions - plan.centre, axis=1)
    dim, order, rt60 = plan.dim, plan.order, plan.rt60_s
    materials = pra.Material(plan.absorption)
    if not plan.anechoic and settings.wall_absorption_spread > 0:
        materials, rt60 = _spread_materials(pra, plan.absorption, dim, settings.wall_absorption_spread, rng)
    kwargs: dict[str, Any] = {}
    if not plan.anechoic and settings.rand_ism_m > 0:
        kwargs = {"use_rand_ism": True, "max_rand_disp": settings.rand_ism_m}
    room = pra.ShoeBox(dim, fs=fs, materials=materials, max_order=order,
                       air_absorption=False, **kwargs)
    room.add_microphone_array(plan.mic_xyz.T)
    for p in range(n_pos):
        room.add_source(positions[p])
    # the randomized ISM draws from pyroomacoustics' own generators (numpy and C++): seed both
    # from ours so a shard depends only on its seed
    pra.random.seed(numpy=int(rng.integers(2**63 - 1)), libroom=int(rng.integers(2**63 - 1)))
    room.compute_rir()
    if rir_samples is None:
        longest = max(len(room.rir[m][p]) for m in range(n_mics) for p in range(n_pos))
        rir_samples = max(longest, int((rt60 * 1.1 + 0.02) * fs) + int(settings.source_distance_m[1]
                                                                          / SPEED_OF_SOUND_M_S * fs) + 64)
    rirs = np.zeros((n_pos, n_mics, rir_samples), dtype=np.float32)
    complete_r = ism_complete_radius_m(order, dim) if order > 0 else 0.0
    for p in range(n_pos):
        raw = np.zeros((n_mics, rir_samples), dtype=np.float32)
        for m in range(n_mics):
            h = np.asarray(room.rir[m][p], dtype=np.float32)[:rir_samples]
            raw[m, :len(h)] = h
        if order > 0:
            # tail starts where the image pile stops being complete for the farthest mic
            t_direct = d3[p] / SPEED_OF_SOUND_M_S
            t_start = max(complete_r / SPEED_OF_SOUND_M_S - t_direct, 2 * t_direct + 0.005)
            t_start += (pra.constants.get("frac_delay_length") // 2) / fs
            if t_start < rt60:
                raw = stochastic_tail(raw, plan.mic_xyz, t_start, rt60, rir_samples, fs, rng)
        rirs[p] = raw
    return RoomRirs(rirs=rirs, azimuth_deg=az, elevation_deg=el, distance_m=horiz, distance3d_m=d3,
                    room_dim_m=dim, rt60_s=float(rt60), mic_xyz=plan.mic_xyz, mic_gain=plan.mic_gain)


def simulate_room(settings: SimSettings, rng: np.random.Generator, rir_samples: int | None = None) -> RoomRirs:
    """Draw a room, an array placement and ``positions_per_room`` source positions; compute RIRs.

    ``rir_samples`` fixes the RIR length (RIR-bank mode); by default it covers the RT60.
    """
    plan = plan_room(settings, rng)
    centre, lo, hi = plan.centre, plan.lo, plan.hi
    n_pos = settings.positions_per_room
    positions = np.zeros((n_pos, 3))
    d_min, d_max = settings.source_distance_m
    for p in range(n_pos):
        # draw distance and direction together and keep the first that fits, so far sources are
        # as common as near ones wherever the room allows them; fall back to any fitting distance
        for attempt in range(1200):
            d = rng.uniform(d_min, d_max)
            a = rng.uniform(0.0, 360.0)
            # elevation limited to what floor and ceiling allow at this distance, so far sources
            # are not rejected for a steep elevation that no room of this height has
            e_lo = max(settings.source_elevation_deg[0], math.degrees(math.asin(max(-1.0, (lo[2] - centre[2]) / d))))
            e_hi = min(settings.source_elevation_deg[1], math.degrees(math.asin(min(1.0, (hi[2] - centre[2]) / d))))
            e = rng.uniform(e_lo, e_hi) if e_hi > e_lo else rng.uniform(*settings.source_elevation_deg)
            u_room = np.array([math.cos(math.radians(e)) * math.cos(math.radians(a + plan.yaw_deg)),
                               math.cos(math.radians(e)) * math.sin(math.radians(a + plan.yaw_deg)),
                               math.sin(math.radians(e))])
            reach = _ray_to_box(centre, u_room, lo, hi)
            if reach >= d:
                break
            if attempt >= 200 and reach >= d_min:
                d = rng.uniform(d_min, min(d_max, reach))
                break
        else:
            raise RuntimeError(f"no source position fits in room {plan.dim.round(2)}; check the settings' ranges")
        positions[p] = centre + d * u_room
    if settings.move_chains > 0:
        positions = np.concatenate([positions, _chains(plan, settings, positions, rng)])
    return room_rirs(plan, settings, positions, rng, rir_samples)


def _chains(plan: RoomPlan, settings: SimSettings, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The two further points of each of the first ``move_chains`` positions' chains (2 * chains, 3):
    half a step and a whole step along an arc at the point's distance and elevation, brought nearer
    the array where the arc leaves the room."""
    n = min(settings.move_chains, len(positions))
    out = np.zeros((2 * n, 3))
    az, el, _ = plan.to_array(positions[:n])
    d3 = np.linalg.norm(positions[:n] - plan.centre, axis=1)
    for c in range(n):
        step = rng.uniform(*settings.move_step_deg) * (1.0 if rng.uniform() < 0.5 else -1.0)
        # the other way round where the arc runs into a wall near the array; no step if both do
        for sign in (1.0, -1.0, 0.0):
            pts = []
            for frac in (0.5, 1.0):
                u = plan.to_room(float(az[c] + sign * frac * step), float(el[c]), 1.0) - plan.centre
                pts.append((u, min(float(d3[c]), 0.98 * _ray_to_box(plan.centre, u, plan.lo, plan.hi))))
            if sign == 0.0 or min(d for _, d in pts) >= 0.3:
                break
        for k, (u, d) in enumerate(pts):
            out[2 * c + k] = plan.centre + d * u if sign != 0.0 else positions[c]
    return out
