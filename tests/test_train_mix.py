"""Training CLI mixing an RIR bank on the fly: runs, logs, resumes, stops on a time budget, learns."""

import json

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("pyroomacoustics")

from edge_msl.regions import RegionLayout
from train_tf import simulate, train
from train_tf.mixer import Mixer
from train_tf.signals import DryBank
from train_tf.simulate import SimSettings

TINY = ["--block-filters", "8,8,16", "--first-filters", "8", "--dense-units", "16", "--batch-size", "8", "--quiet"]
MIX = ["--steps-per-epoch", "4", "--val-windows", "16"]


@pytest.fixture(scope="module")
def rir_bank(tmp_path_factory):
    """Three tiny rooms, one per shard (shard 0 validates)."""
    out = tmp_path_factory.mktemp("rir") / "bank"
    settings = SimSettings(window_s=0.25, rir_bank_samples=2048, max_image_order=4, positions_per_room=6)
    simulate.write_dataset(out, "rir-bank", 3, settings, 9, None, shard_size=1, workers=2, progress=False)
    return out


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_on_the_fly_logs_resumes_and_stops_on_budget(rir_bank, bank_path, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--rir-bank", str(rir_bank), "--bank", str(bank_path), "--out", str(out), *MIX, *TINY]
    assert train.main([*args, "--epochs", "2"]) == 0
    summary = _last_json(capsys)
    assert summary["epochs_done"] == 2 and summary["stopped"] == "all epochs done"
    assert np.isfinite(summary["best_val_loss"])
    header, *rows = (out / "log.csv").read_text().strip().splitlines()
    assert header.split(",") == ["epoch", "train_loss", "val_loss", "learning_rate", "seconds", "windows_per_s"]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]
    assert all(float(r.split(",")[-1]) > 0 and np.isfinite(float(r.split(",")[1])) for r in rows)
    params = json.loads((out / "params.json").read_text())
    data = params["data"]
    assert data["source"] == "rir-bank" and data["dir"] == str(rir_bank) and data["bank"] == str(bank_path)
    assert data["train_rooms"] == 2 and data["val_rooms"] == 1 and data["val_windows"] == 16
    assert params["model"]["window_samples"] == 4000 and params["model"]["n_mics"] == 8
    assert params["train"]["steps_per_epoch"] == 4
    assert (out / "best.weights.h5").exists() and (out / "last.weights.h5").exists()
    # resuming continues the log
    assert train.main([*args, "--epochs", "3"]) == 0
    assert _last_json(capsys)["epochs_done"] == 3
    assert len((out / "log.csv").read_text().strip().splitlines()) == 1 + 3
    # a spent time budget stops before the next epoch, resumably
    assert train.main([*args, "--epochs", "5", "--max-minutes", "0"]) == 0
    summary = _last_json(capsys)
    assert summary["epochs_done"] == 3 and summary["stopped"].startswith("time budget")


def test_rir_bank_needs_a_dry_bank(rir_bank, tmp_path):
    with pytest.raises(SystemExit, match="--bank"):
        train.main(["--rir-bank", str(rir_bank), "--out", str(tmp_path / "r"), *MIX, *TINY])


def test_a_tiny_model_fits_a_fixed_mixed_batch(rir_bank, bank_path):
    """The rendered windows and their targets are consistent enough to be learned: the loss on
    one fixed batch falls well below its starting value."""
    import keras

    from train_tf.model import ModelConfig, build_model, region_loss

    keras.utils.set_random_seed(0)
    mixer = Mixer(rir_bank, DryBank.load(bank_path), RegionLayout(), n_sources_p=(0, 1, 1, 0, 0), noise_tape_s=5.0)
    x, y = mixer.batch(16)
    model = build_model(ModelConfig(window_samples=4000, first_filters=8, block_filters=(8, 8, 16), dense_units=16,
                                    dropout=0.0))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=region_loss())
    losses = [float(model.train_on_batch(x, y)) for _ in range(60)]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.4 * losses[0], losses


