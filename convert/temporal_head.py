"""Give a converted model its learned temporal head (``train_tf.temporal_head``).

    python -m convert.temporal_head --tflite edge_msl/models/uca8-r10.tflite \\
        --head models/uca8-r10/temporal_head --calib data/scenes-train/walk data/scenes-train/turns

- The network's *embedding* (the tensor its heads read, int8) becomes a second output of its TFLite model, named
  ``embedding``. Nothing else in the graph changes, so the region outputs stay the same to the bit.
- The head becomes its own full-int8 TFLite model next to it (``<name>.head.tflite``): the embeddings of the last
  ``k`` windows (1, k, dim) in, region outputs (1, n_regions, 3) out; the device finds it by that name. It is calibrated on ``--calib-windows``
  histories from the scenes given (their features cached by ``train_tf.temporal_head features``).
- The sidecar gains ``embedding`` and ``temporal_head`` (file, sha256, k, tensors and quantization) and the backbone's
  new sha256. A device without this code ignores them and runs the network alone.

Needs TensorFlow. The same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.model_store import head_file
from edge_msl.runtime import EMBEDDING


def _quant(name: str, det: dict) -> dict[str, Any]:
    """A tensor as the sidecar describes it: its signature name, shape and int8 quantization."""
    return {"name": name, "shape": [int(v) for v in det["shape"]], "dtype": "int8",
            "scale": float(det["quantization"][0]), "zero_point": int(det["quantization"][1])}


def add_embedding_output(path: str | Path, n_outputs: int) -> None:
    """Expose the input of the network's last fully connected layer (the one with ``n_outputs`` rows: its heads) as
    the signature output ``embedding``; a model that has it already is left as it is."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    sig = model.signatureDefs[0]
    if any(t.name.decode() == EMBEDDING for t in sig.outputs):
        return
    fc = schema.BuiltinOperator.FULLY_CONNECTED
    found = [op.inputs[0] for op in graph.operators
             if model.operatorCodes[op.opcodeIndex].builtinCode == fc
             and int(graph.tensors[op.inputs[1]].shape[0]) == n_outputs]
    if len(found) != 1:
        raise SystemExit(f"{path}: {len(found)} fully connected layers with {n_outputs} outputs, expected the heads "
                         f"alone; is it a model of train_tf.model?")
    graph.outputs = np.append(graph.outputs, found[0]).astype(np.int32)
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = EMBEDDING.encode(), int(found[0])
    sig.outputs.append(entry)
    flatbuffer_utils.write_model(model, str(path))


def calibration_histories(dirs: list[str], k: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` histories (k, dim) drawn from the cached embeddings of the scenes (``train_tf.temporal_head``)."""
    from train_tf.temporal_head import histories, stems_of

    xs = []
    for stem in stems_of(dirs):
        cache = stem.parent / f".seqfeat-{stem.name}.npz"
        if not cache.exists():
            raise SystemExit(f"{cache} not found: run python -m train_tf.temporal_head features {stem.parent}")
        with np.load(cache) as z:
            xs.append(histories(z["emb"], k))
    x = np.concatenate(xs)
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[np.sort(idx)].astype(np.float32)


def convert_head(head_dir: str | Path, calib: np.ndarray, out: str | Path) -> dict[str, Any]:
    """Write the head's int8 TFLite model; returns its tensors (``input``, ``output``)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from convert.tflite import full_int8
    from train_tf.temporal_head import HEAD_WEIGHTS, load_head

    Path(out).write_bytes(full_int8(load_head(str(head_dir), HEAD_WEIGHTS)[0], calib))
    from edge_msl.runtime import pick_runtime

    runner = pick_runtime().interpreter(model_path=str(out), num_threads=1).get_signature_runner()
    (in_name, in_det), = runner.get_input_details().items()
    (out_name, out_det), = runner.get_output_details().items()
    return {"input": _quant(in_name, in_det),
            "output": {**_quant(out_name, out_det), "columns": ["active", "distance", "azimuth"]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.temporal_head", description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", required=True, help="the converted network (its .json sidecar next to it)")
    parser.add_argument("--head", required=True, help="the head's directory (head.json + head.weights.h5)")
    parser.add_argument("--calib", nargs="+", required=True, help="scene directories whose cached features "
                        "calibrate the head's int8 tensors")
    parser.add_argument("--calib-windows", type=int, default=1000)
    args = parser.parse_args(argv)
    tflite, head = Path(args.tflite), Path(args.head)
    sidecar_path = tflite.with_suffix(".json")
    for p in (tflite, sidecar_path, head / "head.json", head / "head.weights.h5"):
        if not p.exists():
            raise SystemExit(f"{p} not found")
    sidecar = json.loads(sidecar_path.read_text())
    cfg = json.loads((head / "head.json").read_text())
    n_regions = int(sidecar["regions"]["n_regions"])
    add_embedding_output(tflite, 3 * n_regions)
    from edge_msl.runtime import pick_runtime

    runner = pick_runtime().interpreter(model_path=str(tflite), num_threads=1).get_signature_runner()
    emb = _quant(EMBEDDING, runner.get_output_details()[EMBEDDING])
    out = head_file(tflite)
    calib = calibration_histories(args.calib, int(cfg["k"]), args.calib_windows)
    tensors = convert_head(head, calib, out)
    blob, head_blob = tflite.read_bytes(), out.read_bytes()
    sidecar.update({
        "tflite_sha256": hashlib.sha256(blob).hexdigest(), "tflite_bytes": len(blob), EMBEDDING: emb,
        "temporal_head": {"sha256": hashlib.sha256(head_blob).hexdigest(), "bytes": len(head_blob),
                          "k": int(cfg["k"]), **tensors,
                          "trained": {key: cfg.get(key) for key in ("train", "static", "images", "epochs", "hidden",
                                                                    "proj", "instant")},
                          "calibration": {"scenes": list(args.calib), "histories": int(len(calib))}},
    })
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    print(json.dumps({"tflite": str(tflite), "head": str(out), "head_bytes": len(head_blob), "embedding": emb,
                      **tensors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
