"""A trained model's directory on disk: its ``params.json`` and weights, and the Keras model they make.

A training run writes ``best.weights.h5``; ``python -m train_tf.crosscheck export`` (the shipped models/<array>/)
writes ``model.weights.h5``. Reads only: it must not write a model directory, and imports Keras only to load one.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = "model.weights.h5"
"""The weights of an exported (shipped) model directory."""
PARAMS = "params.json"
"""The parameters of a model directory: network shape, regions, training data and settings, decode."""


def default_weights(directory: str | Path) -> str:
    """The weights file to use in a model directory: an export's ``model.weights.h5``, else a
    training run's ``best.weights.h5``."""
    return WEIGHTS if (Path(directory) / WEIGHTS).exists() else "best.weights.h5"


def load_model(directory: str | Path, weights: str = WEIGHTS):
    """The Keras model of a run or export directory (its params.json + weights) and its params."""
    from train_tf.model import ModelConfig, build_model

    directory = Path(directory)
    params = json.loads((directory / PARAMS).read_text())
    model = build_model(ModelConfig.from_dict(params["model"]))
    model.load_weights(directory / weights)
    return model, params
