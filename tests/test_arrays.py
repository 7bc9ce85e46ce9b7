"""Array geometries: built-in boards, custom arrays, validation and the frame convention."""

import math

import numpy as np
import pytest

from edge_msl import arrays
from edge_msl.arrays import ArrayConfigError, MicArray, from_dict, get_array, list_arrays


def test_builtin_list_has_the_boards():
    assert set(list_arrays()) >= {"uca8-r10", "respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2",
                                  "matrix-voice", "matrix-creator", "minidsp-uma8"}
    assert arrays.DEFAULT_ARRAY == "uca8-r10"


def test_uca8_geometry_is_the_reference():
    a = get_array("uca8-r10")
    p = a.positions()
    assert p.shape == (8, 3)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 0.10, atol=1e-9)
    np.testing.assert_allclose(arrays.azimuth_deg(p), 45.0 * np.arange(8), atol=1e-6)
    assert a.channel_map == tuple(range(8))
    assert a.aperture_m() == pytest.approx(0.20)


@pytest.mark.parametrize("name,n_mics,n_channels,radius_mm", [
    ("respeaker-4mic", 4, 4, 40.5),
    ("respeaker-6mic", 6, 8, 46.3),
    ("respeaker-usb-v2", 4, 6, 32.0),
    ("matrix-creator", 8, 8, 52.5),
])
def test_circular_boards_have_their_published_radius(name, n_mics, n_channels, radius_mm):
    a = get_array(name)
    assert (a.n_mics, a.n_channels) == (n_mics, n_channels)
    r = np.linalg.norm(a.positions()[:, :2], axis=1) * 1000
    np.testing.assert_allclose(r, radius_mm, atol=0.1)
    # equal angular spacing
    az = np.sort(arrays.azimuth_deg(a.positions()))
    np.testing.assert_allclose(np.diff(az), 360.0 / n_mics, atol=0.2)


@pytest.mark.parametrize("name,ring_mm", [("matrix-voice", 38.3), ("minidsp-uma8", 43.0)])
def test_boards_with_a_centre_mic(name, ring_mm):
    a = get_array(name)
    r = np.linalg.norm(a.positions()[:, :2], axis=1) * 1000
    assert np.sum(r < 1e-6) == 1
    np.testing.assert_allclose(r[r > 1e-6], ring_mm, atol=0.6)


def test_channel_maps_skip_non_microphone_channels():
    six = get_array("respeaker-6mic")
    frames = np.arange(10 * 8).reshape(10, 8)
    np.testing.assert_array_equal(six.select_channels(frames), frames[:, :6])
    usb = get_array("respeaker-usb-v2")
    frames = np.arange(3 * 6).reshape(3, 6)
    np.testing.assert_array_equal(usb.select_channels(frames), frames[:, 1:5])


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ArrayConfigError, match="expects 8 capture channels, found 6"):
        get_array("uca8-r10").select_channels(np.zeros((4, 6)))


def test_unknown_array_lists_known_ones():
    with pytest.raises(ArrayConfigError, match="known arrays: .*uca8-r10"):
        get_array("respeaker-5mic")


def test_custom_array_from_config_roundtrips():
    cfg = {"name": "my-tri", "positions_m": [[0.03, 0, 0], [-0.015, 0.026, 0], [-0.015, -0.026, 0]],
           "channel_map": [2, 0, 1], "n_channels": 4}
    a = from_dict(cfg)
    assert a.n_mics == 3 and a.n_channels == 4
    frames = np.array([[10, 11, 12, 13]])
    np.testing.assert_array_equal(a.select_channels(frames), [[12, 10, 11]])
    assert from_dict(a.to_dict()) == a


def test_builtin_by_name_from_config():
    assert from_dict({"name": "respeaker-6mic"}) is get_array("respeaker-6mic")


