"""Scoring: estimates matched to the true sources (edge_msl.truth.match, the project's one rule),
per-window rows and their summaries per cell, band, level, border distance and kind. Pure numpy;
it must not run a model or a baseline.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_msl.regions import RegionLayout

RT60_BANDS = (("RT60<0.3", 0.0, 0.3), ("0.3-0.6", 0.3, 0.6), ("RT60>0.6", 0.6, 99.0))
DIST_BANDS = (("0-1 m", 0.0, 1.0), ("1-2 m", 1.0, 2.0), ("2-3 m", 2.0, 3.0), (">3 m", 3.0, 99.0))
MODEL = "model"


def match(est_deg: Sequence[float], true_deg: Sequence[float],
          max_deg: float | None = None) -> list[tuple[int, int, float]]:
    """The project's one matching rule, :func:`edge_msl.truth.match` (as many pairs within the hit
    radius as can be made, then the least error; leftovers paired with their errors beyond it)."""
    from edge_msl.truth import match as one_rule

    return one_rule(est_deg, true_deg, max_deg)


def score(est_az: list[list[float]], est_dist: list[list[float]] | None, true_az: np.ndarray, true_dist: np.ndarray,
          match_deg: float, true_level: np.ndarray | None = None,
          true_border: np.ndarray | None = None, true_kind: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Per-window counts and errors for one method (``true_level``: direct-path level of each
    source relative to the window's loudest, dB, for recall per level; ``true_border``: each
    source's angle to the model's nearest sector border, for the error per border distance;
    ``true_kind``: each source's dry-signal kind code, for recall and error per kind)."""
    rows = []
    for i, est in enumerate(est_az):
        ok = np.isfinite(true_az[i])
        t_az, t_d = true_az[i][ok], true_dist[i][ok]
        t_lv = true_level[i][ok] if true_level is not None else np.zeros(len(t_az))
        t_bd = true_border[i][ok] if true_border is not None else np.full(len(t_az), np.nan)
        t_kd = true_kind[i][ok] if true_kind is not None else np.full(len(t_az), -1)
        pairs = match(est, t_az, match_deg)
        hits = [(e, t, err) for e, t, err in pairs if err <= match_deg]
        rows.append({
            "n_true": int(len(t_az)), "n_est": int(len(est)), "tp": len(hits),
            "err": [err for _, _, err in hits], "all_err": [err for _, _, err in pairs],
            "dist_err": [abs(est_dist[i][e] - t_d[t]) for e, t, _ in hits] if est_dist is not None else [],
            "hit_true_dist": [float(t_d[t]) for _, t, _ in hits], "true_dist": [float(v) for v in t_d],
            "hit_level": [float(t_lv[t]) for _, t, _ in hits], "true_level": [float(v) for v in t_lv],
            "hit_border": [float(t_bd[t]) for _, t, _ in hits], "hit_true": [int(t) for _, t, _ in hits],
            "hit_kind": [int(t_kd[t]) for _, t, _ in hits], "true_kind": [int(v) for v in t_kd],
        })
    return rows


