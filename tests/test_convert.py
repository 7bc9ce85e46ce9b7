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
    from train_tf.crosscheck import load_model
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
