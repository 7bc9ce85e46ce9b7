"""Evaluate a trained model on a held-out simulated window set, against pyroomacoustics' DOA baselines.

For every window the model's detections (it is *not* told how many sources there are) and each
baseline's estimates (SRP-PHAT, MUSIC, NormMUSIC, TOPS, each *given the true number of
sources*) are matched to the true sources by the Hungarian method on circular azimuth
distance. A matched pair within ``--match-deg`` (20) is a hit. Reported per number of sources
(1-4) and per reverberation band (RT60 < 0.3, 0.3-0.6, > 0.6 s):

* DOA error of hits, mean and median (degrees);
* recall, precision, F1 (a baseline returns exactly K estimates, so its precision = recall);
* distance error of hits (model only; the baselines estimate no distance);
* recall per true distance band (where weak, far sources are lost).

Writes ``results.json``, ``table.md`` and ``eval.png`` (error CDF per method, F1 per number of
sources) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.arrays import SPEED_OF_SOUND_M_S, get_array
from edge_msl.features import model_scaling, normalize_window
from edge_msl.regions import RegionConfigError, RegionLayout, decode
from train_tf.crosscheck import default_weights, load_model

RT60_BANDS = (("RT60<0.3", 0.0, 0.3), ("0.3-0.6", 0.3, 0.6), ("RT60>0.6", 0.6, 99.0))
DIST_BANDS = (("0-1 m", 0.0, 1.0), ("1-2 m", 1.0, 2.0), ("2-3 m", 2.0, 3.0), (">3 m", 3.0, 99.0))
BASELINES = ("SRP", "MUSIC", "NormMUSIC", "TOPS")
MODEL = "model"


def match(est_deg: Sequence[float], true_deg: Sequence[float],
          max_deg: float | None = None) -> list[tuple[int, int, float]]:
    """The project's one matching rule, :func:`edge_msl.truth.match` (as many pairs within the hit
    radius as can be made, then the least error; leftovers paired with their errors beyond it)."""
    from edge_msl.truth import match as one_rule

    return one_rule(est_deg, true_deg, max_deg)


# --------------------------------------------------------------------------- the model

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
    as they are."""
    from edge_msl.symmetry import model_cycle

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


def temporal_settings(params: dict, threshold: float | None = None):
    """The model's temporal decode settings (``decode.temporal``), ``threshold`` as the birth threshold."""
    from edge_msl.temporal import DecodeSettings

    st = DecodeSettings.from_dict(params.get("decode", {}).get("temporal", {}))
    if threshold is not None:
        st = DecodeSettings.from_dict({"birth_threshold": threshold,
                                       "keep_threshold": min(st.keep_threshold, threshold)}, base=st)
    return st


