"""Average the weights of models of one shape (a "model soup"), e.g. fine-tunings of one model.

    python -m train_tf.average OUT MODEL_DIR MODEL_DIR [...]

Every variable is averaged, batch-norm statistics included. The models must share their shape
and should share an ancestor (fine-tuned from the same weights): averaging unrelated networks
gives a useless one. ``OUT`` gets ``best.weights.h5`` and the first model's ``params.json`` with
``averaged_from``, i.e. a run directory that ``train_tf.crosscheck export`` packages for shipping
and that ``train_tf.evaluate`` scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def average(out: str | Path, models: list[str | Path]) -> dict:
    """Write the averaged run to ``out``; returns a summary."""
    from train_tf.model_dir import PARAMS, default_weights, load_model
    from train_tf.model import ModelConfig

    if len(models) < 2:
        raise SystemExit("give at least two model directories to average")
    shapes = [ModelConfig.from_dict(json.loads((Path(m) / PARAMS).read_text())["model"]) for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise SystemExit("the models differ in shape (params.json 'model'); only models of one shape can be averaged")
    model, params = load_model(models[0], default_weights(models[0]))
    weights = [model.get_weights()] + [load_model(m, default_weights(m))[0].get_weights() for m in models[1:]]
    mean = [np.mean(parts, axis=0).astype(parts[0].dtype) for parts in zip(*weights)]
    model.set_weights(mean)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(out / "best.weights.h5")
    params = dict(params)
    params["averaged_from"] = [str(m) for m in models]
    (out / PARAMS).write_text(json.dumps(params, indent=2))
    return {"out": str(out), "averaged_from": params["averaged_from"], "variables": len(mean)}


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m train_tf.average", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory for the averaged run")
    parser.add_argument("models", nargs="+", help="run or export directories (params.json + weights)")
    args = parser.parse_args(argv)
    print(json.dumps(average(args.out, args.models)))
    return 0


if __name__ == "__main__":
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main())
