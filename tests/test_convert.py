"""convert: a tiny trained model to full-int8 TFLite, run by ai-edge-litert, close to the float model."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

TINY = ["--block-filters", "8,8,16", "--first-filters", "8", "--dense-units", "16", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def converted(tiny_dataset, tmp_path_factory):
    from convert.__main__ import main as convert_main
    from train_tf import train

    root = tmp_path_factory.mktemp("convert")
    run = root / "run"
    assert train.main(["--data", str(tiny_dataset), "--out", str(run), "--epochs", "2", *TINY]) == 0
    out = root / "tiny.tflite"
    assert convert_main(["--model", str(run), "--calib-data", str(tiny_dataset), "--calib-windows", "24",
                         "--out", str(out)]) == 0
    return run, out


def test_int8_model_is_full_integer_and_close_to_float(converted, tiny_dataset):
    from ai_edge_litert.interpreter import Interpreter

    from edge_msl.features import normalize_window
    from train_tf.model_dir import load_model
    from train_tf.simulate import load_windows

    run, out = converted
    side = json.loads(out.with_suffix(".json").read_text())
    import hashlib

    assert side["tflite_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert side["input"]["dtype"] == "int8" and side["output"]["shape"] == [1, 8, 3]
    assert side["array"]["name"] == "uca8-r10" and side["window_samples"] == 4000
    interp = Interpreter(model_path=str(out), num_threads=1)
    interp.allocate_tensors()
    # every tensor that carries activations or weights is integer (full-int8 model)
    kinds = {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    assert kinds <= {"int8", "int32"}, kinds
    runner = interp.get_signature_runner()
    x = normalize_window(load_windows(tiny_dataset)["audio"])
    qi, qo = side["input"], side["output"]
    y8 = []
    for w in x:
        q = np.clip(np.round(w[None] / qi["scale"] + qi["zero_point"]), -128, 127).astype(np.int8)
        y = runner(**{qi["name"]: q})[qo["name"]]
        y8.append((y.astype(np.float32) - qo["zero_point"]) * qo["scale"])
    y8 = np.concatenate(y8)
    model, _ = load_model(run, "best.weights.h5")
    yf = np.asarray(model(x, training=False))
    # sigmoid outputs in [0, 1]; the int8 output step is 1/256
    assert np.mean(np.abs(y8 - yf)) < 0.02
    assert np.max(np.abs(y8 - yf)) < 0.15


def test_missing_inputs_are_one_line_errors(tmp_path):
    from convert.__main__ import main as convert_main

    with pytest.raises(SystemExit, match="params.json not found"):
        convert_main(["--model", str(tmp_path), "--calib-data", str(tmp_path), "--out", str(tmp_path / "m.tflite")])


def test_runtime_runs_the_tiny_model_like_the_signature_runner_and_close_to_float(converted, tiny_dataset):
    """edge_msl.runtime (tensors by signature name, pre-allocated input) = the plain signature runner,
    and within the stated tolerance of the float Keras model."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_msl.arrays import get_array
    from edge_msl.features import normalize_window
    from edge_msl.runtime import load_model
    from train_tf.model_dir import load_model as load_keras
    from train_tf.simulate import load_windows

    run, out = converted
    audio = load_windows(tiny_dataset)["audio"]
    model = load_model(out, array=get_array("uca8-r10"))
    assert model.runtime == "ai_edge_litert" and model.info.window_samples == audio.shape[1]
    y8 = np.stack([model.outputs(w) for w in audio])
    side = model.info.raw
    runner = Interpreter(model_path=str(out), num_threads=1).get_signature_runner(side["signature"])
    qi, qo = side["input"], side["output"]
    ref = []
    for w in normalize_window(audio):
        q = np.clip(np.round(w[None] / qi["scale"] + qi["zero_point"]), -128, 127).astype(np.int8)
        ref.append((runner(**{qi["name"]: q})[qo["name"]][0].astype(np.float32) - qo["zero_point"]) * qo["scale"])
    np.testing.assert_array_equal(y8, np.stack(ref))
    keras_model, _ = load_keras(run, "best.weights.h5")
    yf = np.asarray(keras_model(normalize_window(audio), training=False))
    # stated tolerance (sigmoid outputs in [0, 1], int8 output step 1/256): mean < 0.02, max < 0.15
    assert np.mean(np.abs(y8 - yf)) < 0.02
    assert np.max(np.abs(y8 - yf)) < 0.15


def test_conversion_is_deterministic(converted, tiny_dataset, tmp_path):
    from convert.__main__ import main as convert_main

    run, out = converted
    again = tmp_path / "again.tflite"
    assert convert_main(["--model", str(run), "--calib-data", str(tiny_dataset), "--calib-windows", "24",
                         "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert again.with_suffix(".json").read_bytes() == out.with_suffix(".json").read_bytes()


def test_float_tflite_model_is_refused_by_the_runtime(converted, tmp_path):
    import hashlib

    import tensorflow as tf

    from edge_msl.runtime import ModelError, load_model
    from train_tf.model_dir import load_model as load_keras

    run, out = converted
    keras_model, _ = load_keras(run, "best.weights.h5")
    blob = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()  # float32, not quantized
    path = tmp_path / "float.tflite"
    path.write_bytes(blob)
    side = json.loads(out.with_suffix(".json").read_text())
    side.update(tflite_sha256=hashlib.sha256(blob).hexdigest(), tflite_bytes=len(blob))
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match=r"float\.tflite: input tensor 'serving_default_audio:0' is float32, not int8; "
                                         r"convert with python -m convert"):
        load_model(path)


def test_parity_report_and_its_gate(converted, tiny_dataset, tmp_path, capsys):
    from convert.__main__ import main as convert_main

    run, out = converted
    common = ["parity", "--model-dir", str(run), "--tflite", str(out), "--data", str(tiny_dataset)]
    assert convert_main([*common, "--out", str(tmp_path), "--max-doa-loss-deg", "180", "--max-f1-loss", "1"]) == 0
    r = json.loads((tmp_path / "parity.json").read_text())
    assert r["n_windows"] == 24 and r["passed"] and r["latency_ms"]["windows"] == 24
    assert r["latency_ms"]["runtime"].startswith("ai_edge_litert") and r["latency_ms"]["num_threads"] == 1
    assert 0 < r["latency_ms"]["median"] <= r["latency_ms"]["p95"]
    assert r["size_bytes"]["tflite"] == out.stat().st_size
    assert set(r["output_abs_diff"]) == {"activity", "distance", "azimuth"}
    assert all(0 <= d["mean"] <= d["max"] <= 1 for d in r["output_abs_diff"].values())
    for name in ("float", "int8"):
        assert r[name]["windows"] == 24 and r[name]["sources"] > 0
    printed = capsys.readouterr().out
    assert "| F1@20° |" in printed and printed == (tmp_path / "parity.md").read_text() + "\n"
    # a gate that no model can pass (int8 would have to gain 1 in F1) fails loudly
    assert convert_main([*common, "--n", "8", "--max-doa-loss-deg", "180", "--max-f1-loss", "-1"]) == 1
    err = capsys.readouterr().err
    assert "parity FAILED: int8 loses" in err and "of F1 against float (allowed -1)" in err and "DOA" not in err


def test_parity_refuses_missing_inputs(tmp_path):
    from convert.__main__ import main as convert_main

    with pytest.raises(SystemExit, match="params.json not found: check --model-dir"):
        convert_main(["parity", "--model-dir", str(tmp_path), "--tflite", "x", "--data", str(tmp_path)])
