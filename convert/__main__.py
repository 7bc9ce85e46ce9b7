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
import json
import sys
from pathlib import Path

from convert.tflite import convert, representative_windows


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
