"""Region coding: property tests of encode/decode and the rules for borders and conflicts."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge_msl.regions import (ACTIVE, AZIMUTH, DISTANCE, RegionConfigError, RegionLayout, angular_distance_deg,
                              decode, encode, encode_batch)

layouts = st.builds(
    RegionLayout,
    n_regions=st.sampled_from([4, 6, 8, 12, 16, 24, 36]),
    d_min_m=st.floats(0.0, 0.5),
    d_max_m=st.floats(2.0, 8.0),
    offset_deg=st.floats(-180.0, 180.0),
    min_separation_deg=st.floats(0.0, 8.0),
)


@st.composite
def layout_and_sources(draw, max_sources=6):
    layout = draw(layouts)
    k = draw(st.integers(0, min(max_sources, layout.n_regions)))
    regions = draw(st.lists(st.integers(0, layout.n_regions - 1), min_size=k, max_size=k, unique=True))
    # strictly inside each sector: offset + r * width computed in floats can land a hair on the
    # neighbour's side of an exact border (border rules have their own tests below)
    az = [layout.offset_deg + (r + draw(st.floats(1e-6, 0.999999))) * layout.width_deg for r in regions]
    dist = [draw(st.floats(layout.d_min_m, layout.d_max_m)) for _ in regions]
    return layout, np.mod(np.array(az, dtype=float), 360.0), np.array(dist, dtype=float)


@settings(max_examples=300, deadline=None)
@given(layout_and_sources())
def test_decode_recovers_every_encoded_source(case):
    """decode(encode(x)) == x within float tolerance, for sources in distinct regions that are
    farther apart than the suppression distance."""
    layout, az, dist = case
    if len(az) > 1:
        sep = angular_distance_deg(az[:, None], az[None, :]) + np.eye(len(az)) * 360
        assume(sep.min() >= layout.min_separation_deg + 1e-3)
    enc = encode(layout, az, dist)
    assert np.all(enc.assigned_region >= 0)
    assert enc.target[:, ACTIVE].sum() == len(az)
    dets = decode(layout, enc.target, threshold=0.5)
    assert len(dets) == len(az)
    for a, d in zip(az, dist):
        err = angular_distance_deg(a, np.array([x.azimuth_deg for x in dets]))
        j = int(np.argmin(err))
        assert err[j] < 1e-3
        assert dets[j].distance_m == pytest.approx(d, abs=1e-5)
        assert 0.0 <= dets[j].azimuth_deg < 360.0


@settings(max_examples=200, deadline=None)
@given(layout_and_sources(max_sources=12), st.permutations(range(12)))
def test_encode_is_independent_of_source_order(case, perm):
    layout, az, dist = case
    idx = [i for i in perm if i < len(az)]
    a = encode(layout, az, dist).target
    b = encode(layout, az[idx], dist[idx]).target
    np.testing.assert_array_equal(a, b)


@settings(max_examples=200, deadline=None)
@given(layouts, st.integers(0, 35), st.floats(0.5, 3.0))
def test_a_source_on_a_border_comes_out_once(layout, border, dist):
    """A source exactly on a sector border is encoded in one region; if the network fires both
    neighbours at the border, decode still reports one source."""
    border %= layout.n_regions
    az = layout.offset_deg + border * layout.width_deg
    enc = encode(layout, [az], [dist])
    assert enc.target[:, ACTIVE].sum() == 1
    out = np.zeros((layout.n_regions, 3))
    left, right = (border - 1) % layout.n_regions, border
    out[left] = [0.9, 0.5, 1.0]   # end of the left sector
    out[right] = [0.8, 0.5, 0.0]  # start of the right sector
    dets = decode(RegionLayout(layout.n_regions, layout.d_min_m, layout.d_max_m, layout.offset_deg,
                               min_separation_deg=5.0), out)
    assert len(dets) == 1
    assert dets[0].region == left and dets[0].confidence == pytest.approx(0.9)
    assert angular_distance_deg(dets[0].azimuth_deg, az) < 1e-6


def test_two_sources_in_one_region_keep_the_stronger():
    layout = RegionLayout(n_regions=8)
    enc = encode(layout, [10.0, 30.0], [2.0, 1.0])  # default weight: nearer is stronger
    assert list(enc.assigned_region) == [-1, 0]
    assert enc.target[0, AZIMUTH] == pytest.approx(30.0 / 45.0)
    enc = encode(layout, [10.0, 30.0], [2.0, 1.0], weight=[0.0, -6.0])  # explicit levels in dB
    assert list(enc.assigned_region) == [0, -1]


def test_the_weaker_source_in_a_taken_sector_is_dropped():
    layout = RegionLayout(n_regions=8)
    enc = encode(layout, [20.0, 40.0], [1.0, 2.0])  # both in sector 0 (0-45 deg): the nearer keeps it
    assert list(enc.assigned_region) == [0, -1]
    (det,) = decode(layout, enc.target)
    assert det.azimuth_deg == pytest.approx(20.0, abs=1e-4)


def test_sources_closer_than_the_separation_are_one():
    layout = RegionLayout(n_regions=8, min_separation_deg=10.0)
    enc = encode(layout, [43.0, 47.0], [1.0, 1.5])
    assert list(enc.assigned_region) == [0, -1]


def test_wraparound_region_and_distance_clipping():
    layout = RegionLayout(n_regions=8, offset_deg=-22.5, d_min_m=0.5, d_max_m=3.0)
    enc = encode(layout, [359.0, 5.0 + 180], [9.0, 0.1])
    assert enc.assigned_region[0] == 0 and enc.assigned_region[1] == 4
    assert enc.target[0, DISTANCE] == 1.0 and enc.target[4, DISTANCE] == 0.0
    dets = decode(layout, enc.target)
    assert angular_distance_deg(dets[-1].azimuth_deg, 359.0) < 1e-4


def test_threshold_and_shape_checks():
    layout = RegionLayout(n_regions=4)
    out = np.array([[0.49, 0.5, 0.5], [0.51, 0.5, 0.5], [0.0, 0, 0], [1.0, 0, 0]])
    assert [d.region for d in decode(layout, out, threshold=0.5)] == [1, 3]
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        decode(layout, np.zeros((8, 3)))


def test_encode_batch_skips_padding():
    layout = RegionLayout()
    az = np.array([[10.0, np.nan, np.nan], [100.0, 200.0, np.nan]])
    dist = np.array([[1.0, np.nan, np.nan], [1.0, 2.0, np.nan]])
    t = encode_batch(layout, az, dist)
    assert t.shape == (2, 8, 3)
    assert t[0, :, ACTIVE].sum() == 1 and t[1, :, ACTIVE].sum() == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"n_regions": 0}, "n_regions"),
    ({"d_min_m": 3.0, "d_max_m": 2.0}, "d_min_m < d_max_m"),
    ({"min_separation_deg": 200.0}, "min_separation_deg"),
])
def test_layout_validation(kwargs, message):
    with pytest.raises(RegionConfigError, match=message):
        RegionLayout(**kwargs)


def test_layout_dict_roundtrip_and_unknown_keys():
    layout = RegionLayout(n_regions=16, min_separation_deg=20.0)
    assert RegionLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(RegionConfigError, match="unknown region key"):
        RegionLayout.from_dict({"n_regions": 8, "sectors": 8})


def test_older_sidecars_retired_overlap_keys_are_read_only_at_their_inert_values():
    """Overlapping sectors (margin_deg > 0, label_overlap) were removed; every shipped sidecar carries
    margin_deg = 0 and label_overlap = false, which still read, and any other value is refused."""
    layout = RegionLayout(n_regions=16, min_separation_deg=20.0)
    old = {**layout.to_dict(), "margin_deg": 0.0, "label_overlap": False}
    assert RegionLayout.from_dict(old) == layout
    for key, value in (("margin_deg", 5.625), ("label_overlap", True)):
        with pytest.raises(RegionConfigError, match=rf"regions\.{key} = .* or absent \(overlapping sectors"):
            RegionLayout.from_dict({**old, key: value})


def test_fine_stretch_reads_the_fine_azimuth_away_from_the_centre():
    plain = RegionLayout(n_regions=16, min_separation_deg=20.0)
    stretched = RegionLayout(n_regions=16, min_separation_deg=20.0, fine_stretch=1.15)
    out = np.zeros((16, 3))
    out[0] = [0.9, 0.5, 0.9]    # near the upper border of sector 0 (0-22.5 deg)
    out[8] = [0.9, 0.5, 0.5]    # the centre of sector 8 (180-202.5 deg)
    out[12] = [0.9, 0.5, 0.05]  # near the lower border of sector 12 (270-292.5 deg)
    a = {d.region: d.azimuth_deg for d in decode(plain, out)}
    b = {d.region: d.azimuth_deg for d in decode(stretched, out)}
    assert a[0] == pytest.approx(0.9 * 22.5) and b[0] == pytest.approx((0.5 + 1.15 * 0.4) * 22.5)
    assert a[8] == pytest.approx(b[8]) == pytest.approx(191.25)
    # may cross the border by (stretch - 1) / 2 of a sector; wrapped like any azimuth
    assert b[12] == pytest.approx(270 + (0.5 - 1.15 * 0.45) * 22.5)
    out[0, 2] = 1.0
    assert decode(stretched, out)[0].azimuth_deg == pytest.approx(1.075 * 22.5)


def test_fine_stretch_is_validated_and_defaults_for_old_layouts():
    old = RegionLayout(n_regions=16).to_dict()
    del old["fine_stretch"]
    assert RegionLayout.from_dict(old).fine_stretch == 1.0  # board sidecars written before it existed
    for bad in (0.4, 2.5, float("nan"), True, "1.1"):
        with pytest.raises(RegionConfigError, match="fine_stretch"):
            RegionLayout(fine_stretch=bad)
    assert RegionLayout.from_dict({**old, "fine_stretch": 1.15}).fine_stretch == 1.15
