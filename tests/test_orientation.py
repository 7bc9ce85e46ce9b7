"""The UMA-8 ring order (issue 28, point 4), from physics: one talker on the UMA-8 geometry, by exact
fractional delays and in a pyroomacoustics room, captured as the board delivers it (8 channels at
48 kHz, channel 7 unused). The ring numbered the other way round (counter-clockwise) is a reflection:
the blind channel check cannot see it (same pair distances), the orientation check with the talker's
known direction must flag it, give the map that undoes it, and pass the right order."""

import dataclasses

import numpy as np
import pytest

from edge_msl.arrays import get_array, far_field_delays_s
from edge_msl.channel_check import check_channels
from edge_msl.orientation import check_orientation, mirrored_map, planar_isometries, probe_azimuths_deg
from rooms import one_talker

FS = 48000
UMA8 = get_array("minidsp-uma8")
# the other ring order: mic 1 at 90 deg as ours, mic 2 at 150 deg (counter-clockwise) instead of 30 deg
CCW = dataclasses.replace(UMA8, positions_m=tuple((-x, y, z) for x, y, z in UMA8.positions_m))


def _mirror_about_mic1(array):
    return next(g for g in planar_isometries(array) if g.kind == "reflection" and abs(g.angle_deg - 90.0) < 1.0)


def test_the_other_projects_geometry_is_ours_mirrored_about_mic1():
    g = _mirror_about_mic1(UMA8)
    assert g.perm == (0, 1, 6, 5, 4, 3, 2)
    # mic i of the counter-clockwise ring sits where our mic perm[i] is
    assert np.allclose(CCW.positions(), UMA8.positions()[list(g.perm)], atol=1e-3)
    assert g.image_deg(30.0) == pytest.approx(150.0)


def capture_from(array, mics, fs=FS):
    """The board's capture layout: mic i on channel channel_map[i], the other channels digital zero."""
    out = np.zeros((len(mics), array.n_channels))
    out[:, list(array.channel_map)] = mics
    return np.round(out / np.max(np.abs(out)) * 10000).astype(np.int16)


def far_field(array, azimuth_deg, seconds=2.0, seed=0, elevation_deg=15.0):
    """Exact fractional delays (frequency domain) of one broadband talker, plus sensor noise at -30 dB."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    s = rng.standard_normal(n + 512)
    f = np.fft.rfftfreq(len(s), 1.0 / FS)
    spec = np.fft.rfft(s)
    d = far_field_delays_s(array, azimuth_deg, elevation_deg)
    mics = np.stack([np.fft.irfft(spec * np.exp(-2j * np.pi * f * t), len(s))[256:256 + n] for t in d], axis=1)
    return mics + 0.03 * rng.standard_normal(mics.shape)


def room(array, azimuth_deg, seconds=2.0, seed=0):
    """One talker 1.5 m away in a 6 x 5 x 3 m room (RT60 about 0.3 s), pyroomacoustics at 48 kHz."""
    return one_talker(array, azimuth_deg, FS, seconds, seed)


@pytest.mark.parametrize("render", [far_field, room], ids=["fractional-delays", "pyroomacoustics"])
def test_a_mirrored_ring_is_flagged_and_the_right_order_passes(render):
    talker = 45.0
    mics = render(UMA8, talker)                      # mic i of our (clockwise) geometry in column i
    right = capture_from(UMA8, mics)
    ok = check_orientation(UMA8, right, talker, sample_rate_hz=FS)
    assert ok.status == "ok", ok.describe()
    assert abs((ok.found_azimuth_deg - talker + 180) % 360 - 180) <= 5
    # the board as the other project numbers it: its mic i (counter-clockwise) is our mic perm[i]
    g = _mirror_about_mic1(UMA8)
    mirrored = capture_from(UMA8, mics[:, list(g.perm)])
    rep = check_orientation(UMA8, mirrored, talker, sample_rate_hz=FS)
    assert rep.status == "mirrored" and rep.problem, rep.describe()
    assert rep.isometry.kind == "reflection" and rep.isometry.angle_deg == pytest.approx(90.0)
    assert abs((rep.found_azimuth_deg - 135.0 + 180) % 360 - 180) <= 5   # 2 * 90 - 45
    assert rep.remapped_channel_map == (0, 1, 6, 5, 4, 3, 2) == mirrored_map(UMA8, g)
    assert "channel_map = [0, 1, 6, 5, 4, 3, 2]" in rep.describe()
    fixed = dataclasses.replace(UMA8, channel_map=rep.remapped_channel_map)
    assert check_orientation(fixed, mirrored, talker, sample_rate_hz=FS).status == "ok"


def test_no_signal_alone_tells_a_mirrored_ring_the_blind_check_passes_it():
    """Why the orientation check needs the talker's direction: the mirror is an isometry, so the blind
    check (no direction known) fits both orders equally and reports ok for the mirrored capture."""
    mics = far_field(UMA8, 45.0)
    g = _mirror_about_mic1(UMA8)
    right = check_channels(UMA8, capture_from(UMA8, mics), sample_rate_hz=FS)
    mirrored = check_channels(UMA8, capture_from(UMA8, mics[:, list(g.perm)]), sample_rate_hz=FS)
    assert right.status == mirrored.status == "ok"
    assert dict(right.geometry_residual)[0] == pytest.approx(dict(mirrored.geometry_residual)[0], abs=0.02)


def test_a_talker_on_the_mirror_axis_cannot_rule_it_out_and_the_report_says_where_to_stand():
    mics = far_field(UMA8, 90.0)                     # on the axis through mic 1: its own mirror image
    rep = check_orientation(UMA8, capture_from(UMA8, mics), 90.0, sample_rate_hz=FS)
    assert rep.status == "ok"
    assert any("90 deg axis" in u for u in rep.unresolved)
    assert rep.better_azimuths_deg and "repeat with the talker at" in rep.describe()
    for a in rep.better_azimuths_deg:                # each suggested direction separates every order
        assert all(abs((g.image_deg(a) - a + 180) % 360 - 180) >= 20 for g in planar_isometries(UMA8))
    assert set(probe_azimuths_deg(UMA8)) == set(rep.better_azimuths_deg)


def test_a_talker_elsewhere_than_stated_is_off_and_silence_cannot_tell():
    mics = far_field(UMA8, 45.0)
    off = check_orientation(UMA8, capture_from(UMA8, mics), 0.0, sample_rate_hz=FS)
    # 45 deg is no image of 0 deg under this ring's symmetries (images at 0, 60, 120, ... and mirrors)
    assert off.status in ("off", "rotated", "mirrored") and off.problem
    rng = np.random.default_rng(1)
    noise = np.round(rng.standard_normal((2 * FS, 8)) * 30).astype(np.int16)
    noise[:, 7] = 0
    quiet = check_orientation(UMA8, noise, 45.0, sample_rate_hz=FS)
    assert quiet.status == "cannot_tell" and not quiet.problem
