"""The one settings mechanism (edge_msl.settings_check): a required setting, a missing key, check_keys."""

from dataclasses import dataclass

import pytest

from edge_msl.settings_check import SettingError, Settings, integer, number, required, setting


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
