"""Streaming audio plumbing: a ring buffer that cuts fixed windows at a hop from frames of any
size, and a polyphase FIR resampler (e.g. 48 kHz boards to a 16 kHz model), in plain numpy.

No model, no devices, no scipy (import time counts on the device's start-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_FULL_SCALE = 2147483648.0
"""Divide int32 samples (S32_LE, or 24-bit left-justified in 32) by this to get full-scale units."""


def to_float(frames: np.ndarray) -> np.ndarray:
    """Frames as float32 full-scale units: int16 / 2^15, int32 / 2^31, uint8 centred, float as is."""
    x = np.asarray(frames)
    if x.dtype == np.int16:
        return x.astype(np.float32) * np.float32(1.0 / 32768.0)
    if x.dtype == np.int32:
        return x.astype(np.float32) * np.float32(1.0 / INT32_FULL_SCALE)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) * np.float32(1.0 / 128.0)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise TypeError(f"audio frames must be int16, int32, uint8 or float, got {x.dtype}")


class Windower:
    """A ring buffer fed with frames of any size; hands out a copy of each window at the hop.

    Window k ends at sample ``window_samples + k * hop_samples`` (counted from the first frame
    pushed), so a stream cut into any pieces gives the same windows as one big push.
    """

    def __init__(self, window_samples: int, hop_samples: int, n_channels: int, capacity: int | None = None) -> None:
        if window_samples < 1 or hop_samples < 1 or n_channels < 1:
            raise ValueError(f"window_samples, hop_samples and n_channels must be >= 1, got "
                             f"{window_samples}, {hop_samples}, {n_channels}")
        self.window_samples = int(window_samples)
        self.hop_samples = int(hop_samples)
        self.n_channels = int(n_channels)
        # room for one window plus a good slice of new frames, so big pushes are copied in few steps
        cap = capacity or self.window_samples + max(self.hop_samples, 4096)
        if cap <= self.window_samples:
            raise ValueError(f"capacity {cap} must exceed window_samples {self.window_samples}")
        self._buf = np.zeros((cap, self.n_channels), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Drop the buffered samples; the next window ends ``window_samples`` after the next frame."""
        self._len = 0
        self._total = 0
        self._next_end = self.window_samples

    @property
    def samples_seen(self) -> int:
        """Samples pushed since the last reset."""
        return self._total

    def push(self, frames: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Append (n, n_channels) frames; returns ``(end_sample, window)`` for each completed window."""
        x = np.asarray(frames)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"frames must have shape (n, {self.n_channels}), got {x.shape}")
        out: list[tuple[int, np.ndarray]] = []
        cap = len(self._buf)
        pos, n = 0, len(x)
        while pos < n:
            if self._len == cap:
                self._compact()
            take = min(n - pos, cap - self._len)
            self._buf[self._len:self._len + take] = x[pos:pos + take]
            self._len += take
            self._total += take
            pos += take
            while self._total >= self._next_end:
                end = self._len - (self._total - self._next_end)
                out.append((self._next_end, self._buf[end - self.window_samples:end].copy()))
                self._next_end += self.hop_samples
        return out

    def _compact(self) -> None:
        # keep only what the next window still needs (with a hop longer than the window, nothing)
        start_abs = self._next_end - self.window_samples
        drop = min(max(start_abs - (self._total - self._len), 0), self._len)
        if drop:
            self._buf[:self._len - drop] = self._buf[drop:self._len]
            self._len -= drop


@dataclass(frozen=True)
class ResamplerDesign:
    """A rational resampling ratio and its anti-aliasing filter."""

    up: int
    """Interpolation factor L (output rate = input rate * L / M)."""
    down: int
    """Decimation factor M."""
    taps_per_phase: int
    """Input samples that each output sample is computed from."""
    cutoff: float
    """Filter cut-off as a fraction of the lower of the two Nyquist frequencies."""


MAX_UP = 640
"""Largest interpolation factor accepted (44.1 kHz -> 16 kHz needs 160)."""


def design(from_hz: int, to_hz: int, half_length: int = 16, cutoff: float = 0.9) -> ResamplerDesign:
    """Reduce ``to_hz / from_hz`` to L/M and size the filter: ``half_length`` zero crossings each side."""
    g = math.gcd(int(from_hz), int(to_hz))
    up, down = int(to_hz) // g, int(from_hz) // g
    if up > MAX_UP:
        raise ValueError(f"cannot resample {from_hz} Hz to {to_hz} Hz: the ratio {up}/{down} needs an "
                         f"interpolation factor above {MAX_UP}; record at a standard rate (16, 32, 44.1 or 48 kHz)")
    taps = int(math.ceil(2 * half_length * max(up, down) / up))
    return ResamplerDesign(up, down, taps, cutoff)


class Resampler:
    """Streaming polyphase FIR resampler (Kaiser-windowed sinc, about 80 dB stop-band).

    Output sample n is the filtered input at input time ``n * M / L``, delayed by the filter's
    constant group delay (:attr:`delay_s`, the same on every channel, so inter-microphone time
    differences are untouched). Blocks of any size; state is carried between calls.
    """

    def __init__(self, from_hz: int, to_hz: int, n_channels: int, half_length: int = 16,
                 cutoff: float = 0.9) -> None:
        self.from_hz, self.to_hz = int(from_hz), int(to_hz)
        self.n_channels = int(n_channels)
        d = design(from_hz, to_hz, half_length, cutoff)
        self.design = d
        L, M, T = d.up, d.down, d.taps_per_phase
        n = T * L
        # prototype low-pass at the up-sampled rate L * from_hz, cut-off below both Nyquists
        fc = cutoff * 0.5 / max(L, M)
        k = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        h = 2.0 * fc * np.sinc(2.0 * fc * k) * np.kaiser(n, 8.0)
        # phase p of the polyphase bank: taps h[p + j L], j = 0..T-1, applied to x[i - j];
        # each phase normalised to unit DC gain so a constant stays exactly constant
        bank = h.reshape(T, L).T.copy()
        bank /= bank.sum(axis=1, keepdims=True)
        self._bank = bank.astype(np.float32)
        self.delay_s = (n - 1) / 2.0 / (L * self.from_hz)
        self.reset()

    def reset(self) -> None:
        """Forget the carried input (start of a new stream)."""
        T = self.design.taps_per_phase
        self._hist = np.zeros((T - 1, self.n_channels), dtype=np.float32)
        self._n_in = 0
        self._n_out = 0

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Resample a block (n, n_channels) of full-scale float; returns (m, n_channels) float32."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"frames must have shape (n, {self.n_channels}), got {x.shape}")
        L, M, T = self.design.up, self.design.down, self.design.taps_per_phase
        buf = np.concatenate([self._hist, x], axis=0)
        base = self._n_in - (T - 1)  # absolute input index of buf[0]
        self._n_in += len(x)
        # outputs whose newest input sample (n M // L) has arrived
        n_end = (self._n_in * L + M - 1) // M  # first n with n*M//L >= n_in
        n_idx = np.arange(self._n_out, n_end, dtype=np.int64)
        self._n_out = n_end
        self._hist = buf[len(buf) - (T - 1):].copy() if T > 1 else buf[:0].copy()
        if len(n_idx) == 0:
            return np.zeros((0, self.n_channels), dtype=np.float32)
        u = n_idx * M
        rel = u // L - base
        y = np.zeros((len(n_idx), self.n_channels), dtype=np.float32)
        if L == 1:
            # pure decimation: split the input into its M phases (contiguous copies) so that
            # each tap is a contiguous slice; 3x faster than strided slices on 48 kHz input
            h = self._bank[0]
            r0 = int(rel[0])
            count = len(n_idx)
            for q in range(min(M, T)):
                xq = np.ascontiguousarray(buf[(r0 - q) % M::M])
                b = (r0 - q) // M
                for k in range((T - q + M - 1) // M):
                    y += h[q + k * M] * xq[b - k:b - k + count]
        else:
            coef = self._bank[u % L]  # (n_out, T)
            for j in range(T):
                y += coef[:, j:j + 1] * buf[rel - j]
        return y


__all__ = ["INT32_FULL_SCALE", "to_float", "Windower", "ResamplerDesign", "MAX_UP", "design", "Resampler"]
