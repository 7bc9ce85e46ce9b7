"""Room simulation for training: random shoebox rooms, arrays and sources, rendered windows.

Two modes share one renderer: *windows* writes ready multichannel int16 windows with labels
in .npz shards; *rir-bank* stores room impulse responses so training can mix dry signals on
the fly. Needs pyroomacoustics and a dry-signal bank (``train_tf.signals``); never imported
by ``edge_msl``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from scipy.signal import fftconvolve

from edge_msl.arrays import SPEED_OF_SOUND_M_S, MicArray, get_array
from edge_msl.regions import RegionLayout, encode_batch
from edge_msl.settings_check import plain_from_dict, plain_to_dict, reject_unknown_keys

log = logging.getLogger("train_tf.simulate")

FORMAT_VERSION = 1
"""Version of the shard layout; bumped when arrays or their meaning change."""

KIND_CODES = {"speech_real": 0, "speech_synth": 1, "music": 2, "noise": 3}
"""Integer code stored per source for the kind of dry signal it plays."""


@dataclass(frozen=True)
class SimSettings:
    """Everything that decides what a simulated scene looks like (stored with every dataset)."""

    array: str = "uca8-r10"
    """Built-in array name (``edge_msl.arrays``)."""
    sample_rate_hz: int = 16000
    """Sample rate of rendered audio and RIRs."""
    window_s: float = 0.5
    """Length of one rendered window."""
    room_x_m: tuple[float, float] = (3.0, 10.0)
    """Range of room length."""
    room_y_m: tuple[float, float] = (3.0, 8.0)
    """Range of room width."""
    room_z_m: tuple[float, float] = (2.4, 4.0)
    """Range of room height."""
    rt60_s: tuple[float, float] = (0.1, 0.9)
    """Range of reverberation time for reverberant rooms (clamped to what Sabine allows)."""
    anechoic_prob: float = 0.1
    """Fraction of rooms simulated without reflections (direct path only)."""
    max_image_order: int = 17
    """Cap on the image-source order; a stochastic diffuse tail continues the decay beyond it."""
    rand_ism_m: float = 0.05
    """Random image displacement (pyroomacoustics' randomized ISM) against sweeping echoes."""
    array_wall_clearance_m: float = 0.5
    """Minimum distance from the array centre to any wall."""
    array_height_m: tuple[float, float] = (0.5, 2.0)
    """Range of array height above the floor."""
    array_wall_prob: float = 0.0
    """Fraction of rooms whose array stands against a side wall (a wall-mounted camera or a
    device on a shelf) instead of anywhere clear of the walls; its talkers are then in front."""
    array_wall_gap_m: tuple[float, float] = (0.05, 0.3)
    """Range of the gap between such an array's edge and its wall."""
    wall_absorption_spread: float = 0.0
    """Spread of the six surfaces' absorption about the room's mean: each is the mean times
    ``exp(u)``, ``u`` uniform in +/- this value, rescaled so that the total absorption (and so
    Sabine's RT60) is kept - hard walls and a carpeted floor instead of one material. 0 = one
    material for every surface."""
    n_sources: tuple[int, int] = (0, 4)
    """Inclusive range of simultaneous sources per window (uniform)."""
    source_distance_m: tuple[float, float] = (0.3, 4.0)
    """Range of source distance from the array centre (3-D)."""
    source_elevation_deg: tuple[float, float] = (-40.0, 40.0)
    """Range of source elevation seen from the array."""
    source_wall_clearance_m: float = 0.2
    """Minimum distance from a source to any wall, floor or ceiling."""
    min_source_separation_deg: float = 10.0
    """Minimum azimuth difference between simultaneous sources."""
    positions_per_room: int = 8
    """Source positions simulated per room (windows draw their sources from these)."""
    windows_per_room: int = 4
    """Windows rendered per simulated room in window mode."""
    source_level_db: tuple[float, float] = (-6.0, 6.0)
    """Range of each source's dry level relative to the others (before distance attenuation)."""
    snr_diffuse_db: tuple[float, float] = (0.0, 40.0)
    """Range of SNR of spatially diffuse noise (pink/white/brown/babble/fan) w.r.t. the sources."""
    snr_sensor_db: tuple[float, float] = (5.0, 40.0)
    """Range of SNR of independent sensor (white) noise w.r.t. the sources."""
    mic_gain_db: float = 1.0
    """Per-microphone gain error, uniform in +/- this value."""
    mic_jitter_m: float = 0.001
    """Per-axis microphone position error, uniform in +/- this value."""
    level_dbfs: tuple[float, float] = (-50.0, -20.0)
    """Range of the sources' RMS level at the microphones, in dB re full scale (int16)."""
    kind_weights: tuple[tuple[str, float], ...] = (
        ("speech_real", 0.4), ("speech_synth", 0.35), ("music", 0.1), ("noise", 0.15))
    """Probability of each dry-signal kind for a source."""
    diffuse_kinds: tuple[str, ...] = ("pink", "white", "brown", "babble", "fan")
    """Noise kinds used for the diffuse field."""
    rir_bank_samples: int = 8192
    """RIR length kept in rir-bank mode (longer tails are cut)."""
    echo_prob: float = 0.0
    """On-the-fly training only (``train_tf.mixer``): probability that a source also arrives as a
    strong discrete echo from another direction - its own signal through the RIR of another
    position of the room, delayed and attenuated, and *not* labelled a source - as a whiteboard,
    window or screen near the array makes in a real room. Teaches the network that a delayed
    coherent copy is a reflection, not a second talker. 0 = off (the shoebox's own reflections)."""
    echo_gain_db: tuple[float, float] = (-12.0, -3.0)
    """Range of an echo's direct-path level relative to its source's direct path."""
    echo_delay_ms: tuple[float, float] = (1.0, 12.0)
    """Range of an echo's delay after its source."""
    echo_min_separation_deg: float = 30.0
    """Smallest azimuth difference between an echo and every source of its window."""
    move_chains: int = 0
    """RIR banks only: this many of each room's positions start a *chain*, two more positions
    along an arc at the same distance and elevation (half a step, then a whole step of
    ``move_step_deg`` away), stored after the ``positions_per_room`` positions: position c's
    chain is (c, P + 2c, P + 2c + 1). The mixer renders a talker walking through them during one
    window (``move_prob``). 0 = none (the bank is as before)."""
    move_step_deg: tuple[float, float] = (8.0, 45.0)
    """Range of a chain's whole step, either way round: the azimuth a talker covers in one
    window (45 degrees in 0.5 s is 1.5 m/s at 1 m)."""
    move_prob: float = 0.0
    """On-the-fly training only: probability that a window's first source walks along one of its
    room's chains during the window, cross-faded start -> middle -> end (labelled at the middle,
    where it is at the window's centre). Needs a bank with ``move_chains`` > 0."""
    gate_prob: float = 0.0
    """On-the-fly training only: probability that a source starts or stops talking inside the
    window (or stopped up to ``gate_lead_s`` before it, leaving only its reverberation), so the
    network learns to drop a talker who stopped and to take one who starts, as turn-taking does."""
    gate_lead_s: float = 0.3
    """How long before the window a gated source may have stopped (its tail still in the window)."""
    min_voice_s: float = 0.0
    """On-the-fly training only: a source is labelled present only with at least this much voice
    (active 20 ms frames of its dry signal, after gating) inside the window, the rule by which the
    project's scene truth lists a talker. 0 = every source is labelled (as before)."""
    regions: RegionLayout = field(default_factory=RegionLayout)
    """Region layout used for the stored region targets (training may re-encode)."""

    @property
    def window_samples(self) -> int:
        """Samples in one window."""
        return int(round(self.window_s * self.sample_rate_hz))

    def mic_array(self) -> MicArray:
        """The array geometry these settings simulate."""
        return get_array(self.array)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return plain_to_dict(self)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "SimSettings":
        """Settings from :meth:`to_dict` output; unknown keys are refused."""
        reject_unknown_keys(cls, cfg, "simulation setting")
        cfg = dict(cfg)
        if "regions" in cfg:
            cfg["regions"] = RegionLayout.from_dict(cfg["regions"])
        if "kind_weights" in cfg:
            cfg["kind_weights"] = tuple((str(k), float(w)) for k, w in cfg["kind_weights"])
        return plain_from_dict(cls, cfg, "simulation setting")

    def replace(self, **changes: Any) -> "SimSettings":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- room physics

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


# --------------------------------------------------------------------------- rendering

@dataclass
class Window:
    """One rendered window and its labels."""

    audio: np.ndarray
    """Float32 (W, M) at full-scale units (int16 full scale = 1.0), before quantization."""
    azimuth_deg: np.ndarray
    """(K,) source azimuths in the array frame."""
    elevation_deg: np.ndarray
    """(K,) source elevations."""
    distance_m: np.ndarray
    """(K,) horizontal distances."""
    distance3d_m: np.ndarray
    """(K,) 3-D distances."""
    level_db: np.ndarray
    """(K,) direct-path level of each source at the array, dB relative to the loudest."""
    kind: np.ndarray
    """(K,) dry-signal kind code (``KIND_CODES``)."""
    snr_diffuse_db: float
    """SNR of the diffuse noise."""
    snr_sensor_db: float
    """SNR of the sensor noise."""
    level_dbfs: float
    """RMS level of the sources at the microphones."""


def choose_positions(azimuth_deg: np.ndarray, k: int, min_sep_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` position indices whose azimuths are pairwise at least ``min_sep_deg`` apart."""
    chosen: list[int] = []
    for p in rng.permutation(len(azimuth_deg)):
        if len(chosen) == k:
            break
        diffs = np.abs((azimuth_deg[chosen] - azimuth_deg[p] + 180.0) % 360.0 - 180.0)
        if np.all(diffs >= min_sep_deg):
            chosen.append(int(p))
    return np.array(chosen, dtype=np.int64)


def _pick_kind(settings: SimSettings, bank, rng: np.random.Generator) -> str:
    kinds = [(k, w) for k, w in settings.kind_weights if w > 0 and len(bank.indices(k)) > 0]
    if not kinds:
        raise ValueError("the dry-signal bank has none of the kinds in settings.kind_weights")
    weights = np.array([w for _, w in kinds])
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))][0]


def diffuse_noise(kind: str, mic_xyz: np.ndarray, n: int, bank, rng: np.random.Generator, fs: int) -> np.ndarray:
    """Diffuse noise (M, n) of a given kind with the coherence of an isotropic field."""
    from train_tf import signals

    m = mic_xyz.shape[0]
    if kind == "babble":
        chans = np.stack([signals.babble(bank, n, rng) for _ in range(m)])
    else:
        chans = np.stack([signals.noise(kind, n, rng, fs) for _ in range(m)])
    return diffuse_mix(mic_xyz, chans.astype(np.float64), fs)


def render_window(room: RoomRirs, chosen: np.ndarray, settings: SimSettings, bank, rng: np.random.Generator) -> Window:
    """Convolve dry signals with the chosen positions' RIRs and add noise and level."""
    fs = settings.sample_rate_hz
    n_win = settings.window_samples
    n_mics = room.rirs.shape[1]
    rir_len = room.rirs.shape[2]
    clean = np.zeros((n_mics, n_win), dtype=np.float64)
    k = len(chosen)
    kinds = np.zeros(k, dtype=np.int8)
    rel_db = rng.uniform(*settings.source_level_db, size=k)
    for i, p in enumerate(chosen):
        kind = _pick_kind(settings, bank, rng)
        kinds[i] = KIND_CODES[kind]
        idx = int(rng.choice(bank.indices(kind)))
        dry = bank.segment(idx, n_win + rir_len - 1, rng).astype(np.float64) * 10.0 ** (rel_db[i] / 20.0)
        wet = fftconvolve(dry[None, :], room.rirs[p].astype(np.float64), mode="valid", axes=1)
        clean += wet[:, :n_win]
    clean *= room.mic_gain[:, None]
    p_ref = float(np.mean(clean ** 2)) if k else 0.0
    if p_ref <= 0.0:
        p_ref = 1.0
    snr_d = rng.uniform(*settings.snr_diffuse_db)
    snr_s = rng.uniform(*settings.snr_sensor_db)
    kind_d = settings.diffuse_kinds[int(rng.integers(len(settings.diffuse_kinds)))]
    diffuse = diffuse_noise(kind_d, room.mic_xyz, n_win, bank, rng, fs).astype(np.float64) * room.mic_gain[:, None]
    diffuse *= math.sqrt(p_ref / (np.mean(diffuse ** 2) + 1e-20) * 10.0 ** (-snr_d / 10.0))
    sensor = rng.standard_normal((n_mics, n_win)) * math.sqrt(p_ref * 10.0 ** (-snr_s / 10.0))
    level = rng.uniform(*settings.level_dbfs)
    gain = 10.0 ** (level / 20.0) / math.sqrt(p_ref)
    audio = ((clean + diffuse + sensor) * gain).T.astype(np.float32)
    direct_db = rel_db - 20.0 * np.log10(room.distance3d_m[chosen]) if k else np.zeros(0)
    if k:
        direct_db = direct_db - direct_db.max()
    return Window(audio=audio, azimuth_deg=room.azimuth_deg[chosen], elevation_deg=room.elevation_deg[chosen],
                  distance_m=room.distance_m[chosen], distance3d_m=room.distance3d_m[chosen], level_db=direct_db,
                  kind=kinds, snr_diffuse_db=snr_d, snr_sensor_db=snr_s, level_dbfs=level)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Full-scale float audio to int16 as an ADC would deliver it (rounded, clipped)."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def room_windows(settings: SimSettings, bank, rng: np.random.Generator) -> Iterator[tuple[Window, RoomRirs]]:
    """Simulate one room and render ``windows_per_room`` windows in it."""
    room = simulate_room(settings, rng)
    n_lo, n_hi = settings.n_sources
    for _ in range(settings.windows_per_room):
        k = int(rng.integers(n_lo, n_hi + 1))
        chosen = choose_positions(room.azimuth_deg, k, settings.min_source_separation_deg, rng)
        yield render_window(room, chosen, settings, bank, rng), room


# --------------------------------------------------------------------------- shards

def _pad(values: Sequence[np.ndarray], width: int, fill: float, dtype) -> np.ndarray:
    out = np.full((len(values), width), fill, dtype=dtype)
    for i, v in enumerate(values):
        out[i, :len(v)] = v
    return out


def render_shard(settings: SimSettings, bank, seed: int, shard: int, n_samples: int) -> dict[str, np.ndarray]:
    """Arrays of one window-mode shard; depends only on (settings, bank, seed, shard)."""
    rng = np.random.default_rng([seed, shard])
    windows: list[Window] = []
    rooms: list[RoomRirs] = []
    while len(windows) < n_samples:
        for win, room in room_windows(settings, bank, rng):
            windows.append(win)
            rooms.append(room)
            if len(windows) == n_samples:
                break
    k_max = max(settings.n_sources[1], 1)
    az = _pad([w.azimuth_deg for w in windows], k_max, np.nan, np.float32)
    dist = _pad([w.distance_m for w in windows], k_max, np.nan, np.float32)
    level = _pad([w.level_db for w in windows], k_max, np.nan, np.float32)
    return {
        "audio": np.stack([to_int16(w.audio) for w in windows]),
        "n_sources": np.array([len(w.azimuth_deg) for w in windows], dtype=np.int8),
        "azimuth_deg": az,
        "elevation_deg": _pad([w.elevation_deg for w in windows], k_max, np.nan, np.float32),
        "distance_m": dist,
        "distance3d_m": _pad([w.distance3d_m for w in windows], k_max, np.nan, np.float32),
        "level_db": level,
        "kind": _pad([w.kind for w in windows], k_max, -1, np.int8),
        "rt60_s": np.array([r.rt60_s for r in rooms], dtype=np.float32),
        "room_dim_m": np.stack([r.room_dim_m for r in rooms]).astype(np.float32),
        "snr_diffuse_db": np.array([w.snr_diffuse_db for w in windows], dtype=np.float32),
        "snr_sensor_db": np.array([w.snr_sensor_db for w in windows], dtype=np.float32),
        "level_dbfs": np.array([w.level_dbfs for w in windows], dtype=np.float32),
        "region_target": encode_batch(settings.regions, az, dist, np.where(np.isfinite(level), level, 0.0)),
    }


def render_rir_shard(settings: SimSettings, seed: int, shard: int, n_rooms: int) -> dict[str, np.ndarray]:
    """Arrays of one RIR-bank shard (float16 RIRs cut to ``rir_bank_samples``)."""
    rng = np.random.default_rng([seed, shard])
    rooms = [simulate_room(settings, rng, rir_samples=settings.rir_bank_samples) for _ in range(n_rooms)]
    return {
        "rirs": np.stack([r.rirs for r in rooms]).astype(np.float16),
        "azimuth_deg": np.stack([r.azimuth_deg for r in rooms]).astype(np.float32),
        "elevation_deg": np.stack([r.elevation_deg for r in rooms]).astype(np.float32),
        "distance_m": np.stack([r.distance_m for r in rooms]).astype(np.float32),
        "distance3d_m": np.stack([r.distance3d_m for r in rooms]).astype(np.float32),
        "rt60_s": np.array([r.rt60_s for r in rooms], dtype=np.float32),
        "room_dim_m": np.stack([r.room_dim_m for r in rooms]).astype(np.float32),
        "mic_xyz": np.stack([r.mic_xyz for r in rooms]).astype(np.float32),
        "mic_gain": np.stack([r.mic_gain for r in rooms]).astype(np.float32),
    }


class RirBank:
    """RIR-bank shards loaded in memory, mixed with dry signals into windows on the fly."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        meta = _read_meta(directory)
        if meta.get("mode") != "rir-bank":
            raise ValueError(f"{directory} is not an RIR bank (mode {meta.get('mode')!r}); "
                             f"write one with: python -m train_tf.simulate rir-bank --out {directory}")
        self.settings = SimSettings.from_dict(meta["settings"])
        self.arrays = load_shards(shard_files(directory))

    @property
    def n_rooms(self) -> int:
        """Rooms in the bank."""
        return int(self.arrays["rirs"].shape[0])

    def room(self, r: int) -> RoomRirs:
        """Room ``r`` as float32 RIRs."""
        a = self.arrays
        return RoomRirs(rirs=a["rirs"][r].astype(np.float32), azimuth_deg=a["azimuth_deg"][r].astype(np.float64),
                        elevation_deg=a["elevation_deg"][r].astype(np.float64),
                        distance_m=a["distance_m"][r].astype(np.float64),
                        distance3d_m=a["distance3d_m"][r].astype(np.float64), room_dim_m=a["room_dim_m"][r],
                        rt60_s=float(a["rt60_s"][r]), mic_xyz=a["mic_xyz"][r].astype(np.float64),
                        mic_gain=a["mic_gain"][r].astype(np.float64))

    def mix(self, bank, rng: np.random.Generator, settings: SimSettings | None = None) -> Window:
        """One window from a random room and random positions of the bank."""
        settings = settings or self.settings
        room = self.room(int(rng.integers(self.n_rooms)))
        k = int(rng.integers(settings.n_sources[0], settings.n_sources[1] + 1))
        chosen = choose_positions(room.azimuth_deg, k, settings.min_source_separation_deg, rng)
        return render_window(room, chosen, settings, bank, rng)


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {directory} is not a dataset written by train_tf.simulate")
    return json.loads(path.read_text())


_WORKER: dict[str, Any] = {}
_SINGLE_THREAD_ENV = {"PRA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                      "MKL_NUM_THREADS": "1"}


def _worker_init(bank_path: str | None) -> None:
    os.environ.update(_SINGLE_THREAD_ENV)
    if bank_path:
        from train_tf.signals import DryBank

        _WORKER["bank"] = DryBank.load(bank_path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _shard_job(job: tuple[str, str, dict[str, Any], int, int, int]) -> tuple[int, int, float]:
    mode, out_dir, settings_dict, seed, shard, count = job
    settings = SimSettings.from_dict(settings_dict)
    t0 = time.perf_counter()
    if mode == "windows":
        arrays = render_shard(settings, _WORKER["bank"], seed, shard, count)
    else:
        arrays = render_rir_shard(settings, seed, shard, count)
    _write_npz(Path(out_dir) / f"shard-{shard:05d}.npz", arrays)
    return shard, count, time.perf_counter() - t0


def _shard_ok(path: Path) -> bool:
    try:
        with np.load(path) as z:
            return len(z.files) > 0
    except Exception:  # a truncated or corrupt shard is rewritten
        return False


def write_dataset(out_dir: str | Path, mode: str, n_items: int, settings: SimSettings, seed: int,
                  bank_path: str | Path | None, shard_size: int, workers: int, progress: bool = True) -> dict[str, Any]:
    """Write ``n_items`` windows (mode ``windows``) or rooms (mode ``rir-bank``) in shards.

    Deterministic for a seed: shard i depends only on (settings, dry bank, seed, i). Shards
    already on disk are kept, so an interrupted run resumes where it stopped.
    Returns a summary with the measured throughput.
    """
    from tqdm import tqdm

    if mode not in ("windows", "rir-bank"):
        raise ValueError(f"mode must be 'windows' or 'rir-bank', got {mode!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank_hash = None
    if mode == "windows":
        if bank_path is None:
            raise ValueError("window mode needs a dry-signal bank (--bank); build one with python -m train_tf.signals build")
        from train_tf.signals import DryBank

        bank_hash = DryBank.load(bank_path).content_hash
    meta = {"format_version": FORMAT_VERSION, "mode": mode, "seed": seed, "n_items": n_items,
            "shard_size": shard_size, "settings": settings.to_dict(), "bank_hash": bank_hash,
            "array": settings.mic_array().to_dict()}
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        keys = ("format_version", "mode", "seed", "shard_size", "settings", "bank_hash")
        if any(old.get(k) != meta.get(k) for k in keys):
            raise ValueError(f"{out} already holds a dataset with other settings, seed or bank; "
                             f"use another --out or delete it")
    meta_path.write_text(json.dumps(meta, indent=2))
    n_shards = math.ceil(n_items / shard_size)
    jobs = []
    done = 0
    for s in range(n_shards):
        count = min(shard_size, n_items - s * shard_size)
        if _shard_ok(out / f"shard-{s:05d}.npz"):
            done += count
            continue
        jobs.append((mode, str(out), settings.to_dict(), seed, s, count))
    unit = "windows" if mode == "windows" else "rooms"
    t0 = time.perf_counter()
    bar = tqdm(total=n_items, initial=done, unit=unit, disable=not progress, file=sys.stderr, smoothing=0.1)
    made = 0
    if jobs:
        import multiprocessing as mp

        # Workers are always fresh spawned processes with single-threaded numeric libraries, so a
        # shard comes out bit-identical whatever the worker count (multi-threaded BLAS sums in
        # another order); the variables must be set before the child imports numpy.
        saved = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}
        os.environ.update(_SINGLE_THREAD_ENV)
        try:
            ctx = mp.get_context("spawn")
            with ctx.Pool(max(1, workers), initializer=_worker_init,
                          initargs=(str(bank_path) if bank_path else None,)) as pool:
                for _, count, _ in pool.imap_unordered(_shard_job, jobs):
                    bar.update(count)
                    made += count
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    bar.close()
    elapsed = time.perf_counter() - t0
    summary = {"out": str(out), "mode": mode, "made": made, "resumed": done, "seconds": round(elapsed, 2),
               "per_second": round(made / elapsed, 3) if made and elapsed > 0 else None, "workers": workers}
    (out / "done.json").write_text(json.dumps(summary, indent=2))
    return summary


def shard_files(directory: str | Path) -> list[Path]:
    """The shard files of a dataset or RIR bank, in order; refuses a directory without any."""
    files = sorted(f for f in Path(directory).glob("shard-*.npz") if f.name[6:-4].isdigit())  # not *.tmp.npz
    if not files:
        raise ValueError(f"{directory} holds no shards; write some with python -m train_tf.simulate")
    return files


def load_shards(paths: Sequence[Path], keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of several shards concatenated along the first axis (all keys, or only ``keys``)."""
    parts = []
    for path in paths:
        with np.load(path) as z:
            parts.append({k: z[k] for k in (keys or z.files)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load_windows(directory: str | Path) -> dict[str, np.ndarray]:
    """All shards of a window-mode dataset concatenated (fine for small sets)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    if meta.get("mode") != "windows":
        raise ValueError(f"{directory} is not a window dataset (mode {meta.get('mode')!r})")
    return load_shards(shard_files(directory))


# --------------------------------------------------------------------------- statistics

def label_stats(directory: str | Path, png: str | Path | None = None) -> dict[str, Any]:
    """Label statistics of a window dataset: sources per window, azimuth/distance histograms, RT60."""
    data = load_windows(directory)
    n = data["n_sources"].astype(int)
    az = data["azimuth_deg"][np.isfinite(data["azimuth_deg"])]
    dist = data["distance_m"][np.isfinite(data["distance_m"])]
    el = data["elevation_deg"][np.isfinite(data["elevation_deg"])]
    rt60 = data["rt60_s"]
    counts = {int(k): int(np.sum(n == k)) for k in range(0, int(n.max()) + 1)}
    az_hist, az_edges = np.histogram(az, bins=8, range=(0, 360))
    d_hist, d_edges = np.histogram(dist, bins=8, range=(0, 4))
    rt_hist, rt_edges = np.histogram(rt60, bins=[0, 1e-6, 0.3, 0.6, 10])
    stats = {
        "windows": int(len(n)),
        "sources_per_window": counts,
        "azimuth_hist": {f"{az_edges[i]:.0f}-{az_edges[i + 1]:.0f}": int(c) for i, c in enumerate(az_hist)},
        "distance_hist_m": {f"{d_edges[i]:.1f}-{d_edges[i + 1]:.1f}": int(c) for i, c in enumerate(d_hist)},
        "rt60_bands": dict(zip(["anechoic", "<0.3", "0.3-0.6", ">0.6"], map(int, rt_hist))),
        "elevation_deg": {"min": float(el.min()) if el.size else None, "max": float(el.max()) if el.size else None},
        "level_dbfs": {"min": float(data["level_dbfs"].min()), "max": float(data["level_dbfs"].max())},
        "clipped_fraction": float(np.mean(np.abs(data["audio"]).max(axis=(1, 2)) >= 32767)),
    }
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(2, 2, figsize=(10, 7))
        ax[0, 0].bar(list(counts), list(counts.values()))
        ax[0, 0].set(title="sources per window", xlabel="sources", ylabel="windows")
        ax[0, 1].hist(az, bins=36, range=(0, 360))
        ax[0, 1].set(title="source azimuth (array frame)", xlabel="azimuth (deg)")
        ax[1, 0].hist(dist, bins=40, range=(0, 4))
        ax[1, 0].set(title="source horizontal distance", xlabel="distance (m)")
        ax[1, 1].hist(rt60[rt60 > 0], bins=30, range=(0, 1.0))
        ax[1, 1].set(title=f"RT60 of reverberant rooms ({int(np.sum(rt60 == 0))} anechoic windows)",
                     xlabel="RT60 (s)")
        fig.suptitle(f"{directory}: {len(n)} windows")
        fig.tight_layout()
        fig.savefig(png, dpi=90)
        plt.close(fig)
    return stats


def print_stats(stats: dict[str, Any], stream=None) -> None:
    """Human-readable tables of :func:`label_stats` (stdout by default)."""
    stream = stream or sys.stdout
    print(f"windows: {stats['windows']}   clipped windows: {stats['clipped_fraction']:.3f}   "
          f"level {stats['level_dbfs']['min']:.1f}..{stats['level_dbfs']['max']:.1f} dBFS", file=stream)
    for title, key in (("sources per window", "sources_per_window"), ("azimuth (deg)", "azimuth_hist"),
                       ("horizontal distance (m)", "distance_hist_m"), ("RT60 band (s)", "rt60_bands")):
        print(f"\n{title}", file=stream)
        total = max(1, sum(stats[key].values()))
        for k, v in stats[key].items():
            print(f"  {str(k):>10s} {v:6d}  {'#' * int(round(40 * v / total))}", file=stream)


# --------------------------------------------------------------------------- CLI

def _settings_from_args(args: argparse.Namespace) -> SimSettings:
    s = SimSettings(array=args.array, window_s=args.window_s, sample_rate_hz=args.sample_rate_hz)
    if getattr(args, "min_sources", None) is not None or getattr(args, "max_sources", None) is not None:
        lo = args.min_sources if args.min_sources is not None else s.n_sources[0]
        hi = args.max_sources if args.max_sources is not None else s.n_sources[1]
        if not 0 <= lo <= hi:
            raise SystemExit(f"--min-sources/--max-sources must satisfy 0 <= min <= max, got {lo}..{hi}")
        s = s.replace(n_sources=(lo, hi))
    overrides: dict[str, Any] = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE (VALUE as JSON, e.g. rt60_s=[0.1,0.8]), got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    if overrides:
        try:
            s = SimSettings.from_dict({**s.to_dict(), **overrides})
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"bad --set: {exc}") from None
    return s


def _bench(args: argparse.Namespace, settings: SimSettings) -> int:
    """Throughput of window mode, RIR-bank simulation and on-the-fly mixing, as a table."""
    import tempfile

    from train_tf.signals import DryBank

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        win = write_dataset(Path(tmp) / "w", "windows", args.n, settings, args.seed, args.bank, 16, args.workers)
        rir = write_dataset(Path(tmp) / "r", "rir-bank", args.rooms, settings, args.seed, None, 4, args.workers)
        rir_bank = RirBank(Path(tmp) / "r")
        bank = DryBank.load(args.bank)
        rng = np.random.default_rng(args.seed)
        rir_bank.mix(bank, rng)  # warm-up
        n_mix = 200
        t0 = time.perf_counter()
        for _ in range(n_mix):
            rir_bank.mix(bank, rng)
        mix_rate = n_mix / (time.perf_counter() - t0)
    rows = [
        ("windows mode (simulate + render + write)", f"{args.workers} proc", f"{win['per_second']:.1f} windows/s"),
        ("rir-bank mode (simulate + write)", f"{args.workers} proc",
         f"{rir['per_second']:.2f} rooms/s = {rir['per_second'] * settings.positions_per_room:.1f} RIR sets/s"),
        ("rir-bank on-the-fly mixing (numpy)", "1 proc", f"{mix_rate:.1f} windows/s"),
    ]
    print(f"array {settings.array}, window {settings.window_s} s, {settings.n_sources[0]}-{settings.n_sources[1]} "
          f"sources, {settings.windows_per_room} windows per room, {settings.positions_per_room} positions per room")
    for name, procs, rate in rows:
        print(f"{name:45s} {procs:>7s}  {rate}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train_tf.simulate windows|rir-bank|stats|scene``."""
    parser = argparse.ArgumentParser(prog="python -m train_tf.simulate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--array", default="uca8-r10", help="built-in array name (default uca8-r10)")
        p.add_argument("--window-s", type=float, default=0.5, help="window length in seconds (default 0.5)")
        p.add_argument("--sample-rate-hz", type=int, default=16000)
        p.add_argument("--min-sources", type=int, default=None, help="fewest sources per window (default 0)")
        p.add_argument("--max-sources", type=int, default=None, help="most sources per window (default 4)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override any SimSettings field, VALUE as JSON (repeatable), e.g. --set rt60_s=[0.1,0.8]")

    p = sub.add_parser("windows", help="write rendered windows with labels in .npz shards")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of windows")
    p.add_argument("--bank", required=True, help="dry-signal bank (.npz from python -m train_tf.signals build)")
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("rir-bank", help="write RIRs of random rooms (mix dry signals at training time)")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--rooms", type=int, required=True)
    p.add_argument("--shard-size", type=int, default=16, help="rooms per shard")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("stats", help="print label statistics of a window dataset and plot them")
    p.add_argument("dataset")
    p.add_argument("--png", help="write the histograms to this PNG")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p = sub.add_parser("bench", help="measure throughput of both modes (windows/s, rooms/s, mixed windows/s)")
    common(p)
    p.add_argument("--bank", required=True)
    p.add_argument("--n", type=int, default=256, help="windows to write in window mode")
    p.add_argument("--rooms", type=int, default=32, help="rooms to simulate in rir-bank mode")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=None, help="scratch directory (default: a temporary one)")
    p = sub.add_parser("scene", help="simulate one scene, write it as a WAV and print its ground truth")
    common(p)
    p.add_argument("--bank", required=True)
    p.add_argument("--wav", help="write the window here as the board captures it (all its channels, 16-bit PCM)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    if args.cmd == "stats":
        stats = label_stats(args.dataset, args.png)
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print_stats(stats)
        if args.png:
            print(f"\nplot: {args.png}", file=sys.stderr)
        return 0
    settings = _settings_from_args(args)
    if args.cmd == "bench":
        return _bench(args, settings)
    if args.cmd == "scene":
        from train_tf.signals import DryBank

        bank = DryBank.load(args.bank)
        rng = np.random.default_rng(args.seed)
        win, room = next(room_windows(settings.replace(windows_per_room=1), bank, rng))
        truth = {
            "array": settings.array, "room_dim_m": [round(float(v), 2) for v in room.room_dim_m],
            "rt60_s": round(room.rt60_s, 3), "snr_diffuse_db": round(win.snr_diffuse_db, 1),
            "snr_sensor_db": round(win.snr_sensor_db, 1), "level_dbfs": round(win.level_dbfs, 1),
            "sources": [{"azimuth_deg": round(float(a), 1), "elevation_deg": round(float(e), 1),
                         "distance_m": round(float(d), 2), "level_db": round(float(lv), 1),
                         "kind": [k for k, c in KIND_CODES.items() if c == kd][0]}
                        for a, e, d, lv, kd in zip(win.azimuth_deg, win.elevation_deg, win.distance_m,
                                                   win.level_db, win.kind)],
        }
        if args.wav:
            import wave

            from edge_msl.arrays import get_array, to_capture

            pcm = to_capture(get_array(settings.array), to_int16(win.audio))  # the board's capture layout
            with wave.open(args.wav, "wb") as w:
                w.setnchannels(pcm.shape[1])
                w.setsampwidth(2)
                w.setframerate(settings.sample_rate_hz)
                w.writeframes(pcm.tobytes())
            truth["wav"] = args.wav
        print(json.dumps(truth, indent=2))
        return 0
    if args.cmd == "windows":
        summary = write_dataset(args.out, "windows", args.n, settings, args.seed, args.bank, args.shard_size,
                                args.workers)
    else:
        summary = write_dataset(args.out, "rir-bank", args.rooms, settings, args.seed, None, args.shard_size,
                                args.workers)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
