"""validate: the running and the calibrated model scored on held-out real windows, and the install rule.

It must not install; it only says whether the calibrated model is better.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.arrays import MicArray

from .session import CalibrationError, Session, _write_json


def score_model(tflite: str | Path, array: MicArray, audio: np.ndarray, az: np.ndarray,
                match_deg: float = 20.0) -> list[dict[str, Any]]:
    """Per-window scoring rows (``train_tf.evaluate.score``) of an int8 model through the device runtime."""
    from edge_msl.runtime import load_model
    from train_tf.evaluate import score_detections

    model = load_model(tflite, array=array)
    dets = [model.detections(w) for w in audio]
    return score_detections(dets, az, np.zeros(az.shape), match_deg)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from train_tf.evaluate import summarize

    s = summarize(rows)
    return {k: (None if isinstance(s[k], float) and math.isnan(s[k]) else s[k])
            for k in ("windows", "sources", "hits", "err_mean", "err_median", "recall", "precision", "f1")}



def validate(session: Session, before: str | Path, after: str | Path | None = None) -> dict[str, Any]:
    """Held-out real windows (singles per position, mixtures) scored before and after; writes validation.json."""
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
    for tag, path in (("before", before), ("after", after)):
        rows[tag] = score_model(path, session.array, audio, az)
    for subset, mask in (("single", kind == "single"), ("mixture", kind == "mixture"), ("all", np.ones(len(kind), bool))):
        result["sets"][subset] = {tag: _summary([r for r, m in zip(rows[tag], mask) if m]) for tag in rows}
    for i, name in enumerate(names):
        mask = (kind == "single") & (pos[:, 0] == i)
        if mask.any():
            result["per_position"][name] = {tag: _summary([r for r, m in zip(rows[tag], mask) if m]) for tag in rows}
    if tune is not None and len(tune["audio"]):
        # the recorded positions' later parts: what the model learnt there (not what decides the install)
        trows = {tag: score_model(path, session.array, tune["audio"], tune["azimuth_deg"])
                 for tag, path in (("before", before), ("after", after))}
        for subset in ("single", "mixture"):
            mask = tune["kind"] == subset
            result["sets"][f"recorded_{subset}"] = {tag: _summary([r for r, m in zip(trows[tag], mask) if m])
                                                    for tag in trows}
    result["better"], result["why"] = is_better(result["sets"]["all"]["before"], result["sets"]["all"]["after"],
                                                session.settings.f1_tolerance, session.settings.recall_tolerance)
    _write_json(session.dir / "validation.json", result)
    return result


def is_better(before: dict[str, Any], after: dict[str, Any], f1_tolerance: float = 0.0,
              recall_tolerance: float | None = None) -> tuple[bool, str]:
    """The install rule: lower mean DOA error, F1 not lower and (with ``recall_tolerance``) recall not lower
    than before minus it, all on held-out real windows (of positions never trained on, when there are)."""
    eb, ea, fb, fa = before["err_mean"], after["err_mean"], before["f1"] or 0.0, after["f1"] or 0.0
    if ea is None:
        return False, "the calibrated model found none of the held-out sources"
    if eb is not None and ea >= eb:
        return False, f"mean DOA error {ea:.2f} deg is not lower than {eb:.2f} deg"
    if fa < fb - f1_tolerance:
        return False, f"F1 {fa:.3f} is lower than {fb:.3f}"
    rb, ra = before.get("recall") or 0.0, after.get("recall") or 0.0
    if recall_tolerance is not None and ra < rb - recall_tolerance:
        return False, f"recall {ra:.3f} is lower than {rb:.3f} - {recall_tolerance:g}"
    return True, (f"mean DOA error {eb if eb is not None else float('nan'):.2f} -> {ea:.2f} deg, "
                  f"F1 {fb:.3f} -> {fa:.3f}")
