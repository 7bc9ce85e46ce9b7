"""SRP-PHAT, written once: the steered response power of phase-transformed mic-pair cross-spectra,

    P(u) = sum over pairs i < j and bins f of Re( C_ij(f) exp(j 2 pi f (tau_i(u) - tau_j(u))) ),

tau_i(u) the far-field arrival time at mic i of a plane wave from direction u. numpy only; it must not pick
peaks, choose grids or decide anything: that, and how the cross-spectra C are made, is each caller's own.

Its callers and what stays theirs (every one steers with :func:`pair_delays_s` and weights with :func:`phat`):

- :mod:`edge_msl.refine` (the decode's local search and elevation, the hot path): per-frame PHAT spectra
  (:func:`stft`, :func:`phat`), C the mean over a window's frames, float32; P on a fine local grid by
  :class:`GccTable`, each pair's GCC tabulated once per window and interpolated at the delays.
- :mod:`edge_msl.orientation` (start-up check, 1-degree ring x 3 elevations): Welch cross-spectra of
  :mod:`edge_msl.coherence`, PHAT applied to their average (classic GCC-PHAT: one estimate per pair and bin,
  so a loud moment weighs more), P exact (:func:`steered_power`), normalised by pairs x bins.
- ``train_tf.calibrate.label`` (self-labels): per-frame PHAT spectra (:func:`stft`, :func:`phat`) with the mics'
  front-end errors undone first, C summed over blocks of frames (every loud frame one vote), P exact
  (:func:`steered_power`) per block plus the mics' own powers (the diagonal of its covariance).

Why two evaluations of one P: the decode asks for ~800 directions per window (3 talkers x 33 azimuths of the
refinement, 3 x 230 of the elevation search) at 10 windows a second on one core. :class:`GccTable` pays one
inverse transform per window and then two lookups per pair and direction: 0.55 ms a window on the example,
:func:`steered_power` (one complex exponential per pair, bin and direction) 166 ms. Its linear interpolation
between lags 1 / (8 fs) apart moves P by 0.3-0.5 % of the ring's peak (the example's windows), which the
orientation check's and calibration's one-off maps need not pay: they stay exact. Moving any caller onto the
other evaluation would change its outputs (``edge-msl locate``'s bytes, the reports, the self-labels);
tests/test_srp.py holds the two to each other. Why the cross-spectra differ: docs/testing.md ("One SRP-PHAT").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .arrays import SPEED_OF_SOUND_M_S

PHAT_FLOOR = 1e-12
"""Added to a magnitude before dividing by it (silent bins stay ~0 instead of dividing by zero)."""


def plane_directions(azimuth_deg: np.ndarray | Sequence[float]) -> np.ndarray:
    """(2, A) unit vectors in the array's plane, towards each azimuth."""
    th = np.radians(np.asarray(azimuth_deg, dtype=np.float64))
    return np.stack([np.cos(th), np.sin(th)])


def directions(azimuth_deg: np.ndarray | Sequence[float], elevation_deg: float) -> np.ndarray:
    """(3, A) unit vectors towards each azimuth at one elevation (degrees above the array's plane)."""
    az = np.radians(np.asarray(azimuth_deg, dtype=np.float64))
    e = np.radians(float(elevation_deg))
    return np.stack([np.cos(e) * np.cos(az), np.cos(e) * np.sin(az), np.full_like(az, np.sin(e))])


def pair_delays_s(offsets_m: np.ndarray, directions_: np.ndarray) -> np.ndarray:
    """(P, A) far-field tau_i - tau_j: arrival time at mic i minus mic j of a plane wave from each direction.
    ``offsets_m``: (P, D) position of mic i minus mic j; ``directions_``: (D, A) unit vectors (D = 2: in the
    plane, see :func:`plane_directions`; 3: :func:`directions`)."""
    # one memory layout, so the product (and its last bit) does not depend on how the caller built the directions
    return -(offsets_m @ np.ascontiguousarray(directions_)) / SPEED_OF_SOUND_M_S


def phat(spectra: np.ndarray, floor: float = PHAT_FLOOR, out: np.ndarray | None = None) -> np.ndarray:
    """The phase transform: each complex value divided by its magnitude (plus ``floor``), so only its phase
    votes. ``out=spectra`` works in place."""
    return np.divide(spectra, np.abs(spectra) + floor, out=out)


