"""Start-up self-check of the capture channel order: from the first seconds of audio, find dead
channels, channels that are not microphones of the configured array, and a rotated channel order
(the seeed-voicecard bug), and say the fix. Pure numpy; it reads frames, it must not open devices.

Why rotations: the seeed-voicecard driver (ReSpeaker 4-mic/6-mic HATs, AC108) delivers the
channels of a multichannel stream in an order that changes between recordings: "reference channels
shift places" between runs of ``arecord -c 8`` on the 6-mic HAT, where the two playback loopback
channels belong on 6 and 7 (respeaker/seeed-voicecard#309, also #334); the 4-mic HAT has come out as
3,4,1,2 (#145) and the 4-mic linear kit as 1234 / 1278 / 5678 (#301). A maintainer's explanation
(#289): the Pi's I2S sees the frames as stereo at a multiple of the rate, so a stream can start on the
wrong slot, i.e. the frame is cyclically shifted. So the model here is: whatever belongs on capture
channel c arrives on channel (c + k) mod n_channels, with k fixed until the device is reopened.
A mic that is silent while the others hear the room also happens on these boards: the driver's
service once set the 3rd channel's capture volume very low through a stray amixer call (#194, #240).

How: a channel is *mic-like* when it is live (not digital zero, not far below the loudest channels)
and, in a low band where every pair of mics of this array hears a diffuse field coherently
(|sinc(2 f d / c)| >= sinc(0.5)), it is about as coherent with at least half of the other channels
as the mics typically are. Loopback channels are silent or carry playback the mics do not share.
Rotation k is *consistent* when every channel it puts a mic on is mic-like. Among consistent
rotations the mic channels' complex coherence is fitted, per frequency, by what the geometry
allows: the diffuse field sinc(2 f d_ij / c) plus up to three plane waves (talkers); a rotation
that breaks the geometry leaves a larger residual. Rotations that map the array onto itself (a
uniform circle turned by one mic) cannot be told apart by any signal; the report says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .arrays import SPEED_OF_SOUND_M_S, ArrayConfigError, MicArray

log = logging.getLogger("edge_msl.channel_check")

CHECK_MODES = ("warn", "remap", "off")
"""Values of the daemon's ``[device] channel_check``: log a warning, also remap a clear rotation, or skip."""

CHECK_SECONDS = 2.0
"""Audio the start-up check wants: 124 Welch segments, so an unrelated channel's coherence is ~0.01."""

MIN_SECONDS = 0.5
"""Below this the check answers "cannot tell" (too few segments for a coherence estimate)."""

DEAD_BELOW_DB = 30.0
"""A channel this far below the median of the n_mics loudest channels is dead (mics differ by a few dB)."""

ROOM_MSC = 0.1
"""The mics hear the room when their typical low-band coherence score is above this (a diffuse field gives
>= 0.4 less sensor noise; independent noise gives about 1 / segments, ~0.01 for 2 s)."""

FLOOR_FACTOR = 5.0
"""A residual gap counts only above this many times the coherence-estimation noise (see estimation_floor)."""

RELATIVE_MSC = 0.5
"""A channel is foreign when its coherence score is below this fraction of the mics' typical score
(a loopback that the mics also hear through a speaker is coherent, but much less than mic pairs)."""

_ROLE_BAND_HZ = (100.0, 300.0, 1000.0)
"""Low edge, and bounds for the high edge c / (4 d_max) of the band that decides which channels are mics."""

_FIT_BAND_HZ = (200.0, 4000.0)
"""Band of the geometry fit (speech has its energy here; above, small position errors start to matter)."""

MAX_WAVES = 3
"""Plane waves the geometry fit may use: up to three simultaneous talkers (or a talker and its strongest echo)."""

STOP_GAIN = 0.01
"""The fit stops adding plane waves when one more explains less than this fraction of the coherence energy."""

POOL_FRACTION = 8
"""After the first plane wave, the next is searched among 1/POOL_FRACTION of the directions."""

_AZ_STEP_DEG = (2.0, 10.0)
"""Bounds of the azimuth step of the direction grid (the step itself follows the aperture)."""

_EL_STEP_DEG = 20.0


@dataclass(frozen=True)
class ChannelReport:
    """What the channel check found in the first seconds of a capture."""

    array_name: str
    """The configured array."""
    status: str
    """``ok``, ``rotated`` (k found, remap possible), ``bad_channels`` (dead or foreign mics) or ``cannot_tell``."""
    reason: str
    """One line: why this status."""
    problem: bool
    """True when something is off and the user should act (logged as a warning)."""
    seconds: float
    """Audio analysed."""
    level_dbfs: tuple[float, ...]
    """RMS level of each capture channel (DC removed), dB re full scale; -inf for digital zero."""
    dead_channels: tuple[int, ...]
    """Capture channels that are digital zero or more than DEAD_BELOW_DB below the loudest ones."""
    foreign_channels: tuple[int, ...]
    """Live capture channels that do not share the room's sound with the mics (loopback, noise, hum)."""
    room_coherence: tuple[float, ...]
    """Per capture channel: MSC in the low band with its m-th most coherent live partner (m = half the mics)."""
    channel_map: tuple[int, ...]
    """The configured channel map."""
    rotation: int | None
    """k such that channel c's content arrives on (c + k) mod n_channels; 0 when ok, None when unknown."""
    remapped_channel_map: tuple[int, ...] | None
    """The channel map that puts the mics back (only when status is ``rotated``)."""
    consistent_rotations: tuple[int, ...]
    """Rotations under which every mic lands on a mic-like channel."""
    geometry_residual: tuple[tuple[int, float], ...]
    """(k, residual) of the geometry fit for each rotation fitted; 0 = fully explained, 1 = not at all."""
    lookalike_rotations: tuple[int, ...]
    """Rotations that map this array onto itself: indistinguishable from 0 by any signal (a turned array)."""
    rotating_driver: bool = False
    """The array's description names a driver known to rotate channels between opens (seeed-voicecard)."""
    pair_distance_m: tuple[float, ...] = ()
    """Distance of each mic pair (i < j, row-major), for the two rows below."""
    pair_coherence: tuple[float, ...] = ()
    """Measured real coherence of each mic pair under the chosen map, averaged over 100 Hz .. c / (2 d_max)."""
    pair_diffuse: tuple[float, ...] = ()
    """The diffuse-field prediction sinc(2 f d / c) of each pair, averaged over the same band."""

    def describe(self) -> str:
        """One line for the log: what was found and the fix."""
        where = f"channel check ({self.array_name}, {self.seconds:.1f} s)"
        if self.status == "ok":
            note = "" if self.reason == _FITS else f" ({self.reason.replace(_FITS + '; ', '')})"
            if self.lookalike_rotations:
                note += (f"; a rotation by {_join(self.lookalike_rotations)} would look the same (it turns the "
                         f"array), so check once that a talker at a known direction comes out there")
            return f"{where}: ok, mics on channels {list(self.channel_map)}{note}"
        if self.status == "rotated":
            cmap = list(self.remapped_channel_map or ())
            return (f"{where}: channel order rotated by {self.rotation} ({self.reason}); the mics are on channels "
                    f"{cmap}. Fix: restart edge-msl so the driver reopens the device{_SEEED if self.rotating_driver else ''}, "
                    f"or set [device] channel_check = \"remap\" to follow it; for a fixed wiring set "
                    f"[array] channel_map = {cmap}")
        if self.status == "bad_channels":
            seeed = (" (seeed-voicecard's service has turned channel 3 down before, respeaker/seeed-voicecard#240)"
                     if self.rotating_driver else "")
            return (f"{where}: {self.reason}. Fix: check the mic and its cable, the capture volume of that channel "
                    f"in alsamixer{seeed}, and that [array] is this board")
        fix = ("; speak or play sound near the array and restart to check again" if not self.problem else
               "; restart edge-msl so the driver reopens the device, and check that [array] is this board")
        return f"{where}: cannot tell the channel order: {self.reason}{fix}"


