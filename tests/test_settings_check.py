"""The one settings mechanism (edge_msl.settings_check): a required setting, a missing key, check_keys; ranges,
lists, nested tables, values kept as given and JSON data (the training side's settings)."""

from dataclasses import dataclass

import pytest

from edge_msl.settings_check import (SettingError, Settings, integer, items, number, pair, required, setting,
                                     table_of)


@dataclass(frozen=True)
class _Probe(Settings):
    size: int = required(integer(1, 8))
    """A setting every table must give."""
    gain: float = setting(0.5, number(0.0, 1.0))
    """One with a default."""

    KEY = "probe.{}"
    TABLE = "probe"


def test_a_required_setting_is_checked_and_a_missing_one_is_named():
    assert _Probe.from_dict({"size": 3}) == _Probe(3, 0.5)
    with pytest.raises(SettingError, match=r"probe needs key\(s\) \['size'\]") as e:
        _Probe.from_dict({"gain": 0.2})
    assert e.value.key == "size"
    with pytest.raises(SettingError) as e:
        _Probe.from_dict({"size": 9})
    assert (e.value.key, e.value.value, e.value.allowed) == ("probe.size", 9, "an integer in [1, 8]")
    assert str(e.value) == "probe.size = 9 is invalid; allowed: an integer in [1, 8]"
    assert _Probe.from_dict({"gain": 1.0}, base=_Probe(2)) == _Probe(2, 1.0)  # the base gives the required one


def test_check_keys_refuses_a_non_table_and_unknown_keys_by_name():
    _Probe.check_keys({"size": 1})
    with pytest.raises(SettingError, match=r"probe = \[1\] is invalid; allowed: a table of size, gain"):
        _Probe.check_keys([1])
    with pytest.raises(SettingError, match=r"unknown probe key\(s\) \['colour'\]; allowed: \['gain', 'size'\]") as e:
        _Probe.check_keys({"size": 1, "colour": "red"})
    assert (e.value.key, e.value.value) == ("colour", "red")


@dataclass(frozen=True)
class _Stored(Settings):
    span: tuple[float, float] = setting((0.5, 2.0), pair(number(0.0, 10.0, as_given=True)))
    """A range kept as given."""
    sizes: tuple[int, ...] = setting((1, 2), items(integer(1), 1))
    """A non-empty list."""
    probe: _Probe = setting(_Probe(3), table_of(_Probe))
    """A nested table."""

    KEY = "stored.{}"
    TABLE = "stored"
    PLAIN_DATA = True


def test_ranges_lists_nested_tables_and_json_data():
    s = _Stored.from_dict({"span": [1, 4], "sizes": [3], "probe": {"size": 2}})
    assert s.span == (1, 4) and isinstance(s.span[0], int) and s.probe == _Probe(2)
    assert s.to_dict() == {"span": [1, 4], "sizes": [3], "probe": {"size": 2, "gain": 0.5}}
    assert _Stored.from_dict(s.to_dict()) == s
    assert _Probe(3).to_dict() == {"size": 3, "gain": 0.5}  # without PLAIN_DATA: as before
    for table, message in [
        ({"span": [4, 1]}, "stored.span = (4, 1) is invalid; allowed: a range [low, high] with low <= high"),
        ({"span": [1, 11]}, "stored.span = (1, 11) is invalid; allowed: a range [low, high], each a number in [0, 10]"),
        ({"span": 3}, "stored.span = 3 is invalid; allowed: a range [low, high]"),
        ({"sizes": []}, "stored.sizes = () is invalid; allowed: a list of at least 1 value(s)"),
        ({"sizes": [1, 0]}, "stored.sizes = (1, 0) is invalid; allowed: a list, each value an integer >= 1"),
        ({"probe": {"size": 9}}, "probe.size = 9 is invalid; allowed: an integer in [1, 8]"),
        ({"probe": 3}, "stored.probe = 3 is invalid; allowed: a probe table"),
    ]:
        with pytest.raises(SettingError) as e:
            _Stored.from_dict(table)
        assert str(e.value) == message


def test_choice_takes_strings_or_numbers_and_gives_the_choice_itself():
    from edge_msl.settings_check import choice

    frame = choice(512, 1024)
    assert frame("k", 1024) == 1024 and type(frame("k", 512.0)) is int  # 512.0 is 512
    mode = choice("warn", "off")
    assert mode("k", "off") == "off"
    for check, bad in ((frame, True), (frame, "512"), (frame, [512]), (frame, 256), (mode, 0), (mode, ["off"])):
        with pytest.raises(SettingError) as e:
            check("k", bad)
        assert e.value.allowed == ("512 or 1024" if check is frame else "'warn' or 'off'")
    assert choice(0, 1)("k", 0) == 0
    with pytest.raises(SettingError):
        choice(0, 1)("k", False)  # a bool is no number here


def test_an_open_ended_number_says_so():
    with pytest.raises(SettingError, match=r"allowed: a number > 0$"):
        number(0.0, float("inf"), lo_open=True)("k", 0)
    with pytest.raises(SettingError, match=r"allowed: a number <= 1$"):
        number(float("-inf"), 1.0)("k", 2)