def by_kind(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Recall and mean DOA error of hits per kind of dry signal the sources play (kinds present)."""
    from train_tf.simulate import KIND_CODES

    hit = np.concatenate([r.get("hit_kind", []) for r in rows]) if rows else np.zeros(0)
    true = np.concatenate([r.get("true_kind", []) for r in rows]) if rows else np.zeros(0)
    err = np.concatenate([r["err"] for r in rows]) if rows else np.zeros(0)
    out = {}
    for name, code in KIND_CODES.items():
        n = int(np.sum(true == code))
        if n:
            sel = hit == code
            out[name] = {"sources": n, "recall": float(np.sum(sel) / n),
                         "err_mean": float(err[sel].mean()) if np.any(sel) else float("nan")}
    return out


def score_detections(dets: list[list[Any]], true_az: np.ndarray, true_dist: np.ndarray, match_deg: float,
                     true_level: np.ndarray | None = None, true_border: np.ndarray | None = None,
                     true_kind: np.ndarray | None = None) -> list[dict[str, Any]]:
    """``score`` for decoded ``Detection`` lists (azimuth and distance of each)."""
    return score([[d.azimuth_deg for d in w] for w in dets], [[d.distance_m for d in w] for w in dets],
                 true_az, true_dist, match_deg, true_level, true_border, true_kind)


def _detection_scores(found: int, n_true: int, correct: int, n_est: int) -> tuple[float, float, float]:
    """(recall, precision, F1) of ``found`` of ``n_true`` talkers and ``correct`` of ``n_est``
    estimates; NaN where a share has no denominator, F1 NaN when there was nothing to find and
    nothing found (undefined, not 0)."""
    recall = found / n_true if n_true else float("nan")
    precision = correct / n_est if n_est else float("nan")
    if not (n_true or n_est):
        f1 = float("nan")
    elif n_true and n_est and recall + precision > 0:
        f1 = 2 * recall * precision / (recall + precision)
    else:
        f1 = 0.0
    return recall, precision, f1


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-window rows: errors, recall, precision, F1, distance error."""
    tp = sum(r["tp"] for r in rows)
    n_true = sum(r["n_true"] for r in rows)
    n_est = sum(r["n_est"] for r in rows)
    err = np.concatenate([r["err"] for r in rows]) if rows else np.zeros(0)
    derr = np.concatenate([r["dist_err"] for r in rows]) if rows else np.zeros(0)
    recall, precision, f1 = _detection_scores(tp, n_true, tp, n_est)
    return {"windows": len(rows), "sources": n_true, "estimates": n_est, "hits": tp,
            "err_mean": float(err.mean()) if len(err) else float("nan"),
            "err_median": float(np.median(err)) if len(err) else float("nan"),
            "recall": recall, "precision": precision, "f1": f1,
            "dist_err_mean": float(derr.mean()) if len(derr) else float("nan")}


AUDIBLE_DB = -10.0
"""Level floor of the supplementary table: talkers whose direct path is more than this far below
the window's loudest talker count neither as hits nor as misses there."""


def summarize_audible(rows: list[dict[str, Any]], floor_db: float = AUDIBLE_DB) -> dict[str, Any]:
    """F1 with the talkers quieter than ``floor_db`` (relative to each window's loudest) treated as
    "don't care", as detection benchmarks treat hard-to-see objects: recall is over the louder
    talkers only, and a detection matched to any talker within the match angle - a quiet one too -
    is correct (precision as in :func:`summarize`)."""
    hit = np.concatenate([r["hit_level"] for r in rows]) if rows else np.zeros(0)
    true = np.concatenate([r["true_level"] for r in rows]) if rows else np.zeros(0)
    n_true, tp = int(np.sum(true >= floor_db)), int(np.sum(hit >= floor_db))
    n_est, hits = sum(r["n_est"] for r in rows), sum(r["tp"] for r in rows)
    recall, precision, f1 = _detection_scores(tp, n_true, hits, n_est)
    return {"sources": n_true, "quiet": int(len(true) - n_true), "recall": recall, "precision": precision, "f1": f1}


def _recall_per_band(rows: list[dict[str, Any]], hit_key: str, true_key: str,
                     bands: Sequence[tuple[str, float, float]]) -> dict[str, float]:
    """Recall of true sources per band [lo, hi) of a per-source quantity."""
    hit = np.concatenate([r[hit_key] for r in rows]) if rows else np.zeros(0)
    true = np.concatenate([r[true_key] for r in rows]) if rows else np.zeros(0)
    out = {}
    for label, lo, hi in bands:
        n = int(np.sum((true >= lo) & (true < hi)))
        k = int(np.sum((hit >= lo) & (hit < hi)))
        out[label] = k / n if n else float("nan")
    return out


LEVEL_BANDS = (("loudest to -3 dB", -3.0, 0.1), ("-10 to -3 dB", -10.0, -3.0), ("-20 to -10 dB", -20.0, -10.0),
               ("below -20 dB", -99.0, -20.0))


def recall_by_distance(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Recall of true sources per horizontal distance band."""
    return _recall_per_band(rows, "hit_true_dist", "true_dist", DIST_BANDS)


BORDER_BANDS = (("0-2°", 0.0, 2.0), ("2-5°", 2.0, 5.0), ("5-8°", 5.0, 8.0), ("≥ 8°", 8.0, 181.0))


def border_distance_deg(layout: RegionLayout, azimuth_deg: np.ndarray) -> np.ndarray:
    """Angle from each azimuth to the nearest sector border of ``layout`` (NaN stays NaN)."""
    off = np.mod(np.asarray(azimuth_deg, dtype=np.float64) - layout.offset_deg, layout.width_deg)
    return np.minimum(off, layout.width_deg - off)


def error_by_border(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean DOA error of hits per band of the true azimuth's angle to the nearest sector border."""
    err = np.concatenate([r["err"] for r in rows]) if rows else np.zeros(0)
    bd = np.concatenate([r["hit_border"] for r in rows]) if rows else np.zeros(0)
    out = {}
    for label, lo, hi in BORDER_BANDS:
        sel = (bd >= lo) & (bd < hi)
        out[label] = float(err[sel].mean()) if np.any(sel) else float("nan")
    return out


def recall_by_level(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Recall of true sources per direct-path level relative to the window's loudest source."""
    return _recall_per_band(rows, "hit_level", "true_level", LEVEL_BANDS)


def cells(n_sources: np.ndarray, rt60: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, window mask) for every row of the tables."""
    out = []
    for k in sorted(set(int(v) for v in n_sources)):
        for name, lo, hi in RT60_BANDS:
            out.append((f"{k} src, {name}", (n_sources == k) & (rt60 >= lo) & (rt60 < hi)))
        out.append((f"{k} src, all", n_sources == k))
    out.append(("all", np.ones(len(n_sources), dtype=bool)))
    return out
