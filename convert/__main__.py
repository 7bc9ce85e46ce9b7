"""Convert a trained Keras model directory into a full-integer int8 TFLite model plus its parameters.

    python -m convert --model models/uca8-r10 --calib-data data/val-speech --out build/uca8-r10.tflite

Writes ``OUT`` (.tflite, int8 weights and activations, ``TFLITE_BUILTINS_INT8`` only, int8 input
and output) and ``OUT`` with the suffix ``.json`` next to it: everything the device needs to run
the model (sample rate, window, array geometry and channel order, region layout, decode
settings, input/output quantization, output tensor by signature name) and the sha256 of the
.tflite it belongs to. Needs TensorFlow; models trained on the JAX backend load here unchanged.
The same input gives the same bytes (.tflite and .json).

    python -m convert parity --model-dir DIR --tflite OUT --data DIR [--n N] [--out DIR]

compares the int8 model with the float one on a held-out set (see ``convert/parity.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SIDECAR_FORMAT = "edge-msl-tflite-params"
SIDECAR_VERSION = 1


def representative_windows(data_dir: str | Path, n: int, seed: int = 0,
                           scaling: dict | None = None) -> np.ndarray:
    """``n`` network inputs drawn from a simulated window set (realistic levels, 1-4 sources),
    scaled as the model's ``input_scaling`` says (``scaling``: :func:`edge_msl.features.model_scaling`)."""
    from edge_msl.features import normalize_window
    from train_tf.simulate import load_windows

    data = load_windows(data_dir)
    idx = np.random.default_rng(seed).permutation(len(data["audio"]))[:n]
    return normalize_window(data["audio"][np.sort(idx)], **(scaling or {}))


DEFAULT_HOP_S = 0.1
"""Hop recorded in the sidecar: how often the device is meant to analyse a window (overridable)."""


def convert(model_dir: str | Path, calib: np.ndarray, out: str | Path,
            calib_source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the int8 model and its sidecar; returns the sidecar dict (``calib_source``: where the
    calibration windows came from, recorded in the sidecar)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    from train_tf.crosscheck import default_weights, load_model

    model, params = load_model(model_dir, default_weights(model_dir))

    def rep():
        for i in range(len(calib)):
            yield [calib[i:i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    t0 = time.perf_counter()
    # Keras prints the exported signature on stdout; stdout is for the JSON summary only
    with contextlib.redirect_stdout(sys.stderr):
        blob = converter.convert()
    seconds = time.perf_counter() - t0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    from edge_msl.runtime import pick_runtime

    interp = pick_runtime().interpreter(model_path=str(out), num_threads=1)
    runner = interp.get_signature_runner()
    sig = interp.get_signature_list()
    name = next(iter(sig))
    inp = runner.get_input_details()
    outp = runner.get_output_details()
    (in_name, in_det), = inp.items()
    (out_name, out_det), = outp.items()
    sidecar = {
        "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION,
        "tflite_sha256": hashlib.sha256(blob).hexdigest(), "tflite_bytes": len(blob),
        "sample_rate_hz": params["sample_rate_hz"], "window_samples": params["model"]["window_samples"],
        "hop_s": DEFAULT_HOP_S,
        "array": params["array"], "regions": params["regions"],
        "decode": params.get("decode", {"threshold": 0.5}),
        "input_scaling": params["input_scaling"],
        "signature": name,
        "input": {"name": in_name, "shape": [int(v) for v in in_det["shape"]], "dtype": "int8",
                  "scale": float(in_det["quantization"][0]), "zero_point": int(in_det["quantization"][1])},
        "output": {"name": out_name, "shape": [int(v) for v in out_det["shape"]], "dtype": "int8",
                   "scale": float(out_det["quantization"][0]), "zero_point": int(out_det["quantization"][1]),
                   "columns": ["active", "distance", "azimuth"]},
        "macs_per_window": params["macs_per_window"], "training": {"data": params.get("data"),
                                                                    "train": params.get("train")},
        "calibration": {"windows": int(len(calib)), **(calib_source or {})},
        "converter": f"tensorflow {tf.__version__}",
    }
    # no timestamps or timings in the sidecar, so the same input gives the same bytes
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return {**sidecar, "convert_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["parity"]:
        from convert.parity import main as parity_main

        return parity_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Keras model directory (params.json + weights)")
    parser.add_argument("--calib-data", required=True, help="window set from train_tf.simulate windows")
    parser.add_argument("--calib-windows", type=int, default=300,
                        help="windows drawn (fixed seed) from --calib-data for int8 calibration (default 300)")
    parser.add_argument("--calib-seed", type=int, default=0, help="seed of that draw (default 0)")
    parser.add_argument("--out", required=True, help="output .tflite (a .json sidecar is written next to it)")
    args = parser.parse_args(argv)
    for path, what in ((Path(args.model) / "params.json", "--model"), (Path(args.calib_data) / "meta.json",
                                                                     "--calib-data")):
        if not path.exists():
            raise SystemExit(f"{path} not found: {what} must point at a directory holding it")
    if args.calib_windows < 1:
        raise SystemExit(f"--calib-windows must be at least 1, got {args.calib_windows}")
    from edge_msl.features import model_scaling

    try:
        scaling = model_scaling(json.loads((Path(args.model) / "params.json").read_text()))
    except ValueError as exc:
        raise SystemExit(f"{args.model}/params.json: {exc}; retrain or fix input_scaling") from None
    calib = representative_windows(args.calib_data, args.calib_windows, args.calib_seed, scaling)
    source = {"data": str(args.calib_data), "seed": args.calib_seed}
    sidecar = convert(args.model, calib, args.out, source)
    print(json.dumps({"out": args.out, "bytes": sidecar["tflite_bytes"], "sha256": sidecar["tflite_sha256"],
                      "seconds": sidecar["convert_seconds"], "input": sidecar["input"], "output": sidecar["output"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
