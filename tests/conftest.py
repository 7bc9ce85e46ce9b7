"""Shared fixtures (a tiny real dry-signal bank, a tiny simulated window dataset) and the side of each
test module: ``device`` (edge_msl: numpy, a TFLite runtime, ALSA, MQTT), ``training`` (train_tf: Keras,
pyroomacoustics, scipy) or ``convert`` (Keras -> int8 TFLite), as pytest markers (``pytest -m device``); a
test marked with a side itself keeps it (an installed wheel's ``calibrate`` is the training side).
Training and convert modules skip, whole, where the ``[train]`` extra is not installed."""

import importlib.util
import shutil
from pathlib import Path

import pytest

TRAINING = frozenset({
    "test_backends", "test_calibrate", "test_calibrate_generalize", "test_crosscheck", "test_evaluate",
    "test_gpu_job", "test_mixer", "test_model", "test_scenes", "test_signals", "test_simulate", "test_train",
    "test_train_mix", "test_train_settings",
})
"""Test modules of train_tf (simulation, the Keras model, training, evaluation, calibration)."""
CONVERT = frozenset({"test_convert"})
"""Test modules of convert (Keras -> int8 TFLite and its parity report)."""
TRAIN_EXTRA = ("keras", "pyroomacoustics", "scipy", "tqdm")
"""What edge-msl[train] brings that the training and convert sides import."""


def side_of(path: Path) -> str:
    """``device``, ``training`` or ``convert``: the side a test module belongs to."""
    return "training" if path.stem in TRAINING else "convert" if path.stem in CONVERT else "device"


class _NeedsTrainExtra(pytest.Module):
    """A training or convert module where edge-msl[train] is missing: one skip, not an import error."""

    def collect(self):
        missing = [m for m in TRAIN_EXTRA if importlib.util.find_spec(m) is None]
        pytest.skip(f"needs edge-msl[train] ({', '.join(missing)} not installed)", allow_module_level=True)


def pytest_ignore_collect(collection_path: Path, config):
    # -m device: the training and convert modules are not even imported (TensorFlow takes seconds to import)
    if (config.getoption("markexpr", "").strip() == "device" and collection_path.suffix == ".py"
            and side_of(collection_path) != "device"):
        return True
    return None


def pytest_pycollect_makemodule(module_path: Path, parent):
    if side_of(module_path) != "device" and any(importlib.util.find_spec(m) is None for m in TRAIN_EXTRA):
        return _NeedsTrainExtra.from_parent(parent, path=module_path)
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(side) for side in ("device", "training", "convert")):  # its own wins
            item.add_marker(getattr(pytest.mark, side_of(item.path)))


@pytest.fixture(scope="session")
def bank_path(tmp_path_factory):
    """A small dry-signal bank built with the real TTS engines, asterisk prompts and noises."""
    signals = pytest.importorskip("train_tf.signals")
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("bank") / "bank.npz"
    settings = signals.BankSettings(n_espeak=6, n_flite=1, n_festival=0, max_asterisk_files=3, n_noise_each=1,
                                    n_music=1, noise_duration_s=3.0, workers=2)
    signals.build_bank(path, settings)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(bank_path, tmp_path_factory):
    """24 simulated 0.25 s windows (0-3 sources) for the 8-mic reference array, in 3 shards."""
    simulate = pytest.importorskip("train_tf.simulate")
    out = tmp_path_factory.mktemp("tiny") / "windows"
    settings = simulate.SimSettings(window_s=0.25, n_sources=(0, 3), positions_per_room=6)
    simulate.write_dataset(out, "windows", 24, settings, seed=3, bank_path=bank_path, shard_size=8, workers=2,
                           progress=False)
    return out