@pytest.mark.parametrize("cfg,message", [
    ({"positions_m": [[0, 0, 0]]}, "at least 2 microphones"),
    ({"positions_m": [[0, 0], [1, 0]]}, "3 numbers"),
    ({"positions_m": [[0, 0, 0], [0.0005, 0, 0]]}, "0.50 mm apart"),
    ({"positions_m": [[0, 0, 0], [45, 0, 0]]}, "metres"),
    ({"positions_m": [[0, 0, 0], [0.1, 0, 0]], "channel_map": [0]}, "2 microphones"),
    ({"positions_m": [[0, 0, 0], [0.1, 0, 0]], "channel_map": [0, 0], "n_channels": 2}, "uses a channel twice"),
    ({"positions_m": [[0, 0, 0], [0.1, 0, 0]], "channel_map": [0, 5], "n_channels": 2}, r"\[0, 1\]"),
    ({"positions_m": [[0, 0, 0], [0.1, 0, 0]], "colour": "red"}, "unknown array key"),
    ({"positions_m": [[0, 0, float("nan")], [0.1, 0, 0]]}, "finite numbers"),
    ({"name": "uca8-r10", "positions_m": [[0, 0, 0], [0.1, 0, 0]]}, "a name no built-in array has"),
    ({"positions_m": "abc"}, "list of"),
])
def test_custom_array_validation(cfg, message):
    with pytest.raises(ArrayConfigError, match=message):
        from_dict(cfg)


@pytest.mark.parametrize("cfg,key,value,allowed", [
    ({"positions_m": [[0, 0, 0], [0.1, 0, 0]], "native_rate_hz": 1000}, "array.native_rate_hz", 1000, "[8000, 192000]"),
    ({"positions_m": [[0, 0, 0], [0.1, 0, 0]], "channel_map": [0, 5], "n_channels": 2}, "array.channel_map", (0, 5),
     "[0, 1]"),
    ({"name": "respeaker-6mic", "n_channels": 0}, "array.n_channels", 0, ">= 1"),
])
def test_a_bad_array_value_is_the_one_settings_error_naming_key_value_and_allowed(cfg, key, value, allowed):
    """The [array] table is read by the one settings mechanism (edge_msl.settings_check), like every other."""
    from edge_msl.settings_check import SettingError

    with pytest.raises(SettingError) as e:
        from_dict(cfg)
    assert (e.value.key, e.value.value) == (key, value) and allowed in e.value.allowed
    assert str(e.value).startswith(f"{key} = {value!r} is invalid; allowed: ") and allowed in str(e.value)
    assert ArrayConfigError is SettingError


def test_far_field_delays_follow_the_frame_convention():
    """A plane wave from +y (azimuth 90) reaches the mic at +y first, the mic at -y last."""
    a = get_array("uca8-r10")
    tau = arrays.far_field_delays_s(a, 90.0)
    assert np.argmin(tau) == 2 and np.argmax(tau) == 6
    assert tau[2] == pytest.approx(-0.10 / arrays.SPEED_OF_SOUND_M_S)
    # elevation shrinks horizontal delays by cos(elevation)
    tau_el = arrays.far_field_delays_s(a, 90.0, 60.0)
    np.testing.assert_allclose(tau_el, tau * math.cos(math.radians(60)), atol=1e-12)


def test_rotation_is_counter_clockwise():
    a = get_array("uca8-r10")
    rotated = a.rotated(90.0)
    np.testing.assert_allclose(rotated[0], [0.0, 0.10, 0.0], atol=1e-12)


def test_arrays_are_frozen():
    a = get_array("uca8-r10")
    with pytest.raises(Exception):
        a.name = "x"  # type: ignore[misc]
    assert isinstance(a, MicArray)


def test_builtin_array_with_a_changed_channel_map_keeps_its_geometry():
    from edge_msl.arrays import ArrayConfigError, from_dict, get_array

    base = get_array("respeaker-6mic")
    moved = from_dict({"name": "respeaker-6mic", "channel_map": [2, 3, 4, 5, 6, 7]})
    assert moved.channel_map == (2, 3, 4, 5, 6, 7) and moved.n_channels == 8
    assert moved.same_geometry(base) and moved.name == base.name
    assert from_dict({"name": "respeaker-6mic"}) == base
    with pytest.raises(ArrayConfigError, match="channel index"):
        from_dict({"name": "respeaker-6mic", "channel_map": [2, 3, 4, 5, 6, 9]})
    with pytest.raises(ArrayConfigError, match="only channel_map and n_channels"):
        from_dict({"name": "respeaker-6mic", "native_rate_hz": 48000})