def temporal_decode_all(per: np.ndarray, audio: np.ndarray, params: dict, threshold: float | None = None,
                        min_separation_deg: float | None = None, hop_s: float = POOL_HOP_S,
                        settings: Any = None) -> tuple[list[list[Any]], float, float]:
    """Detections per window from the outputs of its sub-windows (:func:`window_outputs`): the
    device's temporal decode (:func:`edge_msl.pipeline.decode_window`, with the model's SRP
    refinement) run over the sub-windows, ``hop_s`` apart, as a stream; the talkers listed after
    the last one are the window's detections."""
    from collections import deque

    from edge_msl.pipeline import decode_window
    from edge_msl.refine import SrpRefiner
    from edge_msl.regions import Detection
    from edge_msl.temporal import TemporalDecoder

    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    hop = max(1, int(round(hop_s * fs)))
    layout_cfg = dict(params["regions"])
    if min_separation_deg is not None:
        layout_cfg["min_separation_deg"] = min_separation_deg
    layout = RegionLayout.from_dict(layout_cfg)
    st = settings or temporal_settings(params, threshold)
    srp = params.get("decode", {}).get("srp_refine")
    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"], dtype=np.float64), fs, srp) if srp else None
    offsets = pool_offsets(audio.shape[1], window, hop)
    out = []
    for i in range(len(per)):
        dec = TemporalDecoder(layout, st)
        crosses: deque = deque(maxlen=max(1, window // hop))
        x = audio[i].astype(np.float32) / 32768.0
        talkers: list[Any] = []
        for j, o in enumerate(offsets):
            talkers = decode_window(dec, per[i, j], x[o:o + window], (o + window) / fs, refiner, crosses, hop)
        out.append([Detection(t.azimuth_deg, t.distance_m, t.confidence, t.region) for t in talkers])
    return out, st.birth_threshold, layout.min_separation_deg


def decode_all(outputs: np.ndarray, params: dict, threshold: float | None = None,
               min_separation_deg: float | None = None,
               fine_stretch: float | None = None) -> tuple[list[list[Any]], float, float]:
    """Detections per window of the model's own length; unset decode settings come from params.json
    (``decode.threshold``, else 0.5; ``fine_stretch``: the model's ``regions.fine_stretch``, else 1)."""
    if threshold is None:
        threshold = float(params.get("decode", {}).get("threshold", 0.5))
    layout_cfg = dict(params["regions"])
    if min_separation_deg is not None:
        layout_cfg["min_separation_deg"] = min_separation_deg
    if fine_stretch is not None:
        layout_cfg["fine_stretch"] = fine_stretch
    layout = RegionLayout.from_dict(layout_cfg)
    return [decode(layout, o, threshold) for o in outputs], threshold, layout.min_separation_deg


def srp_crosses(dets: list[list[Any]], audio: np.ndarray, params: dict, settings: dict,
                hop_s: float = POOL_HOP_S) -> list[np.ndarray | None]:
    """Per window, the mean cross-spectra that :func:`srp_refine_all` refines with (None where
    nothing was detected): those of the hops of audio of the pooled sub-windows, as the daemon
    keeps them. They depend on ``settings`` only through ``fmax_hz``."""
    from edge_msl.refine import SrpRefiner, hop_segments

    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"], dtype=np.float64), fs, settings)
    hop = max(1, int(round(hop_s * fs)))
    out: list[np.ndarray | None] = []
    for x, ds in zip(audio, dets):
        if not ds:
            out.append(None)
            continue
        x = x.astype(np.float64) / 32768.0
        first = 0 if len(x) == window else pool_offsets(len(x), window, hop)[0]
        pieces = hop_segments(x[first:], hop)  # what the pipeline holds after the last sub-window
        out.append(np.mean([refiner.cross(piece) for piece in pieces], axis=0))
    return out


def srp_refine_all(dets: list[list[Any]], audio: np.ndarray, params: dict, hop_s: float = POOL_HOP_S,
                   crosses: list[np.ndarray | None] | None = None) -> list[list[Any]]:
    """``dets`` refined as the daemon does when the model's decode has ``srp_refine``
    (:mod:`edge_msl.refine`); unchanged otherwise. ``crosses``: :func:`srp_crosses` computed
    before for the same ``fmax_hz`` (a settings sweep reuses them)."""
    settings = params.get("decode", {}).get("srp_refine")
    if not settings:
        return dets
    from edge_msl.refine import SrpRefiner

    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"], dtype=np.float64), int(params["sample_rate_hz"]),
                         settings)
    if crosses is None:
        crosses = srp_crosses(dets, audio, params, settings, hop_s)
    return [refiner.refine(ds, cross) if ds else ds for ds, cross in zip(dets, crosses)]


# --------------------------------------------------------------------------- baselines

_BASE: dict[str, Any] = {}


def _baseline_init(mic_xy: np.ndarray, fs: int, nfft: int, freq_range: tuple[float, float]) -> None:
    os.environ["PRA_NUM_THREADS"] = "1"
    _BASE.update(mic_xy=mic_xy, fs=fs, nfft=nfft, freq_range=freq_range)


def _baseline_job(job: tuple[np.ndarray, int, Sequence[str]]) -> dict[str, list[float]]:
    import pyroomacoustics as pra

    audio, k, methods = job
    nfft = _BASE["nfft"]
    x = audio.astype(np.float64) / 32768.0
    spec = pra.transform.stft.analysis(x, nfft, nfft // 2).transpose(2, 1, 0)  # (M, F, frames)
    out = {}
    grid = np.radians(np.arange(0.0, 360.0, 1.0))
    for name in methods:
        doa = pra.doa.algorithms[name](_BASE["mic_xy"], _BASE["fs"], nfft, c=SPEED_OF_SOUND_M_S, num_src=k,
                                       azimuth=grid)
        doa.locate_sources(spec, num_src=k, freq_range=list(_BASE["freq_range"]))
        out[name] = [float(v) for v in np.degrees(np.atleast_1d(doa.azimuth_recon)) % 360.0]
    return out


def baseline_estimates(audio: np.ndarray, n_sources: np.ndarray, array_name: str, fs: int, methods: Sequence[str],
                       workers: int, nfft: int = 512, freq_range: tuple[float, float] = (300.0, 3500.0)
                       ) -> dict[str, list[list[float]]]:
    """Azimuth estimates of each baseline for every window, given its true number of sources."""
    import multiprocessing as mp

    mic_xy = get_array(array_name).positions()[:, :2].T.copy()
    jobs = [(audio[i], int(n_sources[i]), tuple(methods)) for i in range(len(audio))]
    res: list[dict[str, list[float]]]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers, _baseline_init, (mic_xy, fs, nfft, freq_range)) as pool:
            res = pool.map(_baseline_job, jobs, chunksize=8)
    else:
        _baseline_init(mic_xy, fs, nfft, freq_range)
        res = [_baseline_job(j) for j in jobs]
    return {m: [r[m] for r in res] for m in methods}


def baseline_estimates_cached(audio: np.ndarray, n_sources: np.ndarray, array_name: str, fs: int,
                              methods: Sequence[str], workers: int, cache: Path | None) -> dict[str, list[list[float]]]:
    """``baseline_estimates`` for every window (none for windows without sources), kept in ``cache``
    (JSON) for the next model evaluated on the same windows: the baselines do not depend on it."""
    n_sources = np.asarray(n_sources).astype(int)
    key = {"array": array_name, "fs": int(fs), "n_sources": n_sources.tolist(),
           "audio_sum": float(np.sum(np.abs(audio[:, ::97, :]), dtype=np.float64))}
    saved: dict[str, Any] = {}
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text())
        if {k: saved.get(k) for k in key} != key:
            print(f"baseline cache {cache} is for other windows; recomputing it", file=sys.stderr)
            saved = {}
    est: dict[str, list[list[float]]] = dict(saved.get("estimates", {}))
    todo = [m for m in methods if m not in est]
    if todo:
        idx = np.flatnonzero(n_sources > 0)
        new = baseline_estimates(audio[idx], n_sources[idx], array_name, fs, todo, workers)
        for m in todo:
            full: list[list[float]] = [[] for _ in range(len(n_sources))]
            for j, i in enumerate(idx):
                full[int(i)] = [float(v) for v in new[m][j]]
            est[m] = full
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({**key, "estimates": est}))
    return {m: est[m] for m in methods}


