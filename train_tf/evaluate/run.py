"""The whole evaluation of a model on a window set, and the validation-set sweeps of its decode
settings (threshold and suppression, fine_stretch): outputs, decode, baselines and scoring put
together. It must not parse a command line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.regions import RegionLayout
from train_tf.evaluate.baselines import BASELINES, baseline_estimates_cached
from train_tf.evaluate.device_decode import decode_all, srp_refine_all, temporal_decode_all, temporal_settings
from train_tf.evaluate.outputs import analysis, model_outputs, params_of, symmetry_used, window_outputs
from train_tf.evaluate.report import plot, tables
from train_tf.evaluate.scoring import (AUDIBLE_DB, MODEL, border_distance_deg, by_kind, cells, error_by_border,
                                       recall_by_distance, recall_by_level, score, score_detections, summarize,
                                       summarize_audible)
from train_tf.temporal_head import has_head


def sweep(run_dir: str | Path, data_dir: str | Path, weights: str, thresholds: Sequence[float],
          separations: Sequence[float], match_deg: float = 20.0,
          keep_thresholds: Sequence[float] = (), symmetry: str | None = None) -> list[dict[str, Any]]:
    """F1 and DOA error of the model for every (threshold, suppression) pair: choose them on a
    validation set, never on the test set. On windows of the model's length ``threshold`` is the
    threshold of one window alone; on longer windows it is the temporal decode's birth threshold and
    ``keep_thresholds`` (empty: the model's, capped by the birth threshold) its keep thresholds to
    try with each (:func:`temporal_decode_all`)."""
    from dataclasses import replace

    from train_tf.simulate import load_windows

    data = load_windows(data_dir)
    per, params = window_outputs(run_dir, data["audio"], weights, symmetry=symmetry)
    rows = []
    base = temporal_settings(params)
    for t in thresholds:
        for kt in (keep_thresholds if per.shape[1] > 1 and keep_thresholds else [None]):
            if kt is not None and kt > t:
                continue
            for sep in separations:
                if per.shape[1] == 1:
                    dets, _, _ = decode_all(per[:, 0], params, t, sep)
                    dets = srp_refine_all(dets, data["audio"], params)
                else:
                    keep = min(base.keep_threshold, t) if kt is None else kt
                    st = replace(base, birth_threshold=t, keep_threshold=keep,
                                 seed_threshold=min(base.seed_threshold, keep))
                    dets, _, _ = temporal_decode_all(per, data["audio"], params, min_separation_deg=sep, settings=st)
                s = summarize(score_detections(dets, data["azimuth_deg"], data["distance_m"], match_deg))
                rows.append({"threshold": t, "keep_threshold": kt, "min_separation_deg": sep, **s})
    return rows


def fit_stretch(run_dir: str | Path, data_dir: str | Path, weights: str, stretches: Sequence[float],
                match_deg: float = 20.0) -> list[dict[str, Any]]:
    """DOA error and F1 of the model's own decode (the temporal one on windows longer than the
    model's) for every ``fine_stretch`` (see :class:`edge_msl.regions.RegionLayout`): fit it on a
    validation set, never on the test set."""
    from train_tf.simulate import load_windows

    data = load_windows(data_dir)
    per, params = window_outputs(run_dir, data["audio"], weights)
    rows = []
    for s in stretches:
        p = {**params, "regions": {**params["regions"], "fine_stretch": s}}
        if per.shape[1] > 1:
            dets, _, _ = temporal_decode_all(per, data["audio"], p)
        else:
            dets, _, _ = decode_all(per[:, 0], p)
        rows.append({"fine_stretch": s, **summarize(score_detections(dets, data["azimuth_deg"], data["distance_m"],
                                                                     match_deg))})
    return rows


def evaluate(run_dir: str | Path, data_dir: str | Path, out_dir: str | Path, weights: str = "best.weights.h5",
             threshold: float | None = None, match_deg: float = 20.0, baselines: Sequence[str] = BASELINES, workers: int = 1,
             max_windows: int | None = None, min_separation_deg: float | None = None,
             baseline_cache: str | Path | None = None, symmetry: str | None = None) -> dict[str, Any]:
    """Run the whole evaluation; returns the results dict (also written to ``out_dir``); ``symmetry``
    as in :func:`window_outputs`."""
    from train_tf.simulate import _read_meta, load_windows

    data_dir, out = Path(data_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = _read_meta(data_dir)
    data = load_windows(data_dir)
    n = len(data["audio"]) if max_windows is None else min(max_windows, len(data["audio"]))
    audio = data["audio"][:n]
    n_src = data["n_sources"][:n].astype(int)
    true_az, true_d, rt60 = data["azimuth_deg"][:n], data["distance_m"][:n], data["rt60_s"][:n]
    t0 = time.perf_counter()
    how = analysis(audio.shape[1], params_of(run_dir))
    headed = symmetry is None and has_head(run_dir)  # window_outputs runs the model's temporal head
    # (the window's length decides: sub-windows through the temporal decode, or one window alone)
    is_pooled = how["pooled_windows"] > 1
    if is_pooled:  # longer windows: the temporal decode over their sub-windows, as the daemon runs it
        per, params = window_outputs(run_dir, audio, weights, symmetry=symmetry)
        model_s = time.perf_counter() - t0
        dets, threshold, min_sep = temporal_decode_all(per, audio, params, threshold, min_separation_deg)
    else:
        outputs, params = model_outputs(run_dir, audio, weights, symmetry=symmetry)
        model_s = time.perf_counter() - t0
        dets, threshold, min_sep = decode_all(outputs, params, threshold, min_separation_deg)
        dets = srp_refine_all(dets, audio, params)
    if params["array"]["name"] != meta["array"]["name"]:
        raise SystemExit(f"model is for array {params['array']['name']} but the data for {meta['array']['name']}")
    level = data["level_db"][:n]
    border = border_distance_deg(RegionLayout.from_dict(params["regions"]), true_az)
    kind = data["kind"][:n] if "kind" in data else None
    per_window = {MODEL: score_detections(dets, true_az, true_d, match_deg, level, border, kind)}
    t1 = time.perf_counter()
    if baselines:
        est = baseline_estimates_cached(audio, n_src, meta["array"]["name"], meta["settings"]["sample_rate_hz"],
                                        baselines, workers, Path(baseline_cache) if baseline_cache else None)
        for m in baselines:
            per_window[m] = score(est[m], None, true_az, true_d, match_deg, level, border, kind)
    base_s = time.perf_counter() - t1
    methods = [MODEL, *baselines]
    results: dict[str, Any] = {
        "model": str(run_dir), "weights": weights, "data": str(data_dir), "n_windows": n, "threshold": threshold,
        "match_deg": match_deg, "n_regions": params["regions"]["n_regions"], "model_macs": params["macs_per_window"],
        "min_separation_deg": min_sep, "fine_stretch": float(params["regions"].get("fine_stretch", 1.0)),
        "srp_refine": params.get("decode", {}).get("srp_refine"),
        "symmetry": "none" if headed else symmetry_used(audio.shape[1], params, symmetry),
        "temporal_head": headed,
        "analysis": how,
        "decode": temporal_settings(params, threshold).to_dict() if is_pooled else {"threshold": threshold},
        "methods": methods, "seconds": {"model": round(model_s, 1), "baselines": round(base_s, 1)},
        "cells": {m: {label: summarize([per_window[m][i] for i in np.flatnonzero(mask)])
                      for label, mask in cells(n_src, rt60)} for m in methods},
        "cells_audible": {m: {label: summarize_audible([per_window[m][i] for i in np.flatnonzero(mask)])
                              for label, mask in cells(n_src, rt60)} for m in methods},
        "audible_db": AUDIBLE_DB,
        "recall_by_distance": {m: recall_by_distance(per_window[m]) for m in methods},
        "recall_by_level": {m: recall_by_level(per_window[m]) for m in methods},
        "error_by_border": {m: error_by_border(per_window[m]) for m in methods},
        "by_kind": {m: by_kind(per_window[m]) for m in methods},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(tables(results))
    plot(results, per_window, out / "eval.png")
    return results