_FITS = "the configured order fits best"
_SEEED_VOICECARD_ARRAYS = ("respeaker-4mic", "respeaker-6mic")
"""Built-in arrays captured through the seeed-voicecard (AC108) driver, which rotates channels."""
_SEEED = " (seeed-voicecard picks a new order on each open, respeaker/seeed-voicecard#309)"


def _join(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values)


# --------------------------------------------------------------------------------------- signal

def _to_float(frames: np.ndarray) -> np.ndarray:
    x = np.asarray(frames)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return x.astype(np.float64) / float(-info.min if info.min < 0 else info.max)
    return x.astype(np.float64)


def channel_levels_dbfs(frames: np.ndarray) -> np.ndarray:
    """RMS level of each channel of (n, n_channels) frames after removing its mean; -inf for silence."""
    x = _to_float(frames)
    x = x - x.mean(axis=0, keepdims=True)
    rms = np.sqrt(np.mean(np.square(x), axis=0))
    with np.errstate(divide="ignore"):
        return np.where(rms > 0, 20.0 * np.log10(np.maximum(rms, 1e-300)), -np.inf)


def _segment_length(sample_rate_hz: int) -> int:
    # ~32 ms at any rate: 31 Hz bins, fine enough for the low band of the smallest array, and the same
    # number of bins (so the same cost) at 48 kHz as at 16 kHz
    return 2 * int(round(0.016 * sample_rate_hz))


