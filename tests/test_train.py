"""Training CLI on a tiny dataset: runs, logs, checkpoints, resumes."""

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from train_tf import train  # noqa: E402

TINY = ["--block-filters", "8,8,16", "--first-filters", "8", "--dense-units", "16", "--batch-size", "8", "--quiet"]


def test_train_logs_checkpoints_and_resumes(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--data", str(tiny_dataset), "--out", str(out), "--epochs", "1", *TINY]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["epochs_done"] == 1 and np.isfinite(first["best_val_loss"])
    params = json.loads((out / "params.json").read_text())
    assert params["model"]["window_samples"] == 4000 and params["model"]["n_mics"] == 8
    assert params["regions"]["n_regions"] == 8 and params["array"]["name"] == "uca8-r10"
    assert params["data"]["train_windows"] == 16 and params["data"]["val_windows"] == 8
    assert (out / "best.weights.h5").exists() and (out / "last.weights.h5").exists()
    assert train.main(["--data", str(tiny_dataset), "--out", str(out), "--epochs", "2", *TINY]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["epochs_done"] == 2
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    # the saved weights load into a fresh model of the stored shape
    from train_tf.model import ModelConfig, build_model

    model = build_model(ModelConfig.from_dict(params["model"]))
    model.load_weights(out / "best.weights.h5")
    y = np.asarray(model(np.zeros((1, 4000, 8), "float32")))
    assert y.shape == (1, 8, 3)
    # save -> load round-trips exactly: every variable and the outputs are bit-identical
    model.save_weights(tmp_path / "again.weights.h5")
    other = build_model(ModelConfig.from_dict(params["model"]))
    other.load_weights(tmp_path / "again.weights.h5")
    for a, b in zip(model.weights, other.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    x = np.random.default_rng(0).standard_normal((2, 4000, 8)).astype("float32")
    assert np.array_equal(np.asarray(model(x, training=False)), np.asarray(other(x, training=False)))


def test_mismatched_regions_or_missing_data_are_clear(tiny_dataset, tmp_path):
    with pytest.raises(SystemExit, match="meta.json not found"):
        train.main(["--data", str(tmp_path), "--out", str(tmp_path / "r"), *TINY])
