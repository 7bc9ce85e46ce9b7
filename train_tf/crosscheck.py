"""Package a trained run for shipping and check it across Keras backends.

``export RUN OUT``: the run's best weights as a weights-only file (no optimizer state) plus its
parameters, and ``reference.npz``: fixed inputs and the outputs the exporting backend computed.
``check OUT``: rebuild the model under the current backend, load the weights and compare its
outputs with the reference (the test that weights trained with JAX load under TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from train_tf.model_dir import PARAMS, WEIGHTS, load_model

REFERENCE = "reference.npz"
REFERENCE_SEED = 1234


def reference_inputs(window: int, n_mics: int, n: int = 4, seed: int = REFERENCE_SEED) -> np.ndarray:
    """Deterministic network inputs: scaled noise with inter-channel delays (like a source)."""
    from edge_msl.features import normalize_window

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, window + 16)).astype(np.float32)
    chans = [x[:, 8 + (m % 5) - 2: 8 + (m % 5) - 2 + window] for m in range(n_mics)]
    audio = np.stack(chans, axis=-1) * 0.05 + rng.standard_normal((n, window, n_mics)).astype(np.float32) * 0.005
    return normalize_window(audio)


def _digest(x: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def reference(directory: str | Path, window: int, n_mics: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(inputs, outputs, backend) stored by ``export``; inputs are rebuilt and checked by hash."""
    with np.load(Path(directory) / REFERENCE) as z:
        y, seed, n, digest, backend = z["outputs"], int(z["seed"]), int(z["n"]), str(z["inputs_sha256"]), str(z["backend"])
    x = reference_inputs(window, n_mics, n, seed)
    if _digest(x) != digest:
        raise ValueError(f"reference inputs of {directory} do not rebuild identically (numpy changed its generator?)")
    return x, y, backend


def export(run: str | Path, out: str | Path, weights: str = "best.weights.h5", decode: dict | None = None) -> dict:
    """Write ``out``/{model.weights.h5, params.json, reference.npz} from a training run;
    ``decode`` (threshold, min_separation_deg, how they were chosen) is stored in params.json."""
    import keras

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, params = load_model(run, weights)
    model.save_weights(out / WEIGHTS)
    params = dict(params)
    params["exported_from"] = {"run": str(run), "weights": weights, "backend": keras.backend.backend()}
    if decode:
        params["decode"] = decode
        if "min_separation_deg" in decode:
            params["regions"] = {**params["regions"], "min_separation_deg": decode["min_separation_deg"]}
    (out / PARAMS).write_text(json.dumps(params, indent=2))
    for extra in ("log.csv",):
        if (Path(run) / extra).exists():
            shutil.copy(Path(run) / extra, out / extra)
    cfg = params["model"]
    x = reference_inputs(cfg["window_samples"], cfg["n_mics"])
    y = keras.ops.convert_to_numpy(model(x, training=False))
    # inputs are regenerated from their seed (kept small); their hash guards against drift
    np.savez(out / REFERENCE, outputs=y, seed=np.array(REFERENCE_SEED), n=np.array(len(x)),
             inputs_sha256=np.array(_digest(x)), backend=np.array(keras.backend.backend()))
    return {"out": str(out), "backend": keras.backend.backend(), "weights_bytes": (out / WEIGHTS).stat().st_size}


def check(directory: str | Path) -> float:
    """Max absolute difference between this backend's outputs and the stored reference."""
    import keras

    model, params = load_model(directory)
    x, y_ref, _ = reference(directory, params["model"]["window_samples"], params["model"]["n_mics"])
    y = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.max(np.abs(y - y_ref)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train_tf.crosscheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="weights-only export of a run with reference outputs")
    e.add_argument("run")
    e.add_argument("out")
    e.add_argument("--weights", default="best.weights.h5")
    e.add_argument("--threshold", type=float, default=None, help="activity threshold to record for decoding")
    e.add_argument("--min-separation-deg", type=float, default=None, help="duplicate suppression to record")
    e.add_argument("--chosen-on", default=None, help="how the decode settings were chosen (free text)")
    c = sub.add_parser("check", help="compare this backend's outputs with the stored reference")
    c.add_argument("dir")
    args = parser.parse_args(argv)
    if args.cmd == "export":
        decode = {k: v for k, v in (("threshold", args.threshold), ("min_separation_deg", args.min_separation_deg),
                                    ("chosen_on", args.chosen_on)) if v is not None}
        print(json.dumps(export(args.run, args.out, args.weights, decode or None)))
        return 0
    import keras

    diff = check(args.dir)
    print(json.dumps({"backend": keras.backend.backend(), "max_abs_diff": diff}))
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