def cross_spectra(frames: np.ndarray, sample_rate_hz: int, f_lo_hz: float, f_hi_hz: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Welch cross-spectral matrices (F, C, C) of the channels in [f_lo_hz, f_hi_hz], with their frequencies."""
    x = _to_float(frames)
    x = x - x.mean(axis=0, keepdims=True)
    n = _segment_length(sample_rate_hz)
    hop = n // 2
    n_seg = 1 + (len(x) - n) // hop
    if n_seg < 1:
        raise ValueError(f"{len(x)} frames are fewer than one analysis segment of {n}")
    idx = np.arange(n)[None, :] + hop * np.arange(n_seg)[:, None]
    seg = x[idx] * np.hanning(n)[None, :, None]
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    keep = (freqs >= f_lo_hz) & (freqs <= f_hi_hz)
    spec = np.fft.rfft(seg, axis=1)[:, keep, :]
    s = np.einsum("sfi,sfj->fij", spec, spec.conj()) / n_seg
    return freqs[keep], s


def coherence(spectra: np.ndarray) -> np.ndarray:
    """Complex coherence S_ij / sqrt(S_ii S_jj) of cross-spectral matrices (F, C, C); 0 where a channel is silent."""
    p = np.real(np.einsum("fii->fi", spectra))
    norm = np.sqrt(p[:, :, None] * p[:, None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(norm > 0, spectra / np.where(norm > 0, norm, 1.0), 0.0)
    return c


# --------------------------------------------------------------------------------------- geometry

def _direction_grid(positions_m: np.ndarray, f_max_hz: float) -> np.ndarray:
    # steps at which a plane wave's phase across the array moves by at most ~0.5 rad at f_max
    aperture = float(np.max(np.linalg.norm(positions_m[:, None] - positions_m[None], axis=-1)))
    step = math.degrees(0.5 * SPEED_OF_SOUND_M_S / (math.pi * f_max_hz * max(aperture, 1e-3)))
    step = 360.0 / math.ceil(360.0 / float(np.clip(step, _AZ_STEP_DEG[0], _AZ_STEP_DEG[1])))
    az = np.radians(np.arange(0.0, 360.0, step))
    planar = np.ptp(positions_m[:, 2]) < 1e-6
    # a planar array hears up and down alike: half the sphere is enough
    els = np.arange(0.0, 61.0, _EL_STEP_DEG) if planar else np.arange(-60.0, 61.0, _EL_STEP_DEG)
    el = np.radians(els)
    a, e = np.meshgrid(az, el, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def _solve_small(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Batched g c = r for 1x1 to 3x3 systems in closed form (LAPACK's per-system overhead dominates
    at this size), larger ones by numpy."""
    n = g.shape[-1]
    if n == 1:
        return r / g[..., 0]
    if n == 2:
        a, b, c, d = g[..., 0, 0], g[..., 0, 1], g[..., 1, 0], g[..., 1, 1]
        det = a * d - b * c
        return np.stack([(d * r[..., 0] - b * r[..., 1]) / det, (a * r[..., 1] - c * r[..., 0]) / det], axis=-1)
    if n == 3:
        cof = np.empty_like(g)
        for i in range(3):
            for j in range(3):
                i1, i2 = [k for k in range(3) if k != i]
                j1, j2 = [k for k in range(3) if k != j]
                cof[..., i, j] = (-1) ** (i + j) * (g[..., i1, j1] * g[..., i2, j2] - g[..., i1, j2] * g[..., i2, j1])
        det = np.sum(g[..., 0, :] * cof[..., 0, :], axis=-1)
        # inverse = adjugate / det, adjugate = cofactor transposed
        return np.einsum("...ji,...j->...i", cof, r) / det[..., None]
    return np.linalg.solve(g, r[..., None])[..., 0]


def _nnls(gram: np.ndarray, rhs: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with non-negative coefficients, batched over leading axes (D, F), for q <= 4
    columns: every subset of columns is solved and the best feasible one kept (exact for small q).
    Only the last column may vary along D; subsets without it are solved once.
    Returns (residual (D, F), coefficients (D, F, q))."""
    q = gram.shape[-1]
    best = np.broadcast_to(yy, rhs.shape[:-1]).copy()  # no column at all
    coef = np.zeros(rhs.shape)
    for mask in range(1, 2 ** q):
        idx = [i for i in range(q) if mask >> i & 1]
        g = gram[..., idx, :][..., :, idx]
        r = rhs[..., idx]
        if q - 1 not in idx:
            g, r = g[:1], r[:1]
        # tiny ridge: a wave from the direction of one already chosen makes the system singular
        ridge = 1e-9 * (np.trace(g, axis1=-2, axis2=-1)[..., None, None] + 1e-12) * np.eye(len(idx))
        c = _solve_small(g + ridge, r)
        res = yy - np.sum(c * r, axis=-1)
        better = np.all(c >= 0, axis=-1) & (res < best)
        best = np.where(better, res, best)
        full = np.zeros(c.shape[:-1] + (q,))
        full[..., idx] = c
        coef = np.where(better[..., None], full, coef)
    return best, coef


def n_segments(n_frames: int, sample_rate_hz: int) -> int:
    """Number of Welch segments :func:`cross_spectra` averages for ``n_frames`` frames."""
    n = _segment_length(sample_rate_hz)
    return max(0, 1 + (n_frames - n) // (n // 2))


def estimation_floor(coh: np.ndarray, n_seg: int) -> float:
    """Expected squared error of the coherence estimate relative to the coherence energy, on the bins and
    pairs :func:`geometry_residual` uses: var(C_hat) ~ (1 - |C|^2)^2 / segments per pair and bin."""
    coh = coh[::2]
    i, j = _pairs(coh.shape[1])
    m2 = np.abs(coh[:, i, j]) ** 2
    total = float(np.sum(m2))
    return float(np.sum((1.0 - m2) ** 2) / max(n_seg, 1) / total) if total > 0 else 1.0


def geometry_residual(coh: np.ndarray, freqs_hz: np.ndarray, positions_m: np.ndarray) -> float:
    """How badly the mics' coherence (F, M, M) fits the geometry: per frequency a non-negative mix of the
    diffuse field sinc(2 f d / c) and up to MAX_WAVES plane waves, each from one direction for all
    frequencies (uncorrelated talkers add such terms; directions are picked greedily on a grid).

    Returns the unexplained fraction of the pairs' coherence energy (0 = perfect fit, 1 = none)."""
    # neighbouring bins of a Hann-windowed spectrum are correlated: every other one carries the information
    coh, freqs_hz = coh[::2], freqs_hz[::2]
    i, j = _pairs(len(positions_m))
    y = coh[:, i, j]                                                  # (F, P)
    yy = np.sum(np.abs(y) ** 2, axis=1)                               # (F,)
    total = float(np.sum(yy))
    if total <= 0:
        return 1.0
    d = np.linalg.norm(positions_m[i] - positions_m[j], axis=1)
    diffuse = np.sinc(2.0 * freqs_hz[:, None] * d[None, :] / SPEED_OF_SOUND_M_S).astype(complex)  # (F, P)
    u = _direction_grid(positions_m, float(freqs_hz[-1]))
    tau = -(positions_m @ u.T) / SPEED_OF_SOUND_M_S                   # (M, D): arrival time per mic
    dtau = (tau[i] - tau[j]).T                                        # (D, P)
    # a plane wave's coherence between mics i and j: exp(-j 2 pi f (tau_i - tau_j))
    waves = np.exp(-2j * np.pi * freqs_hz[None, :, None] * dtau[:, None, :])  # (D, F, P)
    n_dir, n_f, n_p = waves.shape
    chosen = [diffuse]
    wave_y = np.real(np.einsum("dfp,fp->df", waves.conj(), y))
    pool = np.arange(n_dir)
    best_res = total
    for step in range(MAX_WAVES):
        q = len(chosen) + 1
        cand = waves[pool]
        gram = np.empty((len(pool), n_f, q, q))
        rhs = np.empty((len(pool), n_f, q))
        for a, col_a in enumerate(chosen):
            for b, col_b in enumerate(chosen):
                gram[..., a, b] = np.real(np.sum(col_a.conj() * col_b, axis=1))[None]
            rhs[..., a] = np.real(np.sum(col_a.conj() * y, axis=1))[None]
            cross = np.real(np.einsum("fp,dfp->df", col_a.conj(), cand))
            gram[..., a, q - 1] = cross
            gram[..., q - 1, a] = cross
        gram[..., q - 1, q - 1] = n_p
        rhs[..., q - 1] = wave_y[pool]
        res_df, coef = _nnls(gram, rhs, yy[None, :])
        res = np.sum(res_df, axis=1)
        k = int(np.argmin(res))
        gain = best_res - float(res[k])
        best_res = min(best_res, float(res[k]))
        if gain < STOP_GAIN * total or step == MAX_WAVES - 1:
            break
        chosen.append(cand[k])
        # the next wave is searched among the directions that best match what is still unexplained
        # (orthogonal matching pursuit's pick, then the exact fit among those): a full search costs 8x
        fitted = sum(coef[k, :, a, None] * col for a, col in enumerate(chosen))
        left = y - fitted
        match = np.sum(np.maximum(np.real(np.einsum("dfp,fp->df", waves.conj(), left)), 0.0) ** 2, axis=1)
        pool = np.argsort(match)[::-1][:max(8, n_dir // POOL_FRACTION)]
    return float(np.clip(best_res / total, 0.0, 1.0))


def lookalike_rotations(array: MicArray, tol_m: float = 1e-3) -> tuple[int, ...]:
    """Rotations k != 0 of the capture channels that put mics only on mic channels and keep every
    pairwise distance: no signal can tell them from the configured order (the array just looks turned)."""
    n = array.n_channels
    base = list(array.channel_map)
    pos = array.positions()
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    out = []
    for k in range(1, n):
        moved = [(c + k) % n for c in base]
        if set(moved) != set(base):
            continue
        # mic i's signal now sits where the map expects mic perm[i]
        perm = [base.index(c) for c in moved]
        if np.all(np.abs(dist[np.ix_(perm, perm)] - dist) <= tol_m):
            out.append(k)
    return tuple(out)


def rotated_map(array: MicArray, k: int) -> tuple[int, ...]:
    """The channel map when everything moved k channels up (mod n_channels)."""
    return tuple((c + k) % array.n_channels for c in array.channel_map)


def _equivalent(array: MicArray, k1: int, k2: int, tol_m: float = 1e-3) -> bool:
    """True when rotations k1 and k2 put the same channels on mics with the same pairwise distances."""
    m1, m2 = rotated_map(array, k1), rotated_map(array, k2)
    if set(m1) != set(m2):
        return False
    pos = array.positions()
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    perm = [m1.index(c) for c in m2]
    return bool(np.all(np.abs(dist[np.ix_(perm, perm)] - dist) <= tol_m))


# --------------------------------------------------------------------------------------- the check

def check_channels(array: MicArray, frames: np.ndarray, *, sample_rate_hz: int | None = None) -> ChannelReport:
    """Check captured ``frames`` (n, array.n_channels) of int16/int32/float against ``array``'s channel map.

    ``sample_rate_hz`` defaults to the array's native rate; pass the capture rate when it differs."""
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != array.n_channels:
        found = frames.shape[1] if frames.ndim == 2 else f"shape {frames.shape}"
        raise ArrayConfigError(f"channel check: array {array.name!r} has {array.n_channels} capture channels, "
                               f"the frames have {found}; capture all {array.n_channels} channels of the device")
    fs = int(sample_rate_hz or array.native_rate_hz)
    seconds = len(frames) / fs
    n_ch, n_mics = array.n_channels, array.n_mics
    levels = channel_levels_dbfs(frames)
    base = dict(array_name=array.name, seconds=seconds, level_dbfs=tuple(float(v) for v in levels),
                channel_map=tuple(array.channel_map), lookalike_rotations=lookalike_rotations(array),
                rotating_driver=array.name in _SEEED_VOICECARD_ARRAYS or any(
                    w in f"{array.source} {array.notes}".lower() for w in ("seeed-voicecard", "ac108")))

    def report(status: str, reason: str, problem: bool, **kw) -> ChannelReport:
        fields = dict(dead_channels=(), foreign_channels=(), room_coherence=(), rotation=None,
                      remapped_channel_map=None, consistent_rotations=(), geometry_residual=())
        fields.update(kw)
        return ChannelReport(status=status, reason=reason, problem=problem, **base, **fields)

    if seconds < MIN_SECONDS or len(frames) < 4 * _segment_length(fs):
        return report("cannot_tell", f"only {seconds:.2f} s of audio (needs {MIN_SECONDS} s, {CHECK_SECONDS} s "
                                     f"recommended)", False)

    # -- levels: digital zero or far below the loudest channels
    finite = np.sort(levels[np.isfinite(levels)])[::-1]
    ref_db = float(np.median(finite[:n_mics])) if len(finite) else -np.inf
    dead = [c for c in range(n_ch) if not np.isfinite(levels[c]) or levels[c] < ref_db - DEAD_BELOW_DB]
    live = [c for c in range(n_ch) if c not in dead]

    # -- roles: coherent with at least half of the other mics in a band where a diffuse field is coherent
    d_max = array.aperture_m()
    f_role = float(np.clip(SPEED_OF_SOUND_M_S / (4.0 * d_max), _ROLE_BAND_HZ[1], _ROLE_BAND_HZ[2]))
    freqs, spec = cross_spectra(frames, fs, _ROLE_BAND_HZ[0], min(f_role, 0.45 * fs))
    msc = np.mean(np.abs(coherence(spec)) ** 2, axis=0)
    need = max(1, math.ceil((n_mics - 1) / 2))
    score = np.zeros(n_ch)
    for c in live:
        others = np.sort([msc[c, o] for o in live if o != c])[::-1]
        score[c] = others[need - 1] if len(others) >= need else 0.0
    # the mics' typical score; relative to it, because how coherent mics are depends on the room's SNR
    typical = float(np.median(np.sort(score)[::-1][:n_mics]))
    n_seg = n_segments(len(frames), fs)
    mic_like = {c for c in live if score[c] >= max(5.0 / n_seg, RELATIVE_MSC * typical)}
    foreign = tuple(c for c in live if c not in mic_like)
    kw = dict(dead_channels=tuple(dead), foreign_channels=foreign, room_coherence=tuple(float(s) for s in score))
    levels_txt = ", ".join("zero" if not np.isfinite(v) else f"{v:.0f}" for v in levels)

    enough = max(2, n_mics // 2 + 1)
    if len(live) < enough:
        return report("cannot_tell", f"{len(live)} of {n_ch} channels carry signal (levels dBFS: {levels_txt})",
                      False, **kw)
    if typical < ROOM_MSC or len(mic_like) < enough:
        return report("cannot_tell", f"the channels share no sound (silence or sensor noise only: typical low-band "
                                     f"coherence {typical:.2f} < {ROOM_MSC}; levels dBFS: {levels_txt})", False, **kw)

    # -- rotations under which every mic channel is mic-like
    def misses(k: int) -> list[int]:
        return [c for c in rotated_map(array, k) if c not in mic_like]

    def bad_channels(k: int) -> ChannelReport:
        cmap = rotated_map(array, k)
        parts = []
        for c in misses(k):
            what = "digital zero" if not np.isfinite(levels[c]) else (
                f"{levels[c]:.0f} dBFS, {ref_db - levels[c]:.0f} dB below the others" if c in dead else
                f"live ({levels[c]:.0f} dBFS) but not coherent with the other mics ({score[c]:.2f})")
            parts.append(f"channel {c} (mic {cmap.index(c)}) is {what}")
        rot = f" with the channel order rotated by {k}" if k else ""
        return report("bad_channels", "; ".join(parts) + rot, True, rotation=k if k else None, **kw)

    consistent = [k for k in range(n_ch) if not misses(k)]
    if not consistent:
        return bad_channels(min(range(n_ch), key=lambda k: (len(misses(k)), k != 0)))

    # -- geometry: fit every consistent rotation, keep the best distinguishable one
    pos = array.positions()
    f_hi = min(_FIT_BAND_HZ[1], 0.45 * fs)
    freqs_g, spec_g = cross_spectra(frames, fs, _FIT_BAND_HZ[0], f_hi)
    coh_all = coherence(spec_g)
    fits: dict[int, float] = {}
    for k in consistent:
        # look-alike rotations fit exactly alike: fit one of each kind
        twin = next((j for j in fits if _equivalent(array, j, k)), None)
        if twin is not None:
            fits[k] = fits[twin]
            continue
        m = list(rotated_map(array, k))
        fits[k] = geometry_residual(coh_all[:, m][:, :, m], freqs_g, pos)
    best = min(consistent, key=lambda k: (fits[k], k != 0))
    twins = sorted(k for k in consistent if _equivalent(array, k, best))
    # a rival is believed to be worse only if it leaves at least twice the residual, by more than noise
    m_best = list(rotated_map(array, best))
    noise = FLOOR_FACTOR * estimation_floor(coh_all[:, m_best][:, :, m_best], n_seg)
    close = sorted(k for k in consistent if k not in twins and fits[k] - fits[best] < max(noise, fits[best]))
    roles_decide = len(twins) == len(consistent)  # dead/foreign channels alone pin the rotation down
    kw.update(consistent_rotations=tuple(consistent),
              geometry_residual=tuple((k, round(fits[k], 4)) for k in consistent),
              **_pair_rows(frames, fs, array, rotated_map(array, best)))
    if 0 not in consistent:
        # a dead mic can make a rotation look consistent when the spare channels are live (a loopback the
        # mics hear): then the configured order without its dead channels explains the room better
        dead0 = misses(0)
        spare = set(range(n_ch)) - set(array.channel_map)
        # ... unless the non-mic channels are exactly the spare ones moved by the best rotation (seeed's bug)
        moved = {(c + best) % n_ch for c in spare} == set(range(n_ch)) - mic_like
        if not moved and all(c in dead for c in dead0) and n_mics - len(dead0) >= 3:
            keep = [i for i, c in enumerate(array.channel_map) if c not in dead0]
            chans = [array.channel_map[i] for i in keep]
            fit0 = geometry_residual(coh_all[:, chans][:, :, chans], freqs_g, pos[keep])
            if fits[best] - fit0 >= max(noise, fit0):
                return bad_channels(0)
    if 0 in twins:
        why = _FITS + (
            f"; rotation(s) {_join(close)} fit about as well" if close else "")
        return report("ok", why, False, rotation=0, **kw)
    if close:
        tied = sorted(twins + close)
        why = (f"rotations {_join(tied)} fit the geometry about equally "
               f"(residuals {', '.join(f'{fits[k]:.2f}' for k in tied)})")
        # the configured order among the equals: no evidence that anything is wrong
        return report("cannot_tell", why, 0 not in close, **kw)
    if len(twins) > 1:
        return report("cannot_tell", f"the order is rotated by one of {_join(twins)}, which look alike for this "
                                     f"array", True, **kw)
    why = _rotation_reason(array, best, dead, foreign, fits, roles_decide)
    return report("rotated", why, True, rotation=best, remapped_channel_map=rotated_map(array, best), **kw)


def _rotation_reason(array: MicArray, k: int, dead: Sequence[int], foreign: Sequence[int], fits: dict[int, float],
                     roles_decide: bool) -> str:
    expected = sorted(set(range(array.n_channels)) - set(array.channel_map))
    found = sorted(set(dead) | set(foreign))
    if roles_decide and expected:
        return f"the non-mic channels are on {_join(found)}, expected on {_join(expected)}"
    if 0 in fits:
        return f"geometry fit: residual {fits[k]:.2f} against {fits[0]:.2f} for the configured order"
    return (f"the configured order puts mics on non-mic channel(s) {_join(sorted(set(found) & set(array.channel_map)))}"
            f"; geometry fit: residual {fits[k]:.2f}")


def _pair_rows(frames: np.ndarray, fs: int, array: MicArray, cmap: Sequence[int]) -> dict:
    # the low band up to the first zero of the longest pair's sinc: there pairs differ most
    f_hi = min(SPEED_OF_SOUND_M_S / (2.0 * array.aperture_m()), 0.45 * fs)
    freqs, spec = cross_spectra(np.asarray(frames)[:, list(cmap)], fs, _ROLE_BAND_HZ[0], f_hi)
    coh = coherence(spec)
    i, j = _pairs(array.n_mics)
    pos = array.positions()
    d = np.linalg.norm(pos[i] - pos[j], axis=1)
    measured = np.mean(coh[:, i, j].real, axis=0)
    diffuse = np.mean(np.sinc(2.0 * freqs[:, None] * d[None, :] / SPEED_OF_SOUND_M_S), axis=0)
    return dict(pair_distance_m=tuple(round(float(v), 4) for v in d),
                pair_coherence=tuple(round(float(v), 3) for v in measured),
                pair_diffuse=tuple(round(float(v), 3) for v in diffuse))


def check_and_remap(array: MicArray, frames: np.ndarray, remap: bool, *, sample_rate_hz: int | None = None
                    ) -> tuple[MicArray, ChannelReport]:
    """The start-up hook: check ``frames`` (all capture channels), log the result in one line (a warning
    with the fix when something is off) and return the array to use: with the remapped channel map only
    when the rotation is unambiguous and ``remap`` is allowed, else ``array`` unchanged."""
    rep = check_channels(array, frames, sample_rate_hz=sample_rate_hz)
    if rep.status == "rotated" and remap and rep.remapped_channel_map is not None:
        log.warning("channel check (%s, %.1f s): channel order rotated by %d (%s); remapped: using channel_map %s "
                    "until the device is reopened%s", array.name, rep.seconds, rep.rotation, rep.reason,
                    list(rep.remapped_channel_map), _SEEED if rep.rotating_driver else "")
        return dataclasses.replace(array, channel_map=rep.remapped_channel_map), rep
    if rep.problem:
        log.warning("%s", rep.describe())
    else:
        log.info("%s", rep.describe())
    return array, rep


class StartupCheck:
    """The daemon's start-up hook around :func:`check_and_remap`: hold back the first ``seconds`` of
    capture, check them in a worker thread (so the capture keeps being read and does not overrun),
    then release the held frames and pass everything after them through. ``array`` is the array to
    use (remapped only in mode "remap" after a clear rotation). Call :meth:`reset` whenever the device
    was reopened: the seeed-voicecard driver picks a new order on each open."""

    def __init__(self, array: MicArray, mode: str = "warn", *, sample_rate_hz: int,
                 seconds: float = CHECK_SECONDS, background: bool = True) -> None:
        if mode not in CHECK_MODES:
            raise ValueError(f"channel_check = {mode!r} is invalid; allowed: {', '.join(CHECK_MODES)}")
        self.configured = array
        self.mode = mode
        self.sample_rate_hz = int(sample_rate_hz)
        self.need_frames = max(1, int(round(seconds * self.sample_rate_hz)))
        self.background = background
        self.reset()

    def reset(self, array: MicArray | None = None) -> None:
        """Check again from the next frames (after a reopen; ``array``: a newly configured array)."""
        self.configured = array or self.configured
        self.array = self.configured
        self.report: ChannelReport | None = None
        self.done = self.mode == "off"
        self._held: list[np.ndarray] = []
        self._n_held = 0
        self._worker: threading.Thread | None = None
        self._result: tuple[MicArray, ChannelReport] | None = None

    def _run(self, frames: np.ndarray) -> None:
        try:
            self._result = check_and_remap(self.configured, frames, self.mode == "remap",
                                           sample_rate_hz=self.sample_rate_hz)
        except Exception:  # a failed self-check must not stop the audio: go on with the configured map
            log.exception("channel check failed; using the configured channel map")
            self._result = None

    def feed(self, frames: np.ndarray) -> np.ndarray:
        """Frames to process now: none while the first seconds are held and checked, then all held ones."""
        if self.done:
            return frames
        if len(frames):
            self._held.append(np.asarray(frames))
            self._n_held += len(frames)
        if self._worker is None and self._n_held >= self.need_frames:
            audio = np.concatenate(self._held)
            self._worker = threading.Thread(target=self._run, args=(audio,), name="channel-check", daemon=True)
            if self.background:
                self._worker.start()
            else:
                self._worker.run()
        if self._worker is not None and not self._worker.is_alive():
            return self._release()
        return np.asarray(frames)[:0]

    def finish(self) -> np.ndarray:
        """Wait for a running check and release what is held (end of stream)."""
        if self._worker is not None and self._worker.is_alive():
            self._worker.join()
        return self._release() if self._held else np.zeros((0, self.configured.n_channels), np.int16)

    def _release(self) -> np.ndarray:
        if self._result is not None:
            self.array, self.report = self._result
        self.done = True
        out = np.concatenate(self._held) if self._held else np.zeros((0, self.configured.n_channels), np.int16)
        self._held, self._n_held = [], 0
        return out


# --------------------------------------------------------------------------------------- orientation

@dataclass(frozen=True)
class Isometry:
    """A rotation or reflection of the plane that maps the array's mics onto its own mics."""

    kind: str
    """``rotation`` (by ``angle_deg``, counter-clockwise) or ``reflection`` (about the axis at ``angle_deg``)."""
    angle_deg: float
    """Rotation angle, or azimuth of the mirror axis, in [0, 360) (an axis also in [0, 180))."""
    perm: tuple[int, ...]
    """Mic i lands on mic ``perm[i]``."""

    def image_deg(self, azimuth_deg: float) -> float:
        """Where a talker at ``azimuth_deg`` appears when the channel of each mic i carries mic ``perm[i]``."""
        if self.kind == "rotation":
            return (azimuth_deg - self.angle_deg) % 360.0
        return (2.0 * self.angle_deg - azimuth_deg) % 360.0

    def describe(self) -> str:
        if self.kind == "rotation":
            return f"turned by {self.angle_deg:.0f} deg"
        return f"mirrored about the {self.angle_deg:.0f} deg axis"


def planar_isometries(array: MicArray, tol_m: float = 1e-3) -> list[Isometry]:
    """Every rotation (other than none) and reflection of the x-y plane about the array centre that maps
    the mics onto themselves. None of them can be seen in the sound alone: the pairwise distances, and
    so every delay and coherence, are those of the configured order with the talkers moved to the image
    directions; only a talker at a known direction tells them apart."""
    pos = array.positions()
    if np.ptp(pos[:, 2]) > tol_m:
        return []
    xy = pos[:, :2]
    radius = np.linalg.norm(xy, axis=1)
    ref = int(np.argmax(radius))
    a_ref = math.atan2(xy[ref, 1], xy[ref, 0])
    out: list[Isometry] = []
    seen = set()
    for j in range(len(xy)):
        if abs(radius[j] - radius[ref]) > tol_m:
            continue
        a_j = math.atan2(xy[j, 1], xy[j, 0])
        for kind in ("rotation", "reflection"):
            if kind == "rotation":
                t = a_j - a_ref
                m = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
                angle = math.degrees(t) % 360.0
            else:
                b = 0.5 * (a_j + a_ref)  # the axis halfway between the mic and its image
                m = np.array([[math.cos(2 * b), math.sin(2 * b)], [math.sin(2 * b), -math.cos(2 * b)]])
                angle = math.degrees(b) % 180.0
            img = xy @ m.T
            d = np.linalg.norm(img[:, None] - xy[None], axis=-1)
            perm = tuple(int(k) for k in np.argmin(d, axis=1))
            if np.max(np.min(d, axis=1)) > tol_m or len(set(perm)) != len(perm):
                continue
            if perm == tuple(range(len(xy))) or perm in seen:
                continue
            seen.add(perm)
            out.append(Isometry(kind, round(angle, 6), perm))
    return out


def mirrored_map(array: MicArray, iso: Isometry) -> tuple[int, ...]:
    """The channel map that undoes ``iso``: with ``array.channel_map`` each mic i's channel carried mic
    ``iso.perm[i]``; the returned map reads mic j from the channel that carried it."""
    inv = [0] * len(iso.perm)
    for i, j in enumerate(iso.perm):
        inv[j] = i
    return tuple(array.channel_map[inv[j]] for j in range(len(inv)))


ORIENTATION_TOL_DEG = 10.0
"""A talker found within this of a predicted direction matches it (room echoes and the grid move the peak)."""

MIN_PEAK = 0.15
"""Steered-response peak (PHAT, 1 = every pair and bin agrees) below which no single talker dominates."""


@dataclass(frozen=True)
class OrientationReport:
    """Where one talker at a known direction comes out, under the configured channel order."""

    array_name: str
    """The configured array."""
    status: str
    """``ok``, ``mirrored`` (a reflection of the ring: every azimuth would be mirrored), ``rotated``,
    ``off`` (no order of this geometry puts the talker there) or ``cannot_tell``."""
    reason: str
    """One line: what was found."""
    problem: bool
    """True when the user should act."""
    talker_azimuth_deg: float
    """Where the user says the talker is."""
    found_azimuth_deg: float | None
    """Where the steered response of the configured order peaks."""
    peak: float
    """Height of that peak (0..1)."""
    isometry: Isometry | None = None
    """The rotation or reflection the channels follow (status mirrored or rotated)."""
    remapped_channel_map: tuple[int, ...] | None = None
    """The channel map that puts the mics back (status mirrored or rotated)."""
    unresolved: tuple[str, ...] = ()
    """Orders this talker's direction cannot tell from the one found (it sits near their mirror axis)."""
    better_azimuths_deg: tuple[float, ...] = ()
    """Talker directions at which every order of this geometry puts the talker somewhere else."""

    def describe(self) -> str:
        """One line for the log: what was found and the fix."""
        where = f"orientation check ({self.array_name}, talker at {self.talker_azimuth_deg:.0f} deg)"
        tail = ""
        if self.unresolved:
            tail = (f"; from this direction it cannot rule out an order {', '.join(self.unresolved)}: repeat with the "
                    f"talker at {', '.join(f'{a:.0f}' for a in self.better_azimuths_deg)} deg")
        if self.status == "ok":
            return f"{where}: ok, found at {self.found_azimuth_deg:.0f} deg{tail}"
        if self.status in ("mirrored", "rotated"):
            assert self.isometry is not None
            return (f"{where}: found at {self.found_azimuth_deg:.0f} deg: the channel order is "
                    f"{self.isometry.describe()} ({self.reason}). Fix: set [array] channel_map = "
                    f"{list(self.remapped_channel_map or ())} (or --array a TOML file with it){tail}")
        if self.status == "off":
            return (f"{where}: {self.reason}. Fix: check where the array's x axis points (docs/boards.md), the "
                    f"talker's direction, and that [array] is this board")
        return f"{where}: cannot tell: {self.reason}; talk steadily from one place, alone, and check again"


def steered_response(frames_mics: np.ndarray, positions_m: np.ndarray, sample_rate_hz: int,
                     azimuths_deg: np.ndarray, elevations_deg: Sequence[float] = (0.0, 20.0, 40.0)
                     ) -> np.ndarray:
    """SRP-PHAT (azimuths,) of mic frames (n, M): per azimuth the best over ``elevations_deg``, normalized
    so that 1 means every pair and frequency bin agrees with a plane wave from there."""
    f_hi = min(8000.0, 0.45 * sample_rate_hz)
    freqs, s = cross_spectra(frames_mics, sample_rate_hz, 200.0, f_hi)
    i, j = _pairs(len(positions_m))
    c = s[:, i, j]
    c = c / np.maximum(np.abs(c), 1e-30)                              # PHAT
    best = np.full(len(azimuths_deg), -np.inf)
    for el in elevations_deg:
        az = np.radians(azimuths_deg)
        e = math.radians(el)
        u = np.stack([math.cos(e) * np.cos(az), math.cos(e) * np.sin(az), np.full_like(az, math.sin(e))], axis=-1)
        tau = -(positions_m @ u.T) / SPEED_OF_SOUND_M_S               # (M, A)
        dtau = tau[i] - tau[j]                                        # (P, A)
        # S_ij ~ exp(-j 2 pi f (tau_i - tau_j)): steer it back to zero phase
        steer = np.exp(2j * np.pi * freqs[:, None, None] * dtau[None])  # (F, P, A)
        p = np.real(np.einsum("fp,fpa->a", c, steer)) / c.size
        best = np.maximum(best, p)
    return best


def _ang(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def probe_azimuths_deg(array: MicArray, n: int = 4) -> tuple[float, ...]:
    """Talker directions that tell every symmetric order of ``array`` apart best (farthest from every mirror
    axis): the images of such a talker under all rotations and reflections are as far apart as they get."""
    isos = planar_isometries(array)
    if not isos:
        return (0.0, 90.0, 180.0, 270.0)[:n]
    grid = np.arange(0.0, 360.0, 1.0)
    sep = np.array([min(_ang(g.image_deg(a), a) for g in isos) for a in grid])
    top = float(np.max(sep))
    good = [float(a) for a, v in zip(grid, sep) if v >= top - 1.0]
    # one per cluster of neighbouring degrees, at most n, spread around the circle
    picks: list[float] = []
    for a in good:
        if all(_ang(a, b) > 5.0 for b in picks):
            picks.append(a)
    step = max(1, len(picks) // n)
    return tuple(picks[::step][:n])


def check_orientation(array: MicArray, frames: np.ndarray, talker_azimuth_deg: float, *,
                      sample_rate_hz: int | None = None, tol_deg: float = ORIENTATION_TOL_DEG) -> OrientationReport:
    """From a capture (n, array.n_channels) of one talker at a known azimuth, tell whether the channel
    order is right, mirrored (the ring numbered the other way round) or turned.

    No capture without a known direction can: a mirrored ring hears a talker at azimuth a exactly as the
    right ring hears one at the mirror image of a. Here the configured order's steered response peaks
    at some azimuth; the right order puts it at the talker, a ring mirrored about axis b at 2b - a, one
    turned by t at a - t. The talker must be off the mirror axis (a != b, b + 180)."""
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != array.n_channels:
        found = frames.shape[1] if frames.ndim == 2 else f"shape {frames.shape}"
        raise ArrayConfigError(f"orientation check: array {array.name!r} has {array.n_channels} capture channels, "
                               f"the frames have {found}; capture all {array.n_channels} channels of the device")
    fs = int(sample_rate_hz or array.native_rate_hz)
    theta = float(talker_azimuth_deg) % 360.0
    base = dict(array_name=array.name, talker_azimuth_deg=theta)
    if len(frames) < 4 * _segment_length(fs) or len(frames) / fs < MIN_SECONDS:
        return OrientationReport(status="cannot_tell", reason=f"only {len(frames) / fs:.2f} s of audio (needs "
                                 f"{MIN_SECONDS} s)", problem=False, found_azimuth_deg=None, peak=0.0, **base)
    mics = array.select_channels(frames)
    grid = np.arange(0.0, 360.0, 1.0)
    srp = steered_response(mics, array.positions(), fs, grid)
    k = int(np.argmax(srp))
    found, peak = float(grid[k]), float(srp[k])
    if peak < MIN_PEAK:
        return OrientationReport(status="cannot_tell", reason=f"no single talker stands out (steered-response peak "
                                 f"{peak:.2f} < {MIN_PEAK})", problem=False, found_azimuth_deg=found, peak=peak,
                                 **base)
    isos = planar_isometries(array)
    # candidates: the configured order and every symmetry, each with where it would put the talker
    cands: list[tuple[float, Isometry | None]] = [(_ang(found, theta), None)]
    cands += [(_ang(found, g.image_deg(theta)), g) for g in isos]
    err, best = min(cands, key=lambda c: (c[0], c[1] is not None))
    if err > tol_deg:
        return OrientationReport(status="off", reason=f"found at {found:.0f} deg, {_ang(found, theta):.0f} deg from "
                                 f"the talker, and no mirror or turn of this ring puts it there", problem=True,
                                 found_azimuth_deg=found, peak=peak, **base)
    best_img = theta if best is None else best.image_deg(theta)
    others = [theta] + [g.image_deg(theta) for g in isos if g is not best] if best is not None else \
        [g.image_deg(theta) for g in isos]
    names = (["the configured order"] if best is not None else []) + [g.describe() for g in isos if g is not best]
    unresolved = tuple(n for n, img in zip(names, others) if _ang(img, best_img) < 2 * tol_deg)
    if best is None:
        return OrientationReport(status="ok", reason="found where the talker is", problem=False,
                                 found_azimuth_deg=found, peak=peak, unresolved=unresolved,
                                 better_azimuths_deg=probe_azimuths_deg(array) if unresolved else (), **base)
    status = "mirrored" if best.kind == "reflection" else "rotated"
    if status == "mirrored":
        why = f"a ring mirrored about the {best.angle_deg:.0f} deg axis puts a talker at {theta:.0f} deg at " \
              f"{best_img:.0f} deg; every azimuth would come out mirrored"
    else:
        why = f"a ring turned by {best.angle_deg:.0f} deg puts the talker at {best_img:.0f} deg"
    return OrientationReport(status=status, reason=why, problem=True, found_azimuth_deg=found, peak=peak,
                             isometry=best, remapped_channel_map=mirrored_map(array, best), unresolved=unresolved,
                             better_azimuths_deg=probe_azimuths_deg(array) if unresolved else (), **base)


# --------------------------------------------------------------------------------------- which board

@dataclass(frozen=True)
class Identification:
    """Which built-in array a capture comes from, as far as its shape and sound tell."""

    array_name: str | None
    """The array to use, or None when the evidence does not single one out (refuse, name the candidates)."""
    candidates: tuple[str, ...]
    """Built-in arrays that deliver this many channels (and fit the device's card id, if known)."""
    reason: str
    """One phrase: the evidence that decided, or why nothing did."""
    certain: bool
    """False when only the sample rate broke the tie (a loud warning, not a silent guess)."""
    mics_only: bool = False
    """True when ``array_name``'s mics alone fit best (its other capture channels were left out)."""


def _best_fit(cands: list[MicArray], frames: np.ndarray, sample_rate_hz: int) -> tuple[MicArray, str] | None:
    """The candidate whose geometry the mics' coherence fits clearly best (half the rivals' residual, above
    the estimation noise), with the residuals as text; None when no candidate stands out."""
    fs = int(sample_rate_hz)
    freqs, spec = cross_spectra(frames, fs, _FIT_BAND_HZ[0], min(_FIT_BAND_HZ[1], 0.45 * fs))
    coh = coherence(spec)
    n_seg = n_segments(len(frames), fs)
    fits = []
    for a in cands:
        m = list(a.channel_map)
        fits.append((geometry_residual(coh[:, m][:, :, m], freqs, a.positions()), a))
    fits.sort(key=lambda t: t[0])
    (r0, best), rest = fits[0], fits[1:]
    m0 = list(best.channel_map)
    noise = FLOOR_FACTOR * estimation_floor(coh[:, m0][:, :, m0], n_seg)
    if rest and rest[0][0] - r0 < max(noise, r0) or r0 >= 0.5:
        return None
    return best, "residual " + ", ".join(f"{a.name} {r:.2f}" for r, a in fits)


def identify_array(n_channels: int, sample_rate_hz: int, frames: np.ndarray | None = None,
                   pcm_name: str | None = None) -> Identification:
    """Pick the built-in array a capture of ``n_channels`` at ``sample_rate_hz`` comes from.

    Evidence, strongest first: the device's card id (``pcm_name``); the channel count; a channel that is
    digital zero rules out every array with a mic there, and silent spare channels where a board has
    them point at it; the mics' coherence fits one geometry clearly better than the others; last, the
    board's native rate (then ``certain`` is False)."""
    from .arrays import boards_for_device, get_array, list_arrays, spare_channels

    builtin = [get_array(n) for n in list_arrays()]
    cands = [a for a in builtin if a.n_channels == n_channels]
    hinted = boards_for_device(pcm_name) if pcm_name else ()
    if hinted:
        both = [a for a in cands if a.name in hinted]
        if both:
            cands = both
            if len(cands) == 1:
                return Identification(cands[0].name, (cands[0].name,), f"the device {pcm_name} is its card", True)
    names = tuple(a.name for a in cands)
    # the mics of a board alone (its loopback/processed channels dropped) also have this many channels
    alone = [dataclasses.replace(a, channel_map=tuple(range(a.n_mics)), n_channels=a.n_mics) for a in builtin
             if a.n_mics == n_channels and a.n_channels != n_channels and not hinted]
    enough = frames is not None and len(frames) >= MIN_SECONDS * sample_rate_hz
    if alone and enough:
        fit = _best_fit(cands + alone, frames, sample_rate_hz)
        if fit is not None and fit[0] in alone:
            return Identification(fit[0].name, tuple(a.name for a in alone), f"its {n_channels} channels fit the "
                                  f"geometry of {fit[0].name}'s mics best ({fit[1]})", True, mics_only=True)
    why: list[str] = []
    if enough and cands:
        # a loopback channel as coherent with the mics as they are with each other is a mic: not this board
        against = {}
        for a in cands:
            loop = [c for c, k in spare_channels(a).items() if k == "loopback"]
            if not loop:
                continue
            score = np.asarray(check_channels(a, frames, sample_rate_hz=sample_rate_hz).room_coherence)
            if not len(score):
                continue
            typical = float(np.median(np.sort(score)[::-1][:a.n_mics]))
            micish = [c for c in loop if typical >= ROOM_MSC and score[c] >= RELATIVE_MSC * typical]
            if micish:
                against[a.name] = micish
        left = [a for a in cands if a.name not in against]
        if against and not left and alone:
            pick = _best_fit(alone, frames, sample_rate_hz) if len(alone) > 1 else (alone[0], "")
            if pick is not None:
                return Identification(pick[0].name, tuple(a.name for a in alone), "the loopback channel(s) of "
                                      + ", ".join(f"{n} ({_join(c)})" for n, c in against.items())
                                      + " sound like mics", True, mics_only=True)
        if against and left:
            why.append(", ".join(f"{n}'s loopback channel(s) {_join(c)} sound like mics" for n, c in against.items()))
            cands = left
        elif against:
            return Identification(None, names, ", ".join(f"{n}'s loopback channel(s) {_join(c)} sound like mics"
                                                         for n, c in against.items()), False)
    if not cands:
        return Identification(None, (), f"no built-in array delivers {n_channels} channels", False)
    if len(cands) == 1:
        why.append(f"the only built-in array with {n_channels} capture channels")
        return Identification(cands[0].name, names, "; ".join(why), True)
    if enough:
        frames = np.asarray(frames)
        levels = channel_levels_dbfs(frames)
        zero = {c for c in range(n_channels) if not np.isfinite(levels[c])}
        if zero:
            live = [a for a in cands if not zero & set(a.channel_map)]
            if live and len(live) < len(cands):
                why.append(f"channel(s) {_join(sorted(zero))} digital zero")
                cands = live
            # the silent channels are exactly a board's loopback/unused ones: that board
            exact = [a for a in cands if zero == {c for c, k in spare_channels(a).items() if k != "processed"}]
            if len(exact) == 1 and len(cands) > 1:
                cands = exact
        if len(cands) == 1:
            return Identification(cands[0].name, names, ", ".join(why) or "its silent channels", True)
        fit = _best_fit(cands, frames, sample_rate_hz)
        if fit is not None:
            why.append(f"the mics' coherence fits its geometry best ({fit[1]})")
            return Identification(fit[0].name, names, "; ".join(why), True)
        why.append(f"the first {len(frames) / sample_rate_hz:.0f} s do not fit one of their geometries clearly better")
    native = [a for a in cands if a.native_rate_hz == sample_rate_hz]
    if len(native) == 1:
        why.append(f"{native[0].name} is the only one of them that captures at {sample_rate_hz} Hz natively")
        return Identification(native[0].name, names, "; ".join(why), False)
    why.append(f"none of them captures at {sample_rate_hz} Hz natively" if not native else
               f"{', '.join(a.name for a in native)} all capture at {sample_rate_hz} Hz natively")
    return Identification(None, tuple(a.name for a in (native or cands)), "; ".join(why), False)



def _pan_fix(path: str, n_mics: int, cmap: Sequence[int], n_channels: int) -> str:
    pan = "|".join(f"c{c}=c{i}" for i, c in enumerate(cmap))
    return f"ffmpeg -i {path} -af 'pan={n_channels}c|{pan}' capture.wav"


def array_for_recording(n_channels: int, sample_rate_hz: int, head: np.ndarray | None, what: str,
                        array: MicArray | None = None) -> MicArray:
    """The array to read a recording with: ``array`` (from ``--array``) checked against the recording's
    channels, or, without one, the built-in array the recording shows (see :func:`identify_array`).

    Logs one line on how it was chosen (a warning when only the rate decided); raises
    :class:`ArrayConfigError` with the fix when the channels do not fit or the board cannot be told."""
    from .arrays import capture_layout, get_array, list_arrays

    counts = ", ".join(f"{n} {get_array(n).n_channels}" for n in list_arrays())
    if array is not None:
        if n_channels == array.n_channels:
            if array.name in list_arrays():
                other = identify_array(n_channels, sample_rate_hz, head)
                if other.array_name not in (None, array.name) and other.certain:
                    log.warning("%s does not sound like %s but like %s (%s); check --array", what, array.name,
                                other.array_name, other.reason)
            return array
        layout = capture_layout(array)
        if n_channels == array.n_mics:
            raise ArrayConfigError(
                f"{what} has {n_channels} channels: {array.name}'s {array.n_mics} mics alone, without the rest of its "
                f"capture ({array.n_channels} channels: {layout}); record all {array.n_channels} channels (arecord -c "
                f"{array.n_channels}), or lay the mics out as the board does: "
                f"{_pan_fix(what, array.n_mics, array.channel_map, array.n_channels)}")
        other = identify_array(n_channels, sample_rate_hz, head)
        hint = (f"a {n_channels}-channel capture is {other.array_name}'s: --array {other.array_name}"
                if other.array_name else f"channels per built-in array: {counts}")
        raise ArrayConfigError(f"{what} has {n_channels} channels, array {array.name!r} expects {array.n_channels} "
                               f"({layout}); give the array that recorded it ({hint}) or a TOML file with an [array] "
                               f"table")
    found = identify_array(n_channels, sample_rate_hz, head)
    where = f"{what}: {n_channels} channels at {sample_rate_hz} Hz"
    if found.mics_only and found.array_name:
        a = get_array(found.array_name)
        raise ArrayConfigError(
            f"{where} look like {a.name}'s {a.n_mics} mics alone ({found.reason}), without the rest of its capture "
            f"({a.n_channels} channels: {capture_layout(a)}); record all {a.n_channels} channels, or lay the mics out "
            f"as the board does: {_pan_fix(what, a.n_mics, a.channel_map, a.n_channels)}, or give --array NAME")
    if found.array_name is None:
        if not found.candidates:
            mics_only = [n for n in list_arrays() if get_array(n).n_mics == n_channels]
            extra = (f"; if these are the mics of {' or '.join(mics_only)} alone, lay them out as the board does "
                     f"(--array {mics_only[0]} prints the command)" if mics_only else "")
            raise ArrayConfigError(f"{where}: no built-in array delivers {n_channels} channels (channels per array: "
                                   f"{counts}){extra}; give --array NAME, or a TOML file with an [array] table "
                                   f"(docs/boards.md, Arrays)")
        raise ArrayConfigError(f"{where} could be any of {', '.join(found.candidates)} ({found.reason}); give the "
                               f"board with --array NAME, e.g. --array {found.candidates[0]}")
    chosen = get_array(found.array_name)
    if found.certain:
        log.info("%s: array %s (%s); --array NAME to override", where, chosen.name, found.reason)
    else:
        log.warning("%s: ASSUMING array %s (%s); if another board (%s) recorded it, give --array NAME", where,
                    chosen.name, found.reason, ", ".join(c for c in found.candidates if c != chosen.name))
    return chosen


__all__ = ["CHECK_MODES", "CHECK_SECONDS", "ChannelReport", "Identification", "identify_array", "array_for_recording", "Isometry", "OrientationReport", "check_orientation",
           "planar_isometries", "mirrored_map", "steered_response", "probe_azimuths_deg", "StartupCheck", "check_channels", "check_and_remap",
           "channel_levels_dbfs", "cross_spectra", "coherence", "geometry_residual", "lookalike_rotations",
           "rotated_map"]