# --------------------------------------------------------------------------- scoring

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


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _pooling_note(results: dict[str, Any]) -> str:
    a = results.get("analysis")
    if not a or a["pooled_windows"] <= 1:
        return ""
    return (f" ({a['window_s']:g} s each; the model's {a['model_window_s']:g} s windows every {a['hop_s']:g} s, "
            f"{a['pooled_windows']} per window, run through the device's temporal decode as a stream; the talkers it "
            f"lists after the last one are the window's detections; "
            + ("each sub-window on the next of the array's symmetric images (decode.symmetry cycle); "
               if results.get("symmetry") == "cycle" else "")
            + f"the baselines see the whole {a['window_s']:g} s)")


def tables(results: dict[str, Any]) -> str:
    """Markdown tables of a results dict."""
    methods = results["methods"]
    lines = [f"Model `{results['model']}` ({results['model_macs'] / 1e6:.1f} M MACs, {results['n_regions']} regions, "
             f"threshold {results['threshold']}, duplicates within {results['min_separation_deg']:g}° suppressed"
             + (f", fine azimuth stretched ×{results['fine_stretch']:g}" if results.get("fine_stretch", 1.0) != 1.0
                else "")
             + (", azimuths refined by a local SRP-PHAT search (±{half_deg:g}°, weight {weight:g}, up to "
                "{fmax_hz:g} Hz)".format(**results["srp_refine"]) if results.get("srp_refine") else "") + "), "
             f"{results['n_windows']} windows of `{results['data']}`{_pooling_note(results)}. "
             f"Hit: one-to-one match within {results['match_deg']}° (edge_msl.truth.match). Baselines are given the true number of sources.",
             "", "**Model** (not told the number of sources)", "",
             "| windows | n | DOA err mean / median (°) | recall | precision | F1 | dist err (m) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, s in results["cells"][MODEL].items():
        lines.append(f"| {label} | {s['windows']} | {_fmt(s['err_mean'], '.2f')} / {_fmt(s['err_median'], '.2f')} | "
                     f"{_fmt(s['recall'], '.3f')} | {_fmt(s['precision'], '.3f')} | {_fmt(s['f1'], '.3f')} | "
                     f"{_fmt(s['dist_err_mean'], '.2f')} |")
    lines += ["", "**F1@{:g}° / mean DOA error of hits (°)**, model vs baselines given the true count".format(
        results["match_deg"]), "", "| windows | " + " | ".join(methods) + " |",
        "| --- | " + " | ".join("---:" for _ in methods) + " |"]
    for label in results["cells"][MODEL]:
        row = [f"{_fmt(results['cells'][m][label]['f1'], '.3f')} / {_fmt(results['cells'][m][label]['err_mean'], '.1f')}"
               for m in methods]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += ["", "**Recall per true distance** (all windows)", "",
              "| method | " + " | ".join(results["recall_by_distance"][MODEL]) + " |",
              "| --- | " + " | ".join("---:" for _ in results["recall_by_distance"][MODEL]) + " |"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_fmt(v, ".3f") for v in results["recall_by_distance"][m].values()) + " |")
    if "recall_by_level" in results:
        lv = results["recall_by_level"][MODEL]
        lines += ["", "**Recall per direct-path level relative to the loudest source** (all windows)", "",
                  "| method | " + " | ".join(lv) + " |", "| --- | " + " | ".join("---:" for _ in lv) + " |"]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_fmt(v, ".3f") for v in results["recall_by_level"][m].values()) + " |")
    if results.get("cells_audible"):
        aud = results["cells_audible"]
        lines += ["", f"**F1@{results['match_deg']:g}° counting the talkers within {-results['audible_db']:g} dB of the "
                  "window's loudest** (supplementary: quieter talkers are neither hits nor misses, a detection of one "
                  "is not a false alarm; the table above counts every talker)", "",
                  "| windows | quiet talkers not counted | " + " | ".join(methods) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in methods) + " |"]
        for label, s in aud[MODEL].items():
            lines.append(f"| {label} | {s['quiet']} / {s['quiet'] + s['sources']} | "
                         + " | ".join(_fmt(aud[m][label]["f1"], ".3f") for m in methods) + " |")
    if results.get("error_by_border", {}).get(MODEL):
        bd = results["error_by_border"][MODEL]
        lines += ["", "**Mean DOA error of hits (°) per angle from the true azimuth to the model's nearest sector "
                  "border** (all windows; the baselines have no sectors: their columns are the control)", "",
                  "| method | " + " | ".join(bd) + " |", "| --- | " + " | ".join("---:" for _ in bd) + " |"]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_fmt(v, ".2f") for v in results["error_by_border"][m].values())
                         + " |")
    kinds = results.get("by_kind", {}).get(MODEL, {})
    if len(kinds) > 1:  # a table only where the sources play different kinds of signal
        lines += ["", "**Recall / mean DOA error of hits (°) per kind of source signal** (all windows)", "",
                  "| method | " + " | ".join(f"{k} ({v['sources']})" for k, v in kinds.items()) + " |",
                  "| --- | " + " | ".join("---:" for _ in kinds) + " |"]
        for m in methods:
            row = results["by_kind"][m]
            lines.append(f"| {m} | " + " | ".join(f"{_fmt(row[k]['recall'], '.3f')} / {_fmt(row[k]['err_mean'], '.2f')}"
                                                for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], per_window: dict[str, list[dict[str, Any]]], png: Path) -> None:
    """Error CDF per method (all Hungarian pairs) and F1 per number of sources."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in results["methods"]:
        err = np.sort(np.concatenate([r["all_err"] for r in per_window[m]]))
        if len(err):
            a.plot(err, np.arange(1, len(err) + 1) / len(err), label=m, lw=2 if m == MODEL else 1.2)
    a.axvline(results["match_deg"], color="grey", ls=":", lw=1)
    a.set_xscale("symlog", linthresh=1.0)
    a.set_xlim(0, 180)
    a.set_xlabel("azimuth error of Hungarian-matched pairs (deg)")
    a.set_ylabel("fraction of pairs")
    a.set_title("error CDF")
    a.grid(alpha=0.3)
    a.legend()
    ks = sorted({int(lbl.split()[0]) for lbl in results["cells"][MODEL] if lbl.endswith(", all")} - {0})
    width = 0.8 / len(results["methods"])
    for j, m in enumerate(results["methods"]):
        f1 = [results["cells"][m][f"{k} src, all"]["f1"] for k in ks]
        b.bar(np.array(ks) + (j - (len(results["methods"]) - 1) / 2) * width, f1, width, label=m)
    b.set_xticks(ks)
    b.set_xlabel("number of sources")
    b.set_ylabel(f"F1 @ {results['match_deg']:g} deg")
    b.set_ylim(0, 1)
    b.set_title("F1 per number of sources (baselines know the count)")
    b.grid(alpha=0.3, axis="y")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


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
        "symmetry": symmetry_used(audio.shape[1], params, symmetry),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train_tf.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run or export directory (params.json + weights)")
    parser.add_argument("--weights", default=None,
                        help="weights file inside --model (default: model.weights.h5 if present, else best.weights.h5)")
    parser.add_argument("--data", required=True, help="held-out window set (train_tf.simulate windows)")
    parser.add_argument("--out", required=True, help="directory for results.json, table.md, eval.png")
    parser.add_argument("--threshold", type=float, default=None,
                        help="activity threshold (default: the model's params.json decode.threshold, else 0.5)")
    parser.add_argument("--min-separation-deg", type=float, default=None,
                        help="duplicate suppression on decode (default: the model's)")
    parser.add_argument("--match-deg", type=float, default=20.0)
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help="comma list of SRP,MUSIC,NormMUSIC,TOPS, or 'none'")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--baseline-cache", default=None, metavar="JSON",
                        help="keep the baselines' estimates here and reuse them for the next model on the same windows")
    parser.add_argument("--sweep", metavar="THRESHOLDS/SEPARATIONS",
                        help="instead of evaluating, print the model's F1 for a grid of decode settings, e.g. "
                             "0.3,0.4,0.5/10,15,20 (use a validation set); on windows longer than the model's the "
                             "thresholds are the temporal decode's birth thresholds")
    parser.add_argument("--keep-thresholds", metavar="LIST",
                        help="with --sweep on longer windows: the temporal decode's keep thresholds to try with each "
                             "birth threshold, e.g. 0.15,0.2,0.25 (default: the model's)")
    parser.add_argument("--fit-stretch", metavar="LIST",
                        help="instead of evaluating, print the DOA error of the model's decode for each fine_stretch, "
                             "e.g. 1,1.05,1.1,1.15,1.2,1.25 (use a validation set)")
    parser.add_argument("--symmetry", choices=("none", "cycle"), default=None,
                        help="use of the array's symmetries (default: the model's decode.symmetry): cycle = each "
                             "pooled sub-window on the next image, as the daemon does")
    args = parser.parse_args(argv)
    baselines = [] if args.baselines.lower() == "none" else [b.strip() for b in args.baselines.split(",") if b.strip()]
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise SystemExit(f"unknown baselines {bad}; choose from {', '.join(BASELINES)} or none")
    weights = args.weights or default_weights(args.model)
    if args.fit_stretch:
        try:
            stretches = [float(v) for v in args.fit_stretch.split(",")]
            for s in stretches:
                RegionLayout(fine_stretch=s)
        except (ValueError, RegionConfigError) as e:
            raise SystemExit(f"--fit-stretch takes numbers in [0.5, 2] like 1,1.1,1.2, got {args.fit_stretch!r} ({e})") \
                from None
        rows = fit_stretch(args.model, args.data, weights, stretches, args.match_deg)
        print("| fine_stretch | recall | precision | F1 | DOA err mean / median (°) |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['fine_stretch']:g} | {r['recall']:.3f} | {r['precision']:.3f} | {r['f1']:.3f} | "
                  f"{r['err_mean']:.3f} / {r['err_median']:.3f} |")
        best = min(rows, key=lambda r: r["err_mean"])
        print(f"lowest mean DOA error {best['err_mean']:.3f} at fine_stretch {best['fine_stretch']:g}")
        return 0
    if args.sweep:
        try:
            ts, seps = args.sweep.split("/")
            grid = [float(v) for v in ts.split(",")], [float(v) for v in seps.split(",")]
        except ValueError:
            raise SystemExit(f"--sweep takes THRESHOLDS/SEPARATIONS like 0.3,0.4/10,20, got {args.sweep!r}") from None
        pts = [float(v) for v in args.keep_thresholds.split(",")] if args.keep_thresholds else []
        rows = sweep(args.model, args.data, weights, *grid, match_deg=args.match_deg, keep_thresholds=pts,
                     symmetry=args.symmetry)
        print("| threshold | keep threshold | suppression (°) | recall | precision | F1 | DOA err mean (°) |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            pt = "model's" if r["keep_threshold"] is None else f"{r['keep_threshold']:g}"
            print(f"| {r['threshold']:g} | {pt} | {r['min_separation_deg']:g} | {r['recall']:.3f} | "
                  f"{r['precision']:.3f} | {r['f1']:.3f} | {r['err_mean']:.2f} |")
        best = max(rows, key=lambda r: r["f1"])
        print(f"best F1 {best['f1']:.3f} at threshold {best['threshold']:g}"
              + ("" if best["keep_threshold"] is None else f", keep threshold {best['keep_threshold']:g}")
              + f", suppression {best['min_separation_deg']:g}°")
        return 0
    results = evaluate(args.model, args.data, args.out, weights, args.threshold, args.match_deg, baselines,
                       args.workers, args.max_windows, args.min_separation_deg, args.baseline_cache,
                       args.symmetry)
    print(tables(results))
    print(f"wrote {args.out}/results.json, table.md, eval.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main())
