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
    # Sums over the samples axis, in numpy's order for this layout: a (samples, mics) window is reduced
    # sample by sample. einsum sums in that same order, 3x faster than np.mean there (8 values at a time);
    # the numbers are the same to the bit, so the model's reference inputs (train_tf.crosscheck) are too.
    rows = _rows(x)
    contiguous = x.flags.c_contiguous

    def per_mic(v: np.ndarray) -> np.ndarray:  # v (..., samples, mics) -> (..., 1, mics) in v's dtype
        return (np.einsum("...ij->...j", v) if contiguous else np.add.reduce(v, axis=-2))[..., None, :]

    mean = per_mic(x) / n
    np.subtract(rows, _tile(mean, rows), out=rows)
    if equalize:
        x64 = x.astype(np.float64)
        power = (np.einsum("...ij,...ij->...j", x64, x64)[..., None, :] if contiguous else per_mic(np.square(x64))) / n
        rms = np.maximum(np.sqrt(power), SILENCE_FLOOR)
        log_rms = np.log(rms)
        limit = EQUALIZE_MAX_DB / 20.0 * np.log(10.0)
        gain = np.exp(np.clip(log_rms.mean(axis=-1, keepdims=True) - log_rms, -limit, limit))
        np.multiply(rows, _tile(gain, rows), out=_rows(x64))
        x = x64.astype(np.float32)
    std = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=(-2, -1), keepdims=True))
    x /= np.maximum(std, SILENCE_FLOOR).astype(np.float32)
    return np.clip(x, -clip_sigma, clip_sigma, out=x)


def _rows(x: np.ndarray) -> np.ndarray:
    """A C-contiguous (..., samples, mics) array as (..., samples / 8, 8 mics) rows when the samples split
    so (elementwise work with a per-mic factor then runs 8 times fewer, longer loops); else as it is."""
    n, m = x.shape[-2:]
    return x.reshape(x.shape[:-2] + (n // 8, 8 * m)) if x.flags.c_contiguous and n % 8 == 0 else x


def _tile(per_mic: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(..., 1, mics) repeated along the last axis to the width of ``rows`` (:func:`_rows`)."""
    return np.tile(per_mic, rows.shape[-1] // per_mic.shape[-1])


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
