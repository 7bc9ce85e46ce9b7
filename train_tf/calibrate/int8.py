"""convert: the fine-tuned Keras model to int8 TFLite (convert's own converter), calibrated on windows of the
fine-tuning set.

It must not install what it writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .session import CalibrationError, Session


def convert_model(session: Session, model_dir: str | Path | None = None, out: str | Path | None = None) -> Path:
    """``build/<array>.tflite`` (+ .json) from ``model/`` (or ``model_dir`` to ``out``), calibrated on windows
    of the fine-tuning set."""
    from convert.tflite import convert
    from edge_msl.features import model_scaling, normalize_window

    model_dir = Path(model_dir or session.dir / "model")
    if not (model_dir / "params.json").exists():
        raise CalibrationError(f"{model_dir} not found; run 'edge-msl calibrate finetune' first")
    with np.load(session.dir / "set.npz") as z:
        x = np.concatenate([z["train_audio"], z["sim_audio"]])
    rng = np.random.default_rng(session.settings.seed)
    idx = np.sort(rng.permutation(len(x))[:session.settings.calib_windows])
    out = Path(out or session.dir / "build" / f"{session.array.name}.tflite")
    scaling = model_scaling(json.loads((model_dir / "params.json").read_text()))
    convert(model_dir, normalize_window(x[idx].astype(np.float32), **scaling), out,
            {"data": f"calibration session {session.dir}", "seed": session.settings.seed})
    return out
