"""Labels of the AV16.3 recording from both of its arrays (issue 27): each array's SRP-PHAT bearing of the one
talker on short windows, the bearings smoothed into one path in the room frame (Kalman/RTS), and array1's (or
array2's) azimuth of that path as the label. For evaluation only: no calibration or training step may use it
(a user has one array); numpy only, the recording read through ``train_tf.real_av16``.

The study that checks these labels against simulated truth is ``experiments/av16_triangulate.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_msl.arrays import SPEED_OF_SOUND_M_S

FS = 16000
HOP = 1600
"""Labels every 0.1 s, as the decode's hop."""
NFFT = 512
BAND_HZ = (300.0, 3500.0)
"""The band of ``train_tf.real_av16.srp_single``."""
RADIUS_M = 0.10
ARRAY_CENTRES_M = {"array1": (0.0, 0.4), "array2": (0.0, -0.4)}
"""Array centres in the corpus's room frame (the sequence's README). ``train_tf.real_av16.load_array``
orders each array's channels so that channel i sits at 45 i degrees: azimuth 0 is the room's x axis
for both arrays (the README's mic angles are room angles; checked on the data by
``experiments.av16_triangulate labels --check``)."""


def array_xy(name: str) -> np.ndarray:
    """(8, 2) room positions of one array's mics in ``load_array``'s channel order."""
    a = np.radians(45.0 * np.arange(8))
    return np.asarray(ARRAY_CENTRES_M[name]) + RADIUS_M * np.column_stack([np.cos(a), np.sin(a)])


# --------------------------------------------------------------------------- bearings

@dataclass(frozen=True)
class Bearings:
    """One array's SRP-PHAT bearing of a single talker per hop."""

    t_s: np.ndarray
    """(H,) window centres."""
    azimuth_deg: np.ndarray
    """(H,) direction of the SRP-PHAT peak, counter-clockwise from the room's x axis."""
    sharp: np.ndarray
    """(H,) peak sharpness: (max - median) / std of the SRP map (as ``srp_single``)."""
    level_db: np.ndarray
    """(H,) mean power of the window."""


