"""Input scaling shared by training and the device: one window of raw multichannel audio in,
the network's input out. Pure numpy; the model sees exactly what this function returns.

A model records the scaling it was trained with in its ``input_scaling`` text
(:func:`scaling_text`, read back by :func:`parse_scaling`), so the device scales as training did.
"""

from __future__ import annotations

import re

import numpy as np

INT16_FULL_SCALE = 32768.0
"""Divide int16 samples by this to get full-scale units."""

SILENCE_FLOOR = 10.0 ** (-100.0 / 20.0)
"""Smallest standard deviation (full-scale units) a window is divided by: -100 dBFS."""

EQUALIZE_MAX_DB = 10.0
"""Largest correction :func:`normalize_window` applies to one microphone when equalizing (dB):
a mic far quieter than the others (dead, unplugged) is not raised to their level."""

_SCALING_RE = re.compile(r"^edge_msl\.features\.normalize_window\(clip_sigma=([0-9.eE+-]+)(?:, equalize=([01]))?\)$")


def normalize_window(window: np.ndarray, clip_sigma: float = 8.0, equalize: bool = False) -> np.ndarray:
    """Scale a window (samples, mics) by its overall standard deviation and clip to +/- clip_sigma.

    Each channel's mean (DC offset) is removed first. Integer input is taken as int16 PCM,
    float input as full-scale units. A batch (..., samples, mics) is scaled window by window.

    Without ``equalize`` one scale for all channels keeps the level differences between
    microphones; the level of the room itself (loud or quiet) is removed, so one int8 input scale
    fits every room. With ``equalize`` each microphone is first brought to the geometric mean of
    the window's per-mic RMS levels (at most ``EQUALIZE_MAX_DB`` up or down): the mics' gain
    errors (a few dB between cheap MEMS or electret capsules) are removed, and with them the
    small level differences a 10 cm array sees between its mics.
    """
    x = np.asarray(window)
    x = x.astype(np.float32) / INT16_FULL_SCALE if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
    n = x.shape[-2]
    # each mic's mean and mean square in double precision, as matrix products (numpy's reductions along
    # the samples axis of a (samples, mics) window go 8 values at a time, several times slower)
    ones = np.ones(n)
    x64 = x.astype(np.float64)
    mean = ones @ x64 / n                                                       # (..., mics)
    power = np.maximum(ones @ np.square(x64) / n - np.square(mean), 0.0)        # after removing the mean
    if equalize:
        log_rms = np.log(np.maximum(np.sqrt(power), SILENCE_FLOOR))
        limit = EQUALIZE_MAX_DB / 20.0 * np.log(10.0)
        gain = np.exp(np.clip(log_rms.mean(axis=-1, keepdims=True) - log_rms, -limit, limit))
    else:
        gain = np.ones_like(power)
    std = np.maximum(np.sqrt(np.mean(np.square(gain) * power, axis=-1, keepdims=True)), SILENCE_FLOOR)
    # (x - mean) * gain / std in place, on rows of 8 samples when they fit (longer inner loops)
    k = 8 if n % 8 == 0 and x.flags.c_contiguous else 1
    rows = x.reshape(x.shape[:-2] + (n // k, x.shape[-1] * k))
    rows -= np.tile(mean.astype(np.float32), k)[..., None, :]
    rows *= np.tile((gain / std).astype(np.float32), k)[..., None, :]
    np.clip(rows, -clip_sigma, clip_sigma, out=rows)
    return x


def scaling_text(clip_sigma: float = 8.0, equalize: bool = False) -> str:
    """The ``input_scaling`` a model's params.json and sidecar record for these settings."""
    return (f"edge_msl.features.normalize_window(clip_sigma={clip_sigma:g}"
            + (", equalize=1)" if equalize else ")"))


def parse_scaling(text: object) -> dict[str, float | bool]:
    """``{"clip_sigma", "equalize"}`` of an ``input_scaling`` text; ValueError if this version
    does not implement it."""
    m = _SCALING_RE.match(str(text))
    if not m:
        raise ValueError(f"input scaling {text!r} is not one this edge-msl implements "
                         "(edge_msl.features.normalize_window(clip_sigma=...[, equalize=1]))")
    return {"clip_sigma": float(m.group(1)), "equalize": m.group(2) == "1"}


def model_scaling(params: dict) -> dict[str, float | bool]:
    """The keyword arguments of :func:`normalize_window` for a model's params.json (models
    without ``input_scaling`` are from before it was recorded: the defaults)."""
    return parse_scaling(params.get("input_scaling", scaling_text()))
