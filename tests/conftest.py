"""Shared fixtures: a tiny real dry-signal bank and a tiny simulated window dataset."""

import shutil

import pytest


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
