"""Two-array labels of train_tf.av16_labels: the geometry from physics, the smoother on a known path, the
labels of a calibration check's windows read off the path."""

import math

import numpy as np
import pytest

from train_tf.av16_labels import (ARRAY_CENTRES_M, PairSpectra, SPEED_OF_SOUND_M_S, array_xy, azimuth_from,
                                 bearings, intersect, labels_at_windows, rts_smooth)
from train_tf.real_av16 import build_mixtures

C1, C2 = np.array(ARRAY_CENTRES_M["array1"]), np.array(ARRAY_CENTRES_M["array2"])


@pytest.mark.parametrize("point", [(1.2, 0.3), (-0.9, -0.6), (1.0, 1.2), (-1.5, 0.0)])
def test_two_exact_bearings_meet_at_the_point(point):
    p = np.array(point)
    a1, a2 = azimuth_from(C1, p)[0], azimuth_from(C2, p)[0]
    got = intersect(C1, a1, C2, a2)
    assert got is not None
    assert np.allclose(got, p, atol=1e-9)


def test_nearly_parallel_or_backward_bearings_are_rejected():
    # on the line through both arrays, beyond array1: both bearings point the same way
    p = np.array([0.05, 2.0])
    assert intersect(C1, azimuth_from(C1, p)[0], C2, azimuth_from(C2, p)[0]) is None
    # well crossing bearings of the same point are kept
    q = np.array([1.5, 0.0])
    assert intersect(C1, azimuth_from(C1, q)[0], C2, azimuth_from(C2, q)[0]) is not None
    # rays that only meet behind an array
    assert intersect(C1, 180.0 + azimuth_from(C1, q)[0], C2, azimuth_from(C2, q)[0]) is None


def test_srp_finds_a_plane_wave_from_its_direction():
    rng = np.random.default_rng(1)
    fs, n = 16000, 4800
    src = rng.standard_normal(n)
    mics = array_xy("array2")
    for az in (17.0, 133.0, 251.5):
        u = np.array([math.cos(math.radians(az)), math.sin(math.radians(az))])
        delay = -(mics - C2) @ u / SPEED_OF_SOUND_M_S
        f = np.fft.rfftfreq(n, 1.0 / fs)
        spec = np.fft.rfft(src)[None, :] * np.exp(-2j * np.pi * f[None, :] * delay[:, None])
        pcm = np.round(np.fft.irfft(spec, n=n, axis=1).T * 3000).astype(np.int16)
        b = bearings(PairSpectra(pcm, mics), np.array([0.15]), 0.2)
        assert abs((b.azimuth_deg[0] - az + 180) % 360 - 180) < 1.0


def test_smoother_beats_the_raw_bearings_on_a_walk():
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 12.0, 0.1)
    # a constant-velocity walk that crosses the line through both arrays (x = 0) at y = 1.7
    xy = np.column_stack([1.2 - 0.2 * t, 1.7 + 0.0 * t])
    true1 = azimuth_from(C1, xy)
    noisy = np.column_stack([true1, azimuth_from(C2, xy)]) + rng.normal(0.0, 2.0, (len(t), 2))
    have = rng.uniform(size=(len(t), 2)) < 0.6
    noisy[5, 0] += 40.0  # an echo
    have[5, 0] = True
    sm = rts_smooth(t, np.stack([C1, C2]), noisy, have, xy[0] + 0.3, bearing_sd_deg=2.0, accel_sd_m_s2=0.5)
    smooth_err = np.abs((azimuth_from(C1, sm.state[:, :2]) - true1 + 180) % 360 - 180)
    raw_err = np.abs((noisy[:, 0] - true1 + 180) % 360 - 180)[have[:, 0]]
    assert not sm.used[5, 0]
    assert np.mean(smooth_err) < 0.6 * np.mean(raw_err)
    assert np.max(smooth_err) < 3.0
    # near x = 0 the two bearings are nearly parallel (no intersection), yet array1's azimuth stays known
    parallel = np.abs((true1 - azimuth_from(C2, xy) + 180) % 360 - 180) < 15.0
    assert parallel.sum() >= 10
    assert np.mean(smooth_err[parallel]) < 0.6 * np.mean(raw_err)
    assert np.all(sm.azimuth_sd_deg(C1)[parallel] < 3.0)


def test_windows_take_the_path_at_their_centre_where_it_is_known_and_loud():
    fs, window, hop = 16000, 8000, 4000
    t = np.round(np.arange(0.1, 9.0 + 1e-9, 0.1), 6)
    unwrapped = 300.0 + 15.0 * t  # 301.5 deg at 0.1 s, across the 0/360 seam at 4 s, 75 deg at 9 s
    sd = np.where((t >= 5.0) & (t <= 6.0), 5.0, 1.0)  # a gap in the walk: the path is not known there
    path = {"centre_s": t, "azimuth_deg": unwrapped % 360.0, "sd1_deg": sd}
    rng = np.random.default_rng(3)
    amp = np.where(np.arange(10 * fs) < 2 * fs, 10.0, 1000.0)  # the first 2 s quiet (40 dB down)
    audio = np.round(rng.standard_normal((10 * fs, 8)) * amp[:, None]).astype(np.int16)

    lab = labels_at_windows(path, audio, window, hop)
    centre = (lab["all_start"] + window / 2) / fs
    # loud: any window more than a few % into the loud part (12 dB over the quiet tenth); the path ends at 9 s
    expect = (centre > 1.8) & (centre <= 9.0) & ~((centre >= 4.95) & (centre <= 6.05))
    assert np.array_equal(lab["ok"], expect)
    got = lab["azimuth_deg"]
    want = (300.0 + 15.0 * centre[lab["ok"]]) % 360.0
    assert np.max(np.abs((got - want + 180.0) % 360.0 - 180.0)) < 1e-6  # no 180 deg jump at the seam
    assert np.any(got < 10.0) and np.any(got > 350.0)
    assert np.array_equal(lab["start"], lab["all_start"][lab["ok"]])

    # the shape build_mixtures takes: sums of two labelled windows, their directions >= 30 deg apart
    sets = build_mixtures(audio, lab, window, 10, 30.0, 2.0, 0, seed=0)
    assert len(sets["mix_az"]) == 10 and len(sets["single_az"]) == int(lab["ok"].sum())
    assert np.all(np.isin(sets["mix_az"], lab["azimuth_deg"]))
    sep = np.abs((sets["mix_az"][:, 0] - sets["mix_az"][:, 1] + 180.0) % 360.0 - 180.0)
    assert np.all(sep >= 30.0)
