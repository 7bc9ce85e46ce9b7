"""edge_msl.features.normalize_window, the network's input scaling (training and device): the same
numbers, to the bit, as its plain numpy statement (np.mean along the samples axis; the models'
reference inputs in train_tf.crosscheck are hashed), on the layouts and inputs it meets, and close to
a double-precision statement of what it does."""

import numpy as np
import pytest

from edge_msl.features import EQUALIZE_MAX_DB, INT16_FULL_SCALE, SILENCE_FLOOR, normalize_window


def plain(window, clip_sigma=8.0, equalize=False):
    """normalize_window as it was written before it was made faster (edge-msl 5da4534)."""
    x = np.asarray(window)
    x = x.astype(np.float32) / INT16_FULL_SCALE if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
    x = x - x.mean(axis=-2, keepdims=True)
    if equalize:
        rms = np.maximum(np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-2, keepdims=True)), SILENCE_FLOOR)
        log_rms = np.log(rms)
        limit = EQUALIZE_MAX_DB / 20.0 * np.log(10.0)
        gain = np.exp(np.clip(log_rms.mean(axis=-1, keepdims=True) - log_rms, -limit, limit))
        x = (x * gain).astype(np.float32)
    std = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=(-2, -1), keepdims=True))
    std = np.maximum(std, SILENCE_FLOOR).astype(np.float32)
    return np.clip(x / std, -clip_sigma, clip_sigma).astype(np.float32)


def exact(window, clip_sigma=8.0, equalize=False):
    """The same in double precision throughout."""
    x = np.asarray(window)
    x = x / 32768.0 if np.issubdtype(x.dtype, np.integer) else x.astype(np.float64)
    x = x - x.mean(axis=-2, keepdims=True)
    if equalize:
        rms = np.maximum(np.sqrt(np.mean(x ** 2, axis=-2, keepdims=True)), SILENCE_FLOOR)
        limit = EQUALIZE_MAX_DB / 20.0 * np.log(10.0)
        x = x * np.exp(np.clip(np.log(rms).mean(axis=-1, keepdims=True) - np.log(rms), -limit, limit))
    std = np.maximum(np.sqrt(np.mean(x ** 2, axis=(-2, -1), keepdims=True)), SILENCE_FLOOR)
    return np.clip(x / std, -clip_sigma, clip_sigma)


RNG = np.random.default_rng(0)
CASES = {
    "window": RNG.standard_normal((8000, 8)).astype(np.float32) * 0.1,
    "odd length": RNG.standard_normal((8001, 8)).astype(np.float32) * 0.1,
    "int16": (RNG.standard_normal((8000, 8)) * 3000).astype(np.int16),
    "column-major": np.asfortranarray(RNG.standard_normal((8000, 8)).astype(np.float32)),
    "strided view": RNG.standard_normal((8000, 16)).astype(np.float32)[:, ::2],
    "batch of float64": RNG.standard_normal((3, 4000, 6)) * 0.01,
    "column-major batch": np.asfortranarray(RNG.standard_normal((3, 4000, 6))),
    "a dead mic": np.concatenate([RNG.standard_normal((8000, 7)), np.zeros((8000, 1))], 1).astype(np.float32),
    "a quiet mic": RNG.standard_normal((8000, 4)).astype(np.float32) * np.array([1, 1, 1, 1e-3], np.float32),
    "DC offset 3000x the signal": (RNG.standard_normal((8000, 8)) * 1e-4 + 0.3).astype(np.float32),
    "silence": np.zeros((8000, 8), np.float32),
}


@pytest.mark.parametrize("equalize", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_normalize_window_is_its_plain_statement_to_the_bit(name, equalize):
    x = CASES[name]
    before = x.copy()
    y = normalize_window(x, 8.0, equalize)
    assert np.array_equal(x, before)  # the caller's window is left as it is
    want = plain(x, 8.0, equalize)
    assert y.dtype == want.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(y, want), name
    # float32 sums: a large DC offset costs precision (the mean of 8000 samples of 0.3 in single precision)
    assert np.max(np.abs(y - exact(x, 8.0, equalize))) < (2e-2 if name.startswith("DC") else 2e-4), name
