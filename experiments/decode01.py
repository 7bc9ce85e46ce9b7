"""The decode of edge-msl 0.1 (1 s pooling of region outputs, an onset and a pool threshold, a gate),
copied here from ``edge_msl.regions`` and ``train_tf.evaluate`` as they were at commit 8be0582, for the
experiments that measured it; edge-msl itself runs the temporal decode (``edge_msl.temporal``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_msl.regions import ACTIVE, AZIMUTH, DISTANCE
from train_tf.evaluate import POOL_HOP_S, window_outputs


def pool_outputs(outputs: np.ndarray, gain: float = 1.0, gate: int = 0, gate_threshold: float = 0.0) -> np.ndarray:
    """Network outputs of k consecutive windows (k, n_regions, 3), oldest first -> one
    (n_regions, 3) to decode.

    A region's activity is the larger of its activity in the latest window and ``gain`` times
    its mean over the windows; decoded at a threshold T, a region is reported when its latest
    window reaches T or its mean reaches T / gain (the lower pool threshold): a talker quiet in
    some windows is found from the evidence of all of them, while a talker who clearly starts
    is reported at once with its own window's confidence. Each region's fine outputs are
    the activity-weighted mean, so windows where it is silent barely move its direction and
    distance.

    ``gate`` > 0 (a number of windows): a region none of whose latest ``gate`` windows reaches
    ``gate_threshold`` keeps at most the largest of their activities, so a long pool still lets a
    talker go soon after they stop (with ``gate_threshold`` at most T, such a region is not
    reported).
    """
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim != 3 or out.shape[-1] != 3 or len(out) == 0:
        raise ValueError(f"outputs must have shape (k>=1, n_regions, 3), got {out.shape}")
    pooled = out.mean(axis=0)
    pooled[:, ACTIVE] = np.minimum(1.0, np.maximum(out[-1, :, ACTIVE], gain * pooled[:, ACTIVE]))
    if gate > 0:
        recent = out[-gate:, :, ACTIVE].max(axis=0)
        pooled[:, ACTIVE] = np.where(recent >= gate_threshold, pooled[:, ACTIVE],
                                     np.minimum(pooled[:, ACTIVE], recent))
    w = out[:, :, ACTIVE] + 1e-6
    for k in (DISTANCE, AZIMUTH):
        pooled[:, k] = (out[:, :, k] * w).sum(axis=0) / w.sum(axis=0)
    return pooled


def pooled_thresholds(decode_settings: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(onset_threshold, pool_threshold)`` of a model's ``decode`` settings as given (unchecked):
    the onset defaults to ``threshold`` (0.5 if none), the pool threshold to the onset."""
    onset = decode_settings.get("onset_threshold", decode_settings.get("threshold", 0.5))
    return onset, decode_settings.get("pool_threshold", onset)


def gate_settings(decode_settings: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(gate_s, gate_threshold)`` of a model's ``decode`` settings as given (unchecked); gate_s 0
    (the default) means no gate."""
    return decode_settings.get("gate_s", 0.0), decode_settings.get("gate_threshold", 0.0)


def pool_count(pool_s: float, window_s: float, hop_s: float) -> int:
    """How many windows, ``hop_s`` apart, fit in ``pool_s`` seconds of audio (at least 1)."""
    if pool_s <= window_s:
        return 1
    return 1 + int(math.floor((pool_s - window_s) / hop_s + 1e-9))


def gate_count(gate_s: float, window_s: float, hop_s: float) -> int:
    """How many of the latest windows ``decode.gate_s`` spans (:func:`pool_count`), 0 for no gate
    (``gate_s`` 0): the ``gate`` of :func:`pool_outputs`."""
    return pool_count(gate_s, window_s, hop_s) if gate_s > 0 else 0


def pool_gain(params: dict, onset_threshold: float | None = None, pool_threshold: float | None = None) -> float:
    """``onset_threshold / pool_threshold``, each from the arguments or else the model's decode
    (an onset given alone: the mean is held to it)."""
    model_onset, model_pool = pooled_thresholds(params.get("decode", {}))
    onset = float(onset_threshold or model_onset)
    return onset / float(pool_threshold or (model_pool if onset_threshold is None else onset))


def pool_gate(params: dict, hop_s: float = POOL_HOP_S) -> tuple[int, float]:
    """``(windows, threshold)`` of the model's ``decode.gate_s`` / ``gate_threshold`` as
    :func:`pool_outputs` takes them: (0, 0.0) without a gate."""
    gate_s, gate_threshold = gate_settings(params.get("decode", {}))
    n = gate_count(float(gate_s), params["model"]["window_samples"] / params["sample_rate_hz"], hop_s)
    return (n, float(gate_threshold)) if n else (0, 0.0)


def pooled(per: np.ndarray, gain: float, gate: tuple[int, float] = (0, 0.0)) -> np.ndarray:
    """(N, k, n_regions, 3) -> (N, n_regions, 3) with :func:`pool_outputs`
    (``gate``: its gate windows and threshold, :func:`pool_gate`)."""
    return per[:, 0] if per.shape[1] == 1 else np.stack([pool_outputs(p, gain, *gate) for p in per])


def model_outputs(run_dir: str | Path, audio: np.ndarray, weights: str, batch: int = 64,
                  hop_s: float = POOL_HOP_S, symmetry: str | None = None) -> tuple[np.ndarray, dict]:
    """Network outputs (N, n_regions, 3) of a trained Keras model, and its parameters.

    Windows longer than the model's are analysed as the daemon does with ``pool_s`` = their
    length: the model runs on sub-windows ``hop_s`` apart and their outputs are pooled
    (:func:`pool_outputs`, with the model's onset and pool thresholds and gate);
    ``symmetry`` as in :func:`window_outputs`."""
    per, params = window_outputs(run_dir, audio, weights, batch, hop_s, symmetry)
    return pooled(per, pool_gain(params), pool_gate(params, hop_s)), params


def decode_all(outputs: np.ndarray, params: dict, threshold: float | None = None,
               min_separation_deg: float | None = None, pooled: bool = False,
               fine_stretch: float | None = None) -> tuple[list[list[Any]], float, float]:
    """Detections per window; unset decode settings come from params.json (``decode``), else 0.5:
    ``threshold`` for single windows, ``onset_threshold`` (if set) for pooled outputs;
    ``fine_stretch`` (default: the model's ``regions.fine_stretch``, else 1)."""
    from train_tf.evaluate.device_decode import decode_all as decode_windows

    if threshold is None:
        dec = params.get("decode", {})
        threshold = float(pooled_thresholds(dec)[0] if pooled else dec.get("threshold", 0.5))
    return decode_windows(outputs, params, threshold, min_separation_deg, fine_stretch)
