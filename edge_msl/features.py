"""Input scaling shared by training and the device: one window of raw multichannel audio in,
the network's input out. Pure numpy; the model sees exactly what this function returns.
"""

from __future__ import annotations

import numpy as np

INT16_FULL_SCALE = 32768.0
"""Divide int16 samples by this to get full-scale units."""

SILENCE_FLOOR = 10.0 ** (-100.0 / 20.0)
"""Smallest standard deviation (full-scale units) a window is divided by: -100 dBFS."""


def normalize_window(window: np.ndarray, clip_sigma: float = 8.0) -> np.ndarray:
    """Scale a window (samples, mics) by its overall standard deviation and clip to +/- clip_sigma.

    One scale for all channels keeps the level differences between microphones; the level of
    the room itself (loud or quiet) is removed, so one int8 input scale fits every room.
    Each channel's mean (DC offset) is removed first. Integer input is taken as int16 PCM,
    float input as full-scale units. A batch (..., samples, mics) is scaled window by window.
    """
    x = np.asarray(window)
    x = x.astype(np.float32) / INT16_FULL_SCALE if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
    x = x - x.mean(axis=-2, keepdims=True)
    std = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=(-2, -1), keepdims=True))
    std = np.maximum(std, SILENCE_FLOOR).astype(np.float32)
    return np.clip(x / std, -clip_sigma, clip_sigma).astype(np.float32)
