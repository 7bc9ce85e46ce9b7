"""The model's outputs on window sets: a trained Keras model run on every window, or on the
sub-windows of longer ones, with the array's symmetries as the daemon uses them. It must not decode
or score; that is device_decode and scoring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.features import model_scaling, normalize_window
from train_tf.model_dir import load_model

POOL_HOP_S = 0.1
"""Hop between the model windows pooled over a longer analysis window (the daemon's default hop)."""


def pool_offsets(n_samples: int, window: int, hop: int) -> list[int]:
    """Starts of the model windows, ``hop`` apart, ending exactly at the end of ``n_samples``."""
    if n_samples < window:
        raise ValueError(f"windows of {n_samples} samples are shorter than the model's {window}")
    return list(range((n_samples - window) % hop, n_samples - window + 1, hop))


def analysis(n_samples: int, params: dict, hop_s: float = POOL_HOP_S) -> dict[str, Any]:
    """How windows of ``n_samples`` are analysed by :func:`model_outputs`."""
    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    hop = max(1, int(round(hop_s * fs)))
    n = 1 if n_samples == window else len(pool_offsets(n_samples, window, hop))
    return {"window_s": n_samples / fs, "model_window_s": window / fs, "hop_s": hop / fs, "pooled_windows": n}


def symmetry_used(n_samples: int, params: dict, symmetry: str | None = None) -> str:
    """How :func:`window_outputs` uses the array's symmetries on windows of ``n_samples``: the
    given mode, else the model's ``decode.symmetry``; "cycle" on windows of the model's length
    (nothing pooled, as in the daemon) is "none"."""
    from edge_msl.symmetry import symmetry_mode

    mode = symmetry or symmetry_mode(params.get("decode", {}))
    return "none" if mode == "cycle" and n_samples == int(params["model"]["window_samples"]) else mode


def window_outputs(run_dir: str | Path, audio: np.ndarray, weights: str, batch: int = 64,
                   hop_s: float = POOL_HOP_S, symmetry: str | None = None) -> tuple[np.ndarray, dict]:
    """Network outputs (N, k, n_regions, 3) of a trained Keras model on the k sub-windows, ``hop_s``
    apart and ending at the end, of each of the N windows (k = 1 for windows of the model's
    length), and its parameters.

    ``symmetry`` (default: the model's ``decode.symmetry``): "cycle" runs sub-window j of window i
    on its image under the ((i + j) mod n)-th of the array's n symmetries
    (:func:`edge_msl.symmetry.model_cycle`), as the daemon's running count does (windows of the
    model's length are not pooled, and run as they are, as in the daemon); "none" runs the windows
    as they are. A model directory with a temporal head (``temporal_head/``, :mod:`train_tf.temporal_head`)
    gives each sub-window's outputs through it, as the daemon does, unless ``symmetry`` is given."""
    from edge_msl.symmetry import model_cycle
    from train_tf.temporal_head import has_head, head_window_outputs

    if symmetry is None and has_head(run_dir):  # the model's temporal head, on windows as they are
        per = head_window_outputs(run_dir, audio, weights, hop_s, batch)
        return per, params_of(run_dir)
    model, params = load_model(run_dir, weights)
    window = int(params["model"]["window_samples"])
    scaling = model_scaling(params)
    mode = symmetry_used(audio.shape[1], params, symmetry)
    cycle = model_cycle(params["array"]["positions_m"], params["regions"]) if mode != "none" else []

    def net(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(model(normalize_window(x[i:i + batch], **scaling), training=False))
                               for i in range(0, len(x), batch)])

    def run(x: np.ndarray, j: int) -> np.ndarray:
        if mode == "none":
            return net(x)
        which = (np.arange(len(x)) + j) % len(cycle)
        out = np.zeros((len(x), params["regions"]["n_regions"], 3), dtype=np.float32)
        for k in np.unique(which):
            rows = np.flatnonzero(which == k)
            out[rows] = cycle[k].restore(net(cycle[k].permute(x[rows])))
        return out

    if audio.shape[1] == window:
        return run(audio, 0)[:, None], params
    offsets = pool_offsets(audio.shape[1], window, max(1, int(round(hop_s * params["sample_rate_hz"]))))
    return np.stack([run(np.ascontiguousarray(audio[:, o:o + window]), j) for j, o in enumerate(offsets)],
                    axis=1), params


def model_outputs(run_dir: str | Path, audio: np.ndarray, weights: str, batch: int = 64,
                  symmetry: str | None = None) -> tuple[np.ndarray, dict]:
    """Network outputs (N, n_regions, 3) of a trained Keras model on windows of its own length, and its
    parameters (longer windows go through :func:`window_outputs` and :func:`temporal_decode_all`);
    ``symmetry`` as in :func:`window_outputs`."""
    per, params = window_outputs(run_dir, audio, weights, batch, POOL_HOP_S, symmetry)
    if per.shape[1] != 1:
        raise ValueError(f"windows of {audio.shape[1]} samples, the model takes {params['model']['window_samples']}: "
                         "run longer ones through window_outputs and temporal_decode_all")
    return per[:, 0], params


def params_of(run_dir: str | Path) -> dict:
    """The model's params.json."""
    return json.loads((Path(run_dir) / "params.json").read_text())
