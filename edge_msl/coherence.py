"""Mic coherence and how well an array geometry explains it: cross-spectra and magnitude-squared coherence
of a capture's channels, the fit of a diffuse field plus a few plane waves to them, and the channel
rotations an array cannot tell apart. Pure numpy, used by the channel, orientation and board checks;
it must not decide anything about a capture.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import SPEED_OF_SOUND_M_S, MicArray

FLOOR_FACTOR = 5.0
"""A residual gap counts only above this many times the coherence-estimation noise (see estimation_floor)."""


FIT_BAND_HZ = (200.0, 4000.0)
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


def segment_length(sample_rate_hz: int) -> int:
    # ~32 ms at any rate: 31 Hz bins, fine enough for the low band of the smallest array, and the same
    # number of bins (so the same cost) at 48 kHz as at 16 kHz
    return 2 * int(round(0.016 * sample_rate_hz))


def cross_spectra(frames: np.ndarray, sample_rate_hz: int, f_lo_hz: float, f_hi_hz: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Welch cross-spectral matrices (F, C, C) of the channels in [f_lo_hz, f_hi_hz], with their frequencies."""
    x = _to_float(frames)
    x = x - x.mean(axis=0, keepdims=True)
    n = segment_length(sample_rate_hz)
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


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
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
    n = segment_length(sample_rate_hz)
    return max(0, 1 + (n_frames - n) // (n // 2))


def estimation_floor(coh: np.ndarray, n_seg: int) -> float:
    """Expected squared error of the coherence estimate relative to the coherence energy, on the bins and
    pairs :func:`geometry_residual` uses: var(C_hat) ~ (1 - |C|^2)^2 / segments per pair and bin."""
    coh = coh[::2]
    i, j = pair_indices(coh.shape[1])
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
    i, j = pair_indices(len(positions_m))
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


def equivalent_rotations(array: MicArray, k1: int, k2: int, tol_m: float = 1e-3) -> bool:
    """True when rotations k1 and k2 put the same channels on mics with the same pairwise distances."""
    m1, m2 = rotated_map(array, k1), rotated_map(array, k2)
    if set(m1) != set(m2):
        return False
    pos = array.positions()
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    perm = [m1.index(c) for c in m2]
    return bool(np.all(np.abs(dist[np.ix_(perm, perm)] - dist) <= tol_m))
