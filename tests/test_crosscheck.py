"""Export a run weights-only with reference outputs, and check them under the current backend
(including the shipped model, trained on the JAX backend, loading under TensorFlow)."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from train_tf import crosscheck, train

TINY = ["--block-filters", "8,8,16", "--first-filters", "8", "--dense-units", "16", "--batch-size", "8", "--quiet"]
SHIPPED = Path(__file__).parents[1] / "models" / "uca8-r10"


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert train.main(["--data", str(tiny_dataset), "--out", str(out), "--epochs", "1", *TINY]) == 0
    return out


def test_export_then_check_on_the_same_backend(run, tmp_path, capsys):
    import keras

    out = tmp_path / "export"
    capsys.readouterr()
    assert crosscheck.main(["export", str(run), str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == keras.backend.backend()
    for name in (crosscheck.WEIGHTS, crosscheck.PARAMS, crosscheck.REFERENCE, "log.csv"):
        assert (out / name).exists(), name
    # weights only: smaller than the run's checkpoint, which carries the optimizer's moments
    assert summary["weights_bytes"] < (run / "last.weights.h5").stat().st_size
    params = json.loads((out / crosscheck.PARAMS).read_text())
    assert params["exported_from"]["backend"] == keras.backend.backend()
    assert params["model"] == json.loads((run / "params.json").read_text())["model"]
    x, y, backend = crosscheck.reference(out, 4000, 8)
    assert x.shape == (4, 4000, 8) and y.shape == (4, 8, 3) and np.all(np.isfinite(y))
    assert backend == keras.backend.backend()
    assert crosscheck.check(out) < 1e-5
    assert crosscheck.main(["check", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == keras.backend.backend() and report["max_abs_diff"] < 1e-5


def test_check_fails_on_other_outputs(run, tmp_path, capsys):
    out = tmp_path / "export"
    crosscheck.export(run, out)
    ref = out / crosscheck.REFERENCE
    with np.load(ref) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["outputs"] = arrays["outputs"] + 0.01
    np.savez(ref, **arrays)
    assert crosscheck.check(out) == pytest.approx(0.01, rel=1e-3)
    assert crosscheck.main(["check", str(out)]) == 1
    assert json.loads(capsys.readouterr().out)["max_abs_diff"] > 1e-4


def test_reference_inputs_that_do_not_rebuild_are_refused(run, tmp_path):
    out = tmp_path / "export"
    crosscheck.export(run, out)
    ref = out / crosscheck.REFERENCE
    with np.load(ref) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["inputs_sha256"] = np.array("0" * 64)
    np.savez(ref, **arrays)
    with pytest.raises(ValueError, match="do not rebuild identically"):
        crosscheck.check(out)


def test_export_records_the_decode_settings(run, tmp_path, capsys):
    out = tmp_path / "export"
    assert crosscheck.main(["export", str(run), str(out), "--threshold", "0.4", "--min-separation-deg", "15",
                            "--chosen-on", "validation F1"]) == 0
    params = json.loads((out / crosscheck.PARAMS).read_text())
    assert params["decode"] == {"threshold": 0.4, "min_separation_deg": 15.0, "chosen_on": "validation F1"}
    assert params["regions"]["min_separation_deg"] == 15.0
    assert json.loads((run / "params.json").read_text())["regions"]["min_separation_deg"] == 10.0


def test_reference_inputs_are_deterministic_and_normalized():
    a = crosscheck.reference_inputs(4000, 8)
    assert np.array_equal(a, crosscheck.reference_inputs(4000, 8))
    assert a.shape == (4, 4000, 8) and a.dtype == np.float32
    np.testing.assert_allclose(a.std(axis=(1, 2)), 1.0, rtol=1e-3)


@pytest.mark.skipif(not (SHIPPED / crosscheck.REFERENCE).exists(), reason="no shipped model in models/uca8-r10")
def test_shipped_model_loads_under_this_backend():
    """The shipped model was trained and exported on the JAX backend; its outputs must come out
    the same here."""
    params = json.loads((SHIPPED / crosscheck.PARAMS).read_text())
    assert params["array"]["name"] == "uca8-r10"
    assert crosscheck.check(SHIPPED) < 1e-4


def test_average_of_two_runs_is_the_mean_of_every_variable(run, tmp_path, capsys):
    from train_tf import average

    # a second run of the same shape from the run's last weights: its variables differ
    other = tmp_path / "other"
    params = json.loads((run / "params.json").read_text())
    a, _ = crosscheck.load_model(run, "best.weights.h5")
    b, _ = crosscheck.load_model(run, "best.weights.h5")
    b.set_weights([w + 0.5 for w in b.get_weights()])
    other.mkdir()
    b.save_weights(other / "best.weights.h5")
    (other / "params.json").write_text(json.dumps(params))
    out = tmp_path / "soup"
    capsys.readouterr()
    assert average.main([str(out), str(run), str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["averaged_from"] == [str(run), str(other)]
    c, p = crosscheck.load_model(out, "best.weights.h5")
    assert p["averaged_from"] == [str(run), str(other)]
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        np.testing.assert_allclose(wc, wa + 0.25, rtol=1e-6, atol=1e-6)
    # models of another shape are refused with the reason
    bigger = tmp_path / "bigger"
    bigger.mkdir()
    (bigger / "params.json").write_text(json.dumps({**params, "model": {**params["model"], "dense_units": 32}}))
    with pytest.raises(SystemExit, match="differ in shape"):
        average.main([str(tmp_path / "x"), str(run), str(bigger)])
