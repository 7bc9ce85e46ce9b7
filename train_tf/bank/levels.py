"""Frame levels, silence trimming and unit-RMS scaling shared by the speech, the synthesizer and the bank."""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02


# --------------------------------------------------------------------------- trimming

def _frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    n_frames = max(1, -(-len(x) // frame))
    buf = np.zeros(n_frames * frame, dtype=np.float64)
    buf[: len(x)] = x
    return np.mean(buf.reshape(n_frames, frame) ** 2, axis=1)


def _power_db(p: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, 1e-20))


def trim_silence(x: np.ndarray, sample_rate_hz: int = 16000, threshold_db: float = 35.0,
                 max_pause_s: float = 0.04) -> np.ndarray:
    """Drop quiet 20 ms frames: keep those within ``threshold_db`` of the loudest frame.

    Leading and trailing quiet frames go; pauses inside longer than ``max_pause_s`` are cut
    to ``max_pause_s`` (half from each side of the pause). Splices get a 2 ms fade. An
    all-zero input gives an empty array.
    """
    x = np.asarray(x, dtype=np.float32)
    frame = int(round(FRAME_S * sample_rate_hz))
    if len(x) == 0:
        return x.copy()
    power = _frame_power(x, frame)
    if power.max() <= 0.0:
        return x[:0].copy()
    keep = _power_db(power) >= _power_db(power.max()) - threshold_db
    loud = np.flatnonzero(keep)
    first, last = int(loud[0]), int(loud[-1])
    max_pause = int(round(max_pause_s / FRAME_S))
    head = max_pause // 2
    tail = max_pause - head
    out_mask = np.zeros_like(keep)
    out_mask[first:last + 1] = True
    edges = np.diff(np.concatenate([[1], keep[first:last + 1].astype(np.int8), [1]]))
    gap_starts = np.flatnonzero(edges == -1) + first
    gap_ends = np.flatnonzero(edges == 1) + first
    for a, b in zip(gap_starts, gap_ends):
        if b - a > max_pause:
            out_mask[a + head:b - tail] = False
    # Runs of kept frames become sample ranges, joined with short fades.
    edges = np.diff(np.concatenate([[0], out_mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1) * frame
    ends = np.minimum(np.flatnonzero(edges == -1) * frame, len(x))
    fade = max(1, int(0.002 * sample_rate_hz))
    pieces = []
    for a, b in zip(starts, ends):
        piece = x[a:b].copy()
        f = min(fade, len(piece) // 2)
        if f > 0:
            ramp = np.sin(0.5 * np.pi * (np.arange(f) + 0.5) / f).astype(np.float32)
            if a > 0:
                piece[:f] *= ramp
            if b < len(x):
                piece[-f:] *= ramp[::-1]
        pieces.append(piece)
    return np.concatenate(pieces) if pieces else x[:0].copy()


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if rms < 1e-12:
        return np.zeros(len(x), dtype=np.float32)
    return (x / rms).astype(np.float32)
