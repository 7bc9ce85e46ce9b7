"""The int8 conversion: a trained Keras model directory to a full-integer TFLite model and its sidecar
(``python -m convert`` is its command line; ``edge-msl calibrate`` calls :func:`convert` too). Needs
TensorFlow; it must not install what it writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.runtime import SIDECAR_FORMAT, SIDECAR_VERSIONS

SIDECAR_VERSION = SIDECAR_VERSIONS[-1]
"""The sidecar version written: the newest the device reads."""


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


def full_int8(model: Any, calib: np.ndarray) -> bytes:
    """A Keras model as a full-integer TFLite flatbuffer (int8 weights, activations, input and output;
    ``TFLITE_BUILTINS_INT8`` only), its activations calibrated on ``calib`` (one input per row)."""
    import tensorflow as tf

    def rep():
        for i in range(len(calib)):
            yield [calib[i:i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # Keras prints the exported signature on stdout; stdout is for the JSON summary only
    with contextlib.redirect_stdout(sys.stderr):
        return converter.convert()


def convert(model_dir: str | Path, calib: np.ndarray, out: str | Path,
            calib_source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the int8 model and its sidecar; returns the sidecar dict (``calib_source``: where the
    calibration windows came from, recorded in the sidecar)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    from train_tf.model_dir import default_weights, load_model

    model, params = load_model(model_dir, default_weights(model_dir))
    t0 = time.perf_counter()
    blob = full_int8(model, calib)
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
