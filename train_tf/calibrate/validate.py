"""validate: the running and the calibrated model scored on held-out real windows, and the install rule.

It must not install; it only says whether the calibrated model is better.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.arrays import MicArray

from .session import CalibrationError, CalibrationSettings, Session, _write_json


def score_model(tflite: str | Path, array: MicArray, audio: np.ndarray, az: np.ndarray,
                match_deg: float = 20.0, threshold: float | None = None,
                outputs_cache: dict | None = None) -> list[dict[str, Any]]:
    """Per-window scoring rows (``train_tf.evaluate.score``) of an int8 model through the device runtime
    (``threshold``: decode at this instead of the model's own). ``outputs_cache``, if given, keeps each
    model's outputs on each set (keyed by the model file and the set's bytes), so a benchmark that decodes
    one model at several thresholds runs it once."""
    import hashlib

    from edge_msl.runtime import decode_outputs, load_model
    from train_tf.evaluate import score_detections

    key = None if outputs_cache is None else \
        (str(tflite), Path(tflite).stat().st_mtime_ns, hashlib.sha1(np.ascontiguousarray(audio).tobytes()).hexdigest())
    found = None if key is None else outputs_cache.get(key)
    if found is None:
        model = load_model(tflite, array=array)
        found = (model.info, [model.outputs(w) for w in audio])
        if key is not None:
            outputs_cache[key] = found
    info, outs = found
    dets = [decode_outputs(info, o, threshold) for o in outs]
    return score_detections(dets, az, np.zeros(az.shape), match_deg)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from train_tf.evaluate import summarize

    s = summarize(rows)
    return {k: (None if isinstance(s[k], float) and math.isnan(s[k]) else s[k])
            for k in ("windows", "sources", "hits", "err_mean", "err_median", "recall", "precision", "f1")}



def validate(session: Session, before: str | Path, after: str | Path | None = None, *,
             after_threshold: float | None = None, write: bool = True,
             outputs_cache: dict | None = None) -> dict[str, Any]:
    """Held-out real windows (singles per position, mixtures) scored before and after; writes validation.json
    (``write``; ``after_threshold``: the calibrated model decoded at this instead of its own threshold;
    ``outputs_cache``: as :func:`score_model`'s)."""
    after = Path(after or session.dir / "build" / f"{session.array.name}.tflite")
    if not after.exists():
        raise CalibrationError(f"{after} not found; run 'edge-msl calibrate convert' first")
    with np.load(session.dir / "set.npz") as z:
        audio, az, kind, pos = z["val_audio"], z["val_azimuth_deg"], z["val_kind"], z["val_position"]
        names = [str(n) for n in z["position_names"]]
        held = [str(n) for n, o in zip(names, z["heldout_positions"]) if o] if "heldout_positions" in z.files else []
        tune = {k: z[f"tune_{k}"] for k in ("audio", "azimuth_deg", "kind")} if (held and "tune_audio" in z.files) \
            else None
    result: dict[str, Any] = {"before": str(before), "after": str(after), "sets": {}, "per_position": {},
                              "heldout_positions": held}
    rows = {}
    thresholds = {"before": None, "after": after_threshold}
    for tag, path in (("before", before), ("after", after)):
        rows[tag] = score_model(path, session.array, audio, az, threshold=thresholds[tag], outputs_cache=outputs_cache)
    for subset, mask in (("single", kind == "single"), ("mixture", kind == "mixture"), ("all", np.ones(len(kind), bool))):
        result["sets"][subset] = {tag: _summary([r for r, m in zip(rows[tag], mask) if m]) for tag in rows}
    for i, name in enumerate(names):
        mask = (kind == "single") & (pos[:, 0] == i)
        if mask.any():
            result["per_position"][name] = {tag: _summary([r for r, m in zip(rows[tag], mask) if m]) for tag in rows}
    if tune is not None and len(tune["audio"]):
        # the recorded positions' later parts: what the model learnt there (not what decides the install)
        trows = {tag: score_model(path, session.array, tune["audio"], tune["azimuth_deg"], threshold=thresholds[tag],
                                  outputs_cache=outputs_cache)
                 for tag, path in (("before", before), ("after", after))}
        for subset in ("single", "mixture"):
            mask = tune["kind"] == subset
            result["sets"][f"recorded_{subset}"] = {tag: _summary([r for r, m in zip(trows[tag], mask) if m])
                                                    for tag in trows}
    result["decision"] = decision_sets(result["sets"], result["per_position"] if held else {}, session.settings)
    result["better"], result["why"] = is_better(result["decision"]["before"], result["decision"]["after"],
                                                session.settings.f1_tolerance, session.settings.recall_tolerance,
                                                result["decision"]["error_margin_deg"])
    if write:
        _write_json(session.dir / "validation.json", result)
    return result


def _pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall, precision and F1 of several scored sets together (from their hit, source and detection counts)."""
    sources = sum(p["sources"] or 0 for p in parts)
    hits = sum(p["hits"] or 0 for p in parts)
    dets = sum((p["hits"] or 0) / p["precision"] if p.get("precision") else 0.0 for p in parts)
    r = hits / sources if sources else None
    pr = hits / dets if dets else None
    f1 = 2 * pr * r / (pr + r) if (r and pr) else 0.0
    return {"windows": sum(p["windows"] or 0 for p in parts), "sources": sources, "hits": hits, "recall": r,
            "precision": pr, "f1": f1}


def decision_sets(sets: dict[str, Any], per_position: dict[str, Any], settings: CalibrationSettings
                  ) -> dict[str, Any]:
    """What the install rule compares (``before``/``after`` for :func:`is_better`, and its error margin).

    Mean DOA error: the windows of the positions held out whole (``sets['all']``), never trained on. F1 and
    recall: those and the recorded positions' later windows (``recorded_*``) pooled: 2-4 held-out positions
    are too few to tell F1/recall within 0.01, and the decode threshold and activity outputs behave alike
    at recorded directions. Error margin: ``error_margin_se`` standard errors of the per-position error change
    over the held-out positions (``per_position``, singles), at most ``max_error_margin_deg``; 0 with fewer
    than 2 positions. Measured in docs/experiments/calibration-generalization.md."""
    d = [p["after"]["err_mean"] - p["before"]["err_mean"] for p in per_position.values()
         if p["after"]["err_mean"] is not None and p["before"]["err_mean"] is not None]
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) >= 2 else 0.0
    margin = min(settings.error_margin_se * se, settings.max_error_margin_deg)
    keys = ["all"] + [k for k in ("recorded_single", "recorded_mixture") if k in sets]
    out: dict[str, Any] = {"error_margin_deg": margin, "per_position_change_se_deg": se, "f1_recall_from": keys}
    for tag in ("before", "after"):
        out[tag] = {**_pooled([sets[k][tag] for k in keys]), "err_mean": sets["all"][tag]["err_mean"]}
    return out


def is_better(before: dict[str, Any], after: dict[str, Any], f1_tolerance: float = 0.0,
              recall_tolerance: float | None = None, error_margin_deg: float = 0.0) -> tuple[bool, str]:
    """The install rule: mean DOA error lower, or higher by less than ``error_margin_deg`` (a change the
    held-out positions cannot resolve: :func:`decision_sets`), F1 not lower than before minus ``f1_tolerance``
    and (with ``recall_tolerance``) recall not lower than before minus it."""
    eb, ea, fb, fa = before["err_mean"], after["err_mean"], before["f1"] or 0.0, after["f1"] or 0.0
    if ea is None:
        return False, "the calibrated model found none of the held-out sources"
    if eb is not None and ea >= eb + error_margin_deg:
        more = f" + {error_margin_deg:.2f} deg (margin)" if error_margin_deg > 0 else ""
        return False, f"mean DOA error {ea:.2f} deg is not lower than {eb:.2f} deg{more}"
    if fa < fb - f1_tolerance:
        return False, f"F1 {fa:.3f} is lower than {fb:.3f}"
    rb, ra = before.get("recall") or 0.0, after.get("recall") or 0.0
    if recall_tolerance is not None and ra < rb - recall_tolerance:
        return False, f"recall {ra:.3f} is lower than {rb:.3f} - {recall_tolerance:g}"
    return True, (f"mean DOA error {eb if eb is not None else float('nan'):.2f} -> {ea:.2f} deg"
                  + (f" (margin {error_margin_deg:.2f} deg)" if error_margin_deg > 0 else "")
                  + f", F1 {fb:.3f} -> {fa:.3f}")
