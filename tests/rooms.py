"""A simulated room for the device tests that borrow pyroomacoustics (skipped without it): one broadband
talker in a small reverberant room, mics in array order. Test data only; it must not be imported by the code."""

from __future__ import annotations

import numpy as np
import pytest


def one_talker(array, azimuth_deg: float, fs: int, seconds: float = 2.0, seed: int = 0, max_order: int = 8,
               noise: float = 1e-3) -> np.ndarray:
    """(n, n_mics) float: white noise from 1.5 m away (0.3 m up) at ``azimuth_deg`` in a 6 x 5 x 3 m room
    (RT60 about 0.3 s, image order at most ``max_order``), plus sensor noise ``noise`` times the mics' std."""
    pra = pytest.importorskip("pyroomacoustics")
    rng = np.random.default_rng(seed)
    dim, centre = np.array([6.0, 5.0, 3.0]), np.array([2.7, 2.2, 1.2])
    e_abs, order = pra.inverse_sabine(0.3, dim)
    r = pra.ShoeBox(dim, fs=fs, materials=pra.Material(e_abs), max_order=min(order, max_order))
    a = np.radians(azimuth_deg)
    r.add_source(centre + 1.5 * np.array([np.cos(a), np.sin(a), 0.2]), signal=rng.standard_normal(int(seconds * fs)))
    r.add_microphone_array((array.positions() + centre).T)
    r.simulate()
    mics = r.mic_array.signals.T[:int(seconds * fs)]
    return mics + noise * np.std(mics) * rng.standard_normal(mics.shape)