def stft(x: np.ndarray, nfft: int, bins: slice, window: np.ndarray) -> np.ndarray:
    """(n_mics, n_frames, n_bins) spectra of ``x`` (n_samples >= nfft, n_mics): frames of ``nfft`` at hop
    ``nfft // 2`` times ``window``, the rfft's ``bins`` only; in ``x``'s precision (float32 stays float32)."""
    frames = sliding_window_view(np.ascontiguousarray(x.T), nfft, axis=1)[:, ::nfft // 2] * window
    return np.fft.rfft(frames, axis=-1)[:, :, bins]


def steered_power(cross: np.ndarray, freqs_hz: np.ndarray, delays_s: np.ndarray) -> np.ndarray:
    """P exactly: (..., A) of cross-spectra ``cross`` (..., P, F) at ``freqs_hz`` (F,) steered by pair delays
    ``delays_s`` (P, A) (:func:`pair_delays_s`)."""
    c = np.asarray(cross)
    n_pairs, n_freqs = c.shape[-2:]
    # C_ij ~ exp(-j 2 pi f (tau_i - tau_j)) for a plane wave from u: steer it back to zero phase
    steer = np.exp(2j * np.pi * np.asarray(freqs_hz)[None, :, None] * delays_s[:, None, :])  # (P, F, A)
    out = c.reshape(-1, n_pairs * n_freqs) @ steer.reshape(n_pairs * n_freqs, -1)
    return out.real.reshape(*c.shape[:-2], delays_s.shape[1])


def pair_lags(dxy: np.ndarray, azimuth_deg: np.ndarray | Sequence[float], lag_rate: float,
              n_lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Far-field delay of each mic pair (``dxy``: (P, 2) position of mic i minus mic j, metres) for
    each azimuth in the array's plane, as indices into circular GCC lags sampled at ``lag_rate``
    (n_lags of them): (lower lag, next lag, fraction of the way to it), each (P, A), for linear
    interpolation. The delay is the arrival time at mic i minus mic j."""
    lag = pair_delays_s(dxy, plane_directions(azimuth_deg)) * lag_rate
    lo = np.floor(lag)
    frac = lag - lo
    lo = lo.astype(np.int64) % n_lags
    return lo, (lo + 1) % n_lags, frac


class GccTable:
    """P through each pair's GCC-PHAT (the inverse transform of its cross-spectrum) tabulated at lags of
    1 / (``upsample`` fs) and interpolated linearly at the pair's delay: (2 / n_lags) x :func:`steered_power`
    up to that interpolation, for cross-spectra (P, F) at rfft bins ``bins`` of an ``nfft``-point transform."""

    def __init__(self, offsets_m: np.ndarray, sample_rate_hz: float, nfft: int, bins: np.ndarray, upsample: int):
        self.lag_rate = float(sample_rate_hz) * upsample
        """Lags per second."""
        self.n_lags = nfft * upsample
        """Points of the (circular) inverse transform."""
        # The GCC is needed only at lags the array's delays reach (+-76 of 4096 for a 20 cm array): an inverse
        # DFT at those lags alone, a matrix product, is 7x cheaper than the whole inverse transform.
        offsets = np.asarray(offsets_m, dtype=np.float64)
        reach = float(np.max(np.linalg.norm(offsets, axis=1))) / SPEED_OF_SOUND_M_S * self.lag_rate
        self.lag0 = int(np.ceil(reach)) + 1
        """The table covers lags -lag0 .. lag0."""
        phase = 2.0 * np.pi * np.outer(bins, np.arange(-self.lag0, self.lag0 + 1)) / self.n_lags
        # rows interleaved as a complex64 row viewed as float32: Re, Im of each bin; 2 / n: both signs of frequency
        idft = np.empty((2 * len(bins), phase.shape[1]))
        idft[0::2], idft[1::2] = np.cos(phase), -np.sin(phase)
        self._idft = (idft * 2.0 / self.n_lags).astype(np.float32)
        # index of lag 0 of each pair in a GCC's flattened (n_pairs, 2 L + 1) array
        self._lag0_flat = (np.arange(len(offsets)) * phase.shape[1] + self.lag0)[:, None]
        self.plane_wave = len(offsets) * 2.0 * len(bins) / self.n_lags
        """P of a single plane wave at its direction: a GCC-PHAT peaks at 2 n_bins / n_lags on every pair."""
        self._last: list[tuple[np.ndarray, np.ndarray]] = []  # newest last, at most two

    def gcc(self, cross: np.ndarray) -> np.ndarray:
        """(P, 2 lag0 + 1) GCC-PHAT of each pair at lags -lag0 .. lag0 (lag k = k / lag_rate seconds).

        The last two results are kept: a window's refinement and elevation ask for the GCC of the same
        cross-spectra, the temporal decode for that of the newest hops in between, and comparing them
        costs far less than the inverse transform."""
        for known, out in self._last:
            if known.shape == np.shape(cross) and np.array_equal(known, cross):
                return out
        # X_i X_j^* has phase -2 pi f (t_i - t_j): its inverse transform peaks at lag t_i - t_j
        out = np.ascontiguousarray(cross, dtype=np.complex64).view(np.float32) @ self._idft
        out.flags.writeable = False  # shared by the callers of one window
        self._last = [*self._last[-1:], (np.array(cross, copy=True), out)]
        return out

    def response(self, gcc: np.ndarray, delays_s: np.ndarray) -> np.ndarray:
        """(A,) sum over pairs of the GCC (:meth:`gcc`) interpolated linearly at each pair's delay (P, A)."""
        lag = delays_s * self.lag_rate
        lo = np.floor(lag)
        frac = lag - lo
        at = lo.astype(np.int64)
        at += self._lag0_flat
        flat = np.ravel(gcc)
        vals = flat.take(at) * (1 - frac) + flat.take(at + 1) * frac
        return vals.sum(axis=0)


__all__ = ["PHAT_FLOOR", "plane_directions", "directions", "pair_delays_s", "phat", "stft", "steered_power",
           "pair_lags", "GccTable"]