def test_init_weights_and_mix_overrides(rir_bank, bank_path, tmp_path, capsys):
    base = ["--rir-bank", str(rir_bank), "--bank", str(bank_path), *MIX, *TINY, "--epochs", "1"]
    first = tmp_path / "first"
    assert train.main([*base, "--out", str(first)]) == 0
    # a near-zero learning rate: the fine-tuned run must start from (and so stay at) the given weights
    second = tmp_path / "second"
    assert train.main([*base, "--out", str(second), "--lr", "1e-12", "--init-weights",
                       str(first / "best.weights.h5"), "--mix-set", "source_level_db=[-12,6]"]) == 0
    params = json.loads((second / "params.json").read_text())
    assert params["init_weights"] == str(first / "best.weights.h5")
    assert params["data"]["simulation"]["source_level_db"] == [-12, 6]
    assert params["data"]["mix_overrides"] == {"source_level_db": [-12, 6]}
    from train_tf.model_dir import load_model

    a, _ = load_model(first, "best.weights.h5")
    b, _ = load_model(second, "last.weights.h5")
    kernels = [(la.name, wa, wb) for la, lb in zip(a.layers, b.layers)
               for wa, wb in zip(la.get_weights(), lb.get_weights()) if la.name.startswith("conv")]
    assert kernels and all(np.allclose(wa, wb, atol=1e-6) for _, wa, wb in kernels)
    with pytest.raises(SystemExit, match="init-weights"):
        train.main([*base, "--out", str(tmp_path / "third"), "--regions", "4", "--init-weights",
                    str(first / "best.weights.h5")])
    with pytest.raises(SystemExit, match="JSON"):
        train.main([*base, "--out", str(tmp_path / "fourth"), "--mix-set", "source_level_db=[-12,"])


def test_talker_counts_and_positive_weight_reach_the_run(rir_bank, bank_path, tmp_path, capsys):
    base = ["--rir-bank", str(rir_bank), "--bank", str(bank_path), *MIX, *TINY, "--epochs", "1"]
    out = tmp_path / "weighted"
    assert train.main([*base, "--out", str(out), "--n-sources-p", "0,0,0,1,1", "--positive-weight", "2"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["data"]["n_sources_p"] == [0.0, 0.0, 0.0, 0.5, 0.5]
    assert params["loss_weights"]["positive"] == 2.0
    with pytest.raises(SystemExit, match="five numbers"):
        train.main([*base, "--out", str(tmp_path / "a"), "--n-sources-p", "0.5,x"])
    with pytest.raises(SystemExit, match="n_sources_p"):
        train.main([*base, "--out", str(tmp_path / "b"), "--n-sources-p", "0.5,0.5"])
    with pytest.raises(SystemExit, match="positive-weight"):
        train.main([*base, "--out", str(tmp_path / "c"), "--positive-weight", "0"])


def test_window_override_sizes_the_model_and_overlapping_first_layer(rir_bank, bank_path, tmp_path, capsys):
    # the bank's rooms hold 0.25 s windows; --mix-set window_s=0.375 mixes longer ones and the
    # model is built for them; the first layer's kernel spans more samples than its stride
    out = tmp_path / "long"
    assert train.main(["--rir-bank", str(rir_bank), "--bank", str(bank_path), *MIX, *TINY, "--epochs", "1",
                       "--out", str(out), "--mix-set", "window_s=0.375", "--first-kernel", "12",
                       "--first-stride", "4"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["model"]["window_samples"] == 6000
    assert (params["model"]["first_kernel"], params["model"]["first_stride"]) == (12, 4)
    from train_tf.model_dir import load_model

    model, _ = load_model(out, "best.weights.h5")
    assert model.input_shape == (None, 6000, 8)
    assert model.get_layer("conv0").strides == (4,)


def test_init_weights_from_shorter_first_frames(rir_bank, bank_path, tmp_path, capsys):
    """--init-weights from a kernel-3 run into a kernel-6 stride-6 network over twice the window
    (the trained network's params.json beside its weights tells its shape)."""
    base = ["--rir-bank", str(rir_bank), "--bank", str(bank_path), *MIX, *TINY, "--epochs", "1"]
    first = tmp_path / "first"
    assert train.main([*base, "--out", str(first)]) == 0
    second = tmp_path / "second"
    assert train.main([*base, "--out", str(second), "--lr", "1e-12", "--first-kernel", "6", "--first-stride", "6",
                       "--mix-set", "window_s=0.5", "--init-weights", str(first / "best.weights.h5")]) == 0
    from train_tf.model_dir import load_model

    a, _ = load_model(first, "best.weights.h5")
    b, _ = load_model(second, "last.weights.h5")
    assert b.input_shape[1] == 2 * a.input_shape[1]
    ka, kb = a.get_layer("conv0").get_weights()[0], b.get_layer("conv0").get_weights()[0]
    np.testing.assert_allclose(kb, np.repeat(ka, 2, axis=0) / 2, atol=1e-6)
    np.testing.assert_allclose(b.get_layer("conv3").get_weights()[0], a.get_layer("conv3").get_weights()[0], atol=1e-6)
    # without the params file the shapes cannot be matched: the old one-line error
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "w.weights.h5").write_bytes((first / "best.weights.h5").read_bytes())
    with pytest.raises(SystemExit, match="integer multiple"):
        train.main([*base, "--out", str(tmp_path / "third"), "--first-kernel", "6", "--first-stride", "6",
                    "--mix-set", "window_s=0.5", "--init-weights", str(lone / "w.weights.h5")])
