"""The training side's settings on the one mechanism (edge_msl.settings_check): TrainSettings, BankSettings,
SceneSettings, calibrate's FrontEnd and PerturbedArray. A bad value is one SettingError naming the key, the value
and what is allowed; stored tables (params.json's train, a bank's meta, a truth file's settings, session.json's
front_end) read back and write out as they were."""

import json
from pathlib import Path

import pytest

from edge_msl.settings_check import SettingError
from train_tf import train
from train_tf.bank.build import BankSettings
from train_tf.calibrate.label import FrontEnd
from train_tf.calibrate.standin import PerturbedArray
from train_tf.model import LossWeights, ModelConfig
from train_tf.scenes import SceneSettings
from train_tf.train import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cls, changes, message", [
    (TrainSettings, {"batch_size": 0}, "train.batch_size = 0 is invalid; allowed: an integer >= 1"),
    (TrainSettings, {"learning_rate": 0.0}, "train.learning_rate = 0.0 is invalid; allowed: a number > 0"),
    (TrainSettings, {"max_minutes": -1}, "train.max_minutes = -1 is invalid; allowed: a number >= 0"),
    (TrainSettings, {"equalize_mics": 1}, "train.equalize_mics = 1 is invalid; allowed: true or false"),
    (BankSettings, {"n_espeak": -1}, "bank.n_espeak = -1 is invalid; allowed: an integer >= 0"),
    (BankSettings, {"asterisk_langs": ("en", "ru")},
     "bank.asterisk_langs = ('en', 'ru') is invalid; allowed: a list, each value 'en' or 'es' or 'fr'"),
    (BankSettings, {"noise_kinds": ("music",)}, "bank.noise_kinds = ('music',) is invalid; allowed: a list, each "
     "value 'white' or 'pink' or 'brown' or 'hum' or 'fan' or 'clicks' or 'babble'"),
    (BankSettings, {"workers": 0}, "bank.workers = 0 is invalid; allowed: an integer >= 1"),
    (SceneSettings, {"kind": "run"}, "scene.kind = 'run' is invalid; allowed: 'turns' or 'walk'"),
    (SceneSettings, {"n_talkers": (3, 2)},
     "scene.n_talkers = (3, 2) is invalid; allowed: a range [low, high] with low <= high"),
    (SceneSettings, {"speed_m_s": (0, 1)},
     "scene.speed_m_s = (0, 1) is invalid; allowed: a range [low, high], each a number in (0, 100]"),
    (PerturbedArray, {"board_reflection": 1.5},
     "perturb.board_reflection = 1.5 is invalid; allowed: a number in [0, 1]"),
])
def test_a_bad_setting_is_one_error_naming_key_value_and_allowed(cls, changes, message):
    with pytest.raises(SettingError) as err:
        cls(**changes)
    assert str(err.value) == message
    with pytest.raises(SettingError, match=r"unknown .* key\(s\) \['colour'\]"):
        cls.from_dict({"colour": 1})


def test_shipped_params_tables_read_back_and_write_out_byte_identical():
    shipped = sorted(ROOT.glob("models/*/params.json")) + sorted(ROOT.glob("train_tf/float_models/*/params.json"))
    assert shipped
    for path in shipped:
        params = json.loads(path.read_text())
        for cls, key in ((ModelConfig, "model"), (LossWeights, "loss_weights"), (TrainSettings, "train")):
            table = params.get(key)
            if table is not None:  # an older file's missing key (uca8-r10: first_stride, equalize_mics) comes out
                out = cls.from_dict(table).to_dict()  # at its default
                assert json.dumps({k: out[k] for k in table}) == json.dumps(table), path


def test_stored_tables_keep_values_as_given():
    t = TrainSettings(learning_rate=1, max_minutes=13)
    assert json.dumps(t.to_dict()).count('"learning_rate": 1,') == 1 and TrainSettings.from_dict(t.to_dict()) == t
    b = BankSettings(noise_duration_s=3, asterisk_langs=["en"], workers=2)
    assert b.to_dict()["noise_duration_s"] == 3 and b.to_dict()["asterisk_langs"] == ["en"]
    assert BankSettings.from_dict(b.to_dict()) == b
    s = SceneSettings(kind="walk", duration_s=8, rt60_s=(0.2, 0.5))
    assert json.dumps(s.to_dict()["duration_s"]) == "8" and s.to_dict()["rt60_s"] == [0.2, 0.5]
    assert SceneSettings.from_dict(s.to_dict()) == s


def test_front_end_is_stored_rounded_and_read_back():
    fe = FrontEnd((1.0, -0.5), (1.23456789012e-5, 0.0), (3.0, -3.0))
    stored = json.loads(json.dumps(fe.to_dict()))
    assert stored == {"gain_db": [1.0, -0.5], "delay_s": [1.2346e-05, 0.0], "phase_deg": [3.0, -3.0]}
    assert FrontEnd.from_dict(stored).to_dict() == stored
    assert FrontEnd.identity(3) == FrontEnd((0.0,) * 3, (0.0,) * 3, (0.0,) * 3)
    with pytest.raises(SettingError, match=r"front_end\.delay_s = \(0\.0,\) is invalid; allowed: one value per "):
        FrontEnd((0.0, 0.0), (0.0,), (0.0, 0.0))
    with pytest.raises(SettingError, match=r"front_end\.gain_db = \(nan,\) is invalid; allowed: a list, each value "
                                           r"a finite number"):
        FrontEnd.from_dict({"gain_db": [float("nan")], "delay_s": [0.0], "phase_deg": [0.0]})
    with pytest.raises(SettingError, match=r"front_end needs key\(s\) \['phase_deg'\]"):
        FrontEnd.from_dict({"gain_db": [0.0], "delay_s": [0.0]})


def test_train_command_names_the_option_of_a_bad_value(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"settings": {"window_s": 0.25, "sample_rate_hz": 16000},
                                                    "array": {"positions_m": [[0.0, 0.0, 0.0]] * 8}}))
    base = ["--data", str(tmp_path), "--out", str(tmp_path / "run")]
    for option, value, key in (("--batch-size", "0", "train.batch_size"), ("--lr", "-1", "train.learning_rate"),
                               ("--max-minutes", "-2", "train.max_minutes")):
        with pytest.raises(SystemExit, match=rf"^{option}: {key} = "):
            train.main([*base, option, value])
    with pytest.raises(SystemExit, match=r"^--positive-weight: loss_weights\.positive = 0\.0 is invalid"):
        train.main([*base, "--positive-weight", "0"])
    with pytest.raises(SystemExit, match=r"^bad model option: model\.dense_units = 0 is invalid"):
        train.main([*base, "--dense-units", "0"])
    assert not (tmp_path / "run").exists()