class PairSpectra:
    """PHAT-weighted cross-spectra of every mic pair per STFT frame, summed cumulatively so that the
    SRP map of any window is two look-ups (one STFT for every window length)."""

    def __init__(self, audio: np.ndarray, mic_xy: np.ndarray, fs: int = FS, nfft: int = NFFT) -> None:
        x = audio.astype(np.float64) / 32768.0
        step = nfft // 2
        n_frames = max(0, (len(x) - nfft) // step + 1)
        win = np.hanning(nfft)
        freqs = np.fft.rfftfreq(nfft, 1.0 / fs)
        band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
        self.freqs = freqs[band]
        i, j = np.triu_indices(len(mic_xy), 1)
        self.pairs = (i, j)
        self.frame_centre = (np.arange(n_frames) * step + nfft / 2) / fs
        cum = np.zeros((n_frames + 1, len(self.freqs), len(i)), dtype=np.complex128)
        chunk = 256
        for a in range(0, n_frames, chunk):
            idx = np.arange(a, min(n_frames, a + chunk))
            frames = np.stack([x[k * step:k * step + nfft] for k in idx]) * win[None, :, None]
            spec = np.fft.rfft(frames, axis=1)[:, band]
            cross = spec[:, :, i] * np.conj(spec[:, :, j])
            cum[idx + 1] = cross / (np.abs(cross) + 1e-12)
        self.cum = np.cumsum(cum, axis=0)
        grid = np.radians(np.arange(360.0))
        u = np.stack([np.cos(grid), np.sin(grid)], axis=1)
        # arrival time at mic m from a far source towards u: -p_m . u / c; the cross-spectrum of
        # pair (i, j) has phase -2 pi f (t_i - t_j), which the steering vector undoes
        lag = -((mic_xy[i] - mic_xy[j]) @ u.T) / SPEED_OF_SOUND_M_S
        self.steer = np.exp(2j * np.pi * self.freqs[None, :, None] * lag[:, None, :])
        power = np.concatenate([[0.0], np.cumsum(np.mean(x ** 2, axis=1))])
        self._power = power

    def srp(self, t0_s: float, t1_s: float) -> np.ndarray:
        """(360,) SRP-PHAT map of the frames whose centre lies in [t0_s, t1_s)."""
        a, b = np.searchsorted(self.frame_centre, [t0_s, t1_s])
        s = self.cum[b] - self.cum[a]
        return np.einsum("fp,pfg->g", s, self.steer).real

    def level_db(self, t0_s: float, t1_s: float) -> float:
        a, b = int(max(0, t0_s * FS)), int(min(len(self._power) - 1, t1_s * FS))
        return float(10 * np.log10((self._power[b] - self._power[a]) / max(1, b - a) + 1e-12))


def peak_deg(values: np.ndarray) -> float:
    """Azimuth of the largest value of a 1-degree circular map, refined by a parabola through its neighbours."""
    k = int(np.argmax(values))
    lo, mid, hi = values[k - 1], values[k], values[(k + 1) % len(values)]
    den = lo - 2 * mid + hi
    shift = 0.5 * (lo - hi) / den if den < 0 else 0.0
    return float((k + np.clip(shift, -0.5, 0.5)) % 360.0)


def bearings(spectra: PairSpectra, t_s: np.ndarray, window_s: float) -> Bearings:
    """The bearing, sharpness and level of windows of ``window_s`` centred at ``t_s``."""
    az, sharp, level = np.zeros(len(t_s)), np.zeros(len(t_s)), np.zeros(len(t_s))
    for k, t in enumerate(t_s):
        v = spectra.srp(t - window_s / 2, t + window_s / 2)
        az[k] = peak_deg(v)
        sharp[k] = (v.max() - np.median(v)) / (v.std() + 1e-12)
        level[k] = spectra.level_db(t - window_s / 2, t + window_s / 2)
    return Bearings(np.asarray(t_s, dtype=np.float64), az, sharp, level)


def confident(b: Bearings, min_level_db: float = 12.0, sharp_quantile: float = 0.3) -> np.ndarray:
    """Hops where the talker is loud (``min_level_db`` over the quietest tenth) and the peak sharp
    (above the ``sharp_quantile`` of the loud hops): the rules of ``benchmarks.av16_clips.labels``."""
    loud = b.level_db >= np.percentile(b.level_db, 10) + min_level_db
    if not loud.any():
        return loud
    return loud & (b.sharp >= np.quantile(b.sharp[loud], sharp_quantile))


# --------------------------------------------------------------------------- geometry

def intersect(c1: np.ndarray, az1_deg: float, c2: np.ndarray, az2_deg: float, min_angle_deg: float = 15.0,
              min_range_m: float = 0.2, max_range_m: float = 8.0) -> np.ndarray | None:
    """The point (x, y) where the rays from ``c1`` and ``c2`` towards their azimuths meet, or None when
    the rays cross at less than ``min_angle_deg`` (nearly parallel: the point slides along them), or
    meet behind an array, nearer than ``min_range_m`` or further than ``max_range_m``."""
    u1 = np.array([math.cos(math.radians(az1_deg)), math.sin(math.radians(az1_deg))])
    u2 = np.array([math.cos(math.radians(az2_deg)), math.sin(math.radians(az2_deg))])
    det = u1[1] * u2[0] - u1[0] * u2[1]
    if abs(det) < math.sin(math.radians(min_angle_deg)):
        return None
    d = np.asarray(c2, dtype=np.float64) - np.asarray(c1, dtype=np.float64)
    # c1 + r1 u1 = c2 + r2 u2, solved by Cramer's rule
    r1 = (d[1] * u2[0] - d[0] * u2[1]) / det
    r2 = (u1[0] * d[1] - u1[1] * d[0]) / det
    if min(r1, r2) < min_range_m or max(r1, r2) > max_range_m:
        return None
    return np.asarray(c1, dtype=np.float64) + r1 * u1


def azimuth_from(centre: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Azimuth (deg, [0, 360)) of room points (N, 2) seen from ``centre``."""
    v = np.atleast_2d(xy) - np.asarray(centre)
    return np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0


# --------------------------------------------------------------------------- smoothing

@dataclass(frozen=True)
class Smoothed:
    """A constant-velocity path through the bearings (Kalman filter + Rauch-Tung-Striebel smoother)."""

    t_s: np.ndarray
    """(H,) hop times."""
    state: np.ndarray
    """(H, 4) x, y, vx, vy."""
    cov: np.ndarray
    """(H, 4, 4) smoothed covariance."""
    used: np.ndarray
    """(H, A) the hop's bearing from array a was kept (not an outlier)."""

    def azimuth_sd_deg(self, centre: np.ndarray) -> np.ndarray:
        """(H,) standard deviation of the path's azimuth seen from ``centre`` (position spread across the bearing)."""
        v = self.state[:, :2] - np.asarray(centre)
        r = np.hypot(v[:, 0], v[:, 1])
        n = np.column_stack([-v[:, 1], v[:, 0]]) / np.maximum(r, 1e-6)[:, None]
        var = np.einsum("hi,hij,hj->h", n, self.cov[:, :2, :2], n)
        return np.degrees(np.sqrt(np.maximum(var, 0.0)) / np.maximum(r, 1e-6))


def _cv_model(dt: float, accel_sd_m_s2: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.eye(4)
    f[0, 2] = f[1, 3] = dt
    q1 = accel_sd_m_s2 ** 2 * np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
    q = np.zeros((4, 4))
    q[np.ix_([0, 2], [0, 2])] = q1
    q[np.ix_([1, 3], [1, 3])] = q1
    return f, q


def rts_smooth(t_s: np.ndarray, centres: np.ndarray, azimuth_deg: np.ndarray, have: np.ndarray, start_xy: np.ndarray,
               bearing_sd_deg: float = 3.0, accel_sd_m_s2: float = 1.0, gate_sd: float = 3.5, rounds: int = 4,
               min_range_m: float = 0.3) -> Smoothed:
    """Smooth bearings (H, A) from arrays at ``centres`` (A, 2), present where ``have``, into a path of
    constant velocity with white acceleration of ``accel_sd_m_s2``.

    Each bearing is the line through its array that the talker stands on, a linear measurement
    n . p = n . c (n normal to the bearing) with an error of range x ``bearing_sd_deg``: two bearings
    that cross are their intersection (weighted by how well they cross), nearly parallel ones fix only
    the direction across them, one alone its own line. Ranges come from the predicted path, then from
    the previous round's smoothed one. Robust: after each round the bearings more than ``gate_sd``
    standard deviations from the smoothed path's azimuth are dropped and the path is smoothed again."""
    n_hops, n_arr = azimuth_deg.shape
    used = np.asarray(have, dtype=bool).copy()
    sd = math.radians(bearing_sd_deg)
    rad = np.radians(azimuth_deg)
    normal = np.stack([-np.sin(rad), np.cos(rad)], axis=-1)
    z = np.einsum("hai,ai->ha", normal, centres)
    prev = None
    for _ in range(rounds):
        xs, ps = np.zeros((n_hops, 4)), np.zeros((n_hops, 4, 4))
        xp, pp = np.zeros((n_hops, 4)), np.zeros((n_hops, 4, 4))
        mats = []
        x = np.array([start_xy[0], start_xy[1], 0.0, 0.0])
        p = np.diag([1.0, 1.0, 1.0, 1.0])
        for k in range(n_hops):
            f, q = _cv_model(t_s[k] - t_s[k - 1] if k else 0.0, accel_sd_m_s2)
            mats.append(f)
            x, p = f @ x, f @ p @ f.T + q
            xp[k], pp[k] = x, p
            for a in np.flatnonzero(used[k]):
                ref = prev[k, :2] if prev is not None else x[:2]
                r = max(min_range_m, float(np.hypot(*(ref - centres[a]))))
                h = np.array([normal[k, a, 0], normal[k, a, 1], 0.0, 0.0])
                s = h @ p @ h + (r * sd) ** 2
                gain = p @ h / s
                x = x + gain * (z[k, a] - h @ x)
                p = p - np.outer(gain, h @ p)
            xs[k], ps[k] = x, p
        for k in range(n_hops - 2, -1, -1):
            c = ps[k] @ mats[k + 1].T @ np.linalg.inv(pp[k + 1])
            xs[k] = xs[k] + c @ (xs[k + 1] - xp[k + 1])
            ps[k] = ps[k] + c @ (ps[k + 1] - pp[k + 1]) @ c.T
        prev = xs
        keep = np.asarray(have, dtype=bool).copy()
        for a in range(n_arr):
            path_az = azimuth_from(centres[a], xs[:, :2])
            off = np.abs((azimuth_deg[:, a] - path_az + 180.0) % 360.0 - 180.0)
            keep[:, a] &= off <= gate_sd * bearing_sd_deg
        if np.array_equal(keep, used):
            break
        used = keep
    return Smoothed(np.asarray(t_s), xs, ps, used)


# --------------------------------------------------------------------------- labels

@dataclass(frozen=True)
class LabelSettings:
    """How the two-array labels are made."""

    window_s: float = 0.2
    """Length of each array's SRP-PHAT window, centred on the hop."""
    min_level_db: float = 12.0
    """A bearing counts where the window is this much above the quietest tenth of windows."""
    sharp_quantile: float = 0.3
    """... and its peak sharper than this quantile of the loud windows."""
    min_angle_deg: float = 15.0
    """Bearings crossing at less than this give no intersection (the talker near the line through both
    arrays: the point slides along it); the smoother still takes them, as the direction across them."""
    bearing_sd_deg: float = 1.5
    """Assumed error of one bearing (the weight of each bearing line in the smoother)."""
    accel_sd_m_s2: float = 2.0
    """A walker's random acceleration (the smoother's process noise)."""
    max_sd_deg: float = 2.0
    """A hop is labelled where the smoothed path's azimuth is known to this (gaps and poor geometry widen it)."""


def two_array_labels(audio1: np.ndarray, audio2: np.ndarray, s: LabelSettings = LabelSettings(),
                     t_s: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per hop: both arrays' bearings, the intersections and the smoothed path, with array1's and array2's
    azimuth of it and where it is a label (``ok``)."""
    c1, c2 = np.asarray(ARRAY_CENTRES_M["array1"]), np.asarray(ARRAY_CENTRES_M["array2"])
    n = min(len(audio1), len(audio2))
    if t_s is None:
        t_s = np.arange(s.window_s / 2, n / FS - s.window_s / 2 + 1e-9, HOP / FS)
    b1 = bearings(PairSpectra(audio1[:n], array_xy("array1")), t_s, s.window_s)
    b2 = bearings(PairSpectra(audio2[:n], array_xy("array2")), t_s, s.window_s)
    ok1, ok2 = confident(b1, s.min_level_db, s.sharp_quantile), confident(b2, s.min_level_db, s.sharp_quantile)
    crossed = np.full((len(t_s), 2), np.nan)
    for k in np.flatnonzero(ok1 & ok2):
        xy = intersect(c1, b1.azimuth_deg[k], c2, b2.azimuth_deg[k], s.min_angle_deg)
        if xy is not None:
            crossed[k] = xy
    good = np.flatnonzero(~np.isnan(crossed[:, 0]))
    if len(good):
        start = np.median(crossed[good[:5]], axis=0)
    else:  # no crossing: a metre out along array1's first bearing
        a = math.radians(b1.azimuth_deg[int(np.argmax(ok1))])
        start = c1 + np.array([math.cos(a), math.sin(a)])
    sm = rts_smooth(t_s, np.stack([c1, c2]), np.column_stack([b1.azimuth_deg, b2.azimuth_deg]),
                    np.column_stack([ok1, ok2]), start, s.bearing_sd_deg, s.accel_sd_m_s2)
    sd1, sd2 = sm.azimuth_sd_deg(c1), sm.azimuth_sd_deg(c2)
    return {"centre_s": t_s, "azimuth_deg": azimuth_from(c1, sm.state[:, :2]), "ok": sd1 <= s.max_sd_deg,
            "azimuth2_deg": azimuth_from(c2, sm.state[:, :2]), "ok2": sd2 <= s.max_sd_deg,
            "xy_m": sm.state[:, :2], "sd1_deg": sd1, "sd2_deg": sd2, "bearing1_deg": b1.azimuth_deg,
            "bearing2_deg": b2.azimuth_deg, "confident1": ok1, "confident2": ok2, "crossed_xy_m": crossed,
            "used": sm.used}


def av16_labels(data: str | Path | None = None, array: str = "array1",
                s: LabelSettings = LabelSettings()) -> dict[str, np.ndarray]:
    """Labels of the AV16.3 sequence in the form of ``benchmarks.av16_clips.labels`` (centre_s,
    azimuth_deg, ok), seen from ``array``."""
    from train_tf.real_av16 import DEFAULT_DIR, load_array

    data = Path(data or DEFAULT_DIR)
    lab = two_array_labels(load_array(data, "array1"), load_array(data, "array2"), s)
    if array == "array2":
        return {"centre_s": lab["centre_s"], "azimuth_deg": lab["azimuth2_deg"], "ok": lab["ok2"]}
    return {k: lab[k] for k in ("centre_s", "azimuth_deg", "ok")}


# --------------------------------------------------------------------------- windows of a calibration check

def path_at(path: dict[str, np.ndarray], t_s: np.ndarray, max_sd_deg: float = LabelSettings.max_sd_deg
            ) -> tuple[np.ndarray, np.ndarray]:
    """Array1's azimuth of a smoothed path (``two_array_labels``) at times ``t_s`` between its hops, and
    whether it is known there: the path's azimuth SD, interpolated the same way, within ``max_sd_deg``
    (the rule of ``two_array_labels``' own ``ok``), and ``t_s`` inside the path's span."""
    t = np.asarray(t_s, dtype=np.float64)
    unwrapped = np.degrees(np.unwrap(np.radians(path["azimuth_deg"])))
    az = np.interp(t, path["centre_s"], unwrapped) % 360.0
    sd = np.interp(t, path["centre_s"], path["sd1_deg"])
    inside = (t >= path["centre_s"][0]) & (t <= path["centre_s"][-1])
    return az, inside & (sd <= max_sd_deg)


def labels_at_windows(path: dict[str, np.ndarray], audio: np.ndarray, window: int, hop: int,
                      min_level_db: float = 12.0, max_sd_deg: float = LabelSettings.max_sd_deg,
                      fs: int = FS) -> dict[str, np.ndarray]:
    """Array1's windows (``window`` samples every ``hop``) labelled by the smoothed path at their centres, in the
    shape of ``train_tf.real_av16.self_label`` (what ``build_mixtures`` takes): kept where the path is known
    (:func:`path_at`) and the window is loud, ``min_level_db`` over the quietest tenth of windows (self_label's
    level rule). No SRP-PHAT of the window itself: the label shares no error with array1's own map."""
    from train_tf.real_av16 import window_levels_db

    starts, level = window_levels_db(audio, window, hop)
    az, known = path_at(path, (starts + window / 2) / fs, max_sd_deg)
    ok = known & (level >= np.percentile(level, 10) + min_level_db) if len(starts) else known
    return {"start": starts[ok], "azimuth_deg": az[ok], "level_db": level[ok], "all_start": starts,
            "all_azimuth_deg": az, "ok": ok}


def window_labels(audio1: np.ndarray, audio2: np.ndarray, window: int, hop: int, min_level_db: float = 12.0,
                  s: LabelSettings = LabelSettings()) -> dict[str, np.ndarray]:
    """Two-array labels of array1's windows (``audio1``, both arrays in ``load_array``'s channel order): the
    path of :func:`two_array_labels` at each window's centre (:func:`labels_at_windows`)."""
    return labels_at_windows(two_array_labels(audio1, audio2, s), audio1, window, hop, min_level_db, s.max_sd_deg)
