"""Choose a board model on validation: a candidate model directory against the shipped one, per-window
paired bootstrap (candidate - shipped) of F1, single-talker precision, 3-talker recall and mean DOA
error, and the boards' ship rule (docs/experiments/boards-round-2.md, "Choice on validation").

    .venv/bin/python -m benchmarks.board_choice BOARD CANDIDATE_DIR      # against models/BOARD on val2
    # round 3's choice (the model shipped before it extracted to /tmp/old-minidsp-uma8: boards-round-3.md)
    .venv/bin/python -m benchmarks.board_choice minidsp-uma8 runs/bf3/cand/minidsp-uma8/N \
        --shipped /tmp/old-minidsp-uma8
    .venv/bin/python -m benchmarks.board_choice minidsp-uma8 runs/bf3/cand/minidsp-uma8/K --as-is \
        --shipped /tmp/old-minidsp-uma8 --data data/val-minidsp-uma8

The candidate is scored as it would ship ("K" of the rounds): the shipped model's ``decode`` section
kept whole (threshold, suppression, SRP refinement) and its own ``fine_stretch``, the one of
1, 1.05, ..., 1.5 with the lowest mean DOA error on ``--fit-on`` (default data/val2-<board>) by the
decode alone, as ``python -m train_tf.evaluate --fit-stretch`` picks it. ``--as-is`` takes the
candidate's params.json as it stands instead. Windows (default data/val2-<board>) are of the model's
length and scored as ``train_tf.evaluate`` scores them: ``decode_all``, ``srp_refine_all``,
``score_detections`` (edge_msl.truth.match, hits within 20 deg). Resampling: ``--resamples`` (2,000)
draws of the windows with replacement from ``numpy.random.default_rng(--seed)`` (0), 95 % interval
from the 2.5 and 97.5 percentiles. Ship where F1 or mean error is better beyond the interval and
none of the four is worse beyond it. Tables to stdout, ``--json PATH`` writes every figure; it only
reads models and windows, and writes no model. The pick between candidates that comes before
(N or H by a threshold sweep, boards-round-2.md) is not in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from train_tf.evaluate import (decode_all, default_weights, model_outputs, params_of, score_detections, srp_refine_all,
                               summarize, symmetry_used)

STRETCHES = tuple(float(f"{1 + 0.05 * i:g}") for i in range(11))
"""The fine_stretch grid of the rounds' pick (runs/pick.py STRETCH)."""
METRICS = ("f1", "p1", "r3", "err")
NAMES = {"f1": "F1", "p1": "single-talker precision", "r3": "3-talker recall", "err": "mean error (°)"}


def as_shipped(params: dict, shipped: dict, fine_stretch: float | None = None) -> dict:
    """``params`` with the shipped decode section whole (its suppression in the region layout too)
    and ``fine_stretch`` (None: the shipped one), as the rounds built their candidates."""
    dec = dict(shipped["decode"])
    stretch = shipped["regions"].get("fine_stretch", 1.0) if fine_stretch is None else fine_stretch
    return {**params, "decode": dec,
            "regions": {**params["regions"], "min_separation_deg": dec["min_separation_deg"], "fine_stretch": stretch}}


def outputs(model_dir: str | Path, audio: np.ndarray, params: dict) -> np.ndarray:
    """The network's outputs on windows of its own length, with the symmetry ``params`` decodes with."""
    out, _ = model_outputs(model_dir, audio, default_weights(model_dir),
                           symmetry=symmetry_used(audio.shape[1], params))
    return out


def fit_stretch(out: np.ndarray, params: dict, data: dict) -> tuple[float, list[dict]]:
    """``train_tf.evaluate.fit_stretch`` on outputs already computed: the decode alone (no SRP
    refinement) at each stretch; the first with the lowest mean error wins."""
    rows = []
    for s in STRETCHES:
        dets, _, _ = decode_all(out, params, fine_stretch=s)
        scored = score_detections(dets, data["azimuth_deg"], data["distance_m"], 20.0)
        rows.append({"fine_stretch": s, **summarize(scored)})
    return min(rows, key=lambda r: r["err_mean"])["fine_stretch"], rows


def per_window(out: np.ndarray, params: dict, data: dict) -> list[dict]:
    """Scored rows per window, as train_tf.evaluate scores windows of the model's length."""
    dets, _, _ = decode_all(out, params)
    dets = srp_refine_all(dets, data["audio"], params)
    return score_detections(dets, data["azimuth_deg"], data["distance_m"], 20.0)


def columns(rows: list[dict]) -> tuple[np.ndarray, ...]:
    """Hits, talkers, estimates, summed hit error and hits with an error, per window."""
    return (np.array([r["tp"] for r in rows]), np.array([r["n_true"] for r in rows]),
            np.array([r["n_est"] for r in rows]), np.array([float(np.sum(r["err"])) for r in rows]),
            np.array([len(r["err"]) for r in rows]))


def stats(tp, nt, ne, es, en, ns) -> dict[str, float]:
    """F1 over all windows, single-talker precision, 3-talker recall, mean error of hits."""
    rec, pre = tp.sum() / nt.sum(), tp.sum() / max(ne.sum(), 1)
    one, three = ns == 1, ns == 3
    return {"f1": 2 * rec * pre / (rec + pre), "p1": tp[one].sum() / max(ne[one].sum(), 1),
            "r3": tp[three].sum() / nt[three].sum(), "err": es.sum() / en.sum()}


def bootstrap(a: tuple, b: tuple, ns: np.ndarray, resamples: int, seed: int) -> dict[str, dict]:
    """b - a, paired by window: the difference on the whole set and its 95 % interval."""
    rng = np.random.default_rng(seed)
    sa, sb = stats(*a, ns), stats(*b, ns)
    diffs = {k: [] for k in METRICS}
    n = len(ns)
    for _ in range(resamples):  # one draw a resample, in the order the rounds drew them
        i = rng.integers(0, n, n)
        x, y = stats(*(v[i] for v in a), ns[i]), stats(*(v[i] for v in b), ns[i])
        for k in diffs:
            diffs[k].append(y[k] - x[k])
    return {k: {"mean": float(sb[k] - sa[k]),
                "ci95": [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]} for k, v in diffs.items()}


def decide(diff: dict[str, dict]) -> dict:
    """The ship rule: F1 or mean error better beyond the interval, none of the four worse beyond it."""
    better = [m for m in ("f1",) if diff[m]["ci95"][0] > 0] + (["err"] if diff["err"]["ci95"][1] < 0 else [])
    worse = [m for m in ("f1", "p1", "r3") if diff[m]["ci95"][1] < 0] + (["err"] if diff["err"]["ci95"][0] > 0 else [])
    return {"better_beyond_interval": better, "worse_beyond_interval": worse, "ship": bool(better and not worse)}


def figures(rows: list[dict], ns: np.ndarray) -> dict[str, float]:
    """The choice table's five figures: F1 over 1-4 and 1-3 talkers, p1, r3, mean error."""
    s = stats(*columns(rows), ns)
    return {"f1": float(s["f1"]), "f1_1to3": summarize([r for r, k in zip(rows, ns) if 1 <= k <= 3])["f1"],
            "p1": float(s["p1"]), "r3": float(s["r3"]), "err": float(s["err"])}


def main(argv: list[str] | None = None) -> int:
    from train_tf.simulate import load_windows

    parser = argparse.ArgumentParser(prog="python -m benchmarks.board_choice", description=__doc__.splitlines()[0])
    parser.add_argument("board")
    parser.add_argument("candidate", help="model directory (params.json + weights)")
    parser.add_argument("--shipped", default=None, help="the model to beat (default: models/BOARD)")
    parser.add_argument("--data", default=None, help="window set (default: data/val2-BOARD)")
    parser.add_argument("--fit-on", default=None,
                        help="window set fine_stretch is fitted on (default: data/val2-BOARD)")
    parser.add_argument("--as-is", action="store_true", help="the candidate's params.json as it stands")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="write every figure here")
    args = parser.parse_args(argv)
    shipped_dir = args.shipped or f"models/{args.board}"
    data_dir = args.data or f"data/val2-{args.board}"
    fit_dir = args.fit_on or f"data/val2-{args.board}"
    shipped, cand = params_of(shipped_dir), params_of(args.candidate)
    for who, p in (("shipped", shipped), ("candidate", cand)):
        if p["array"]["name"] != args.board:
            raise SystemExit(f"the {who} model is for array {p['array']['name']}, not {args.board}")
    data = load_windows(data_dir)
    if data["audio"].shape[1] != int(cand["model"]["window_samples"]):
        raise SystemExit(f"{data_dir}: windows of {data['audio'].shape[1]} samples, the model takes "
                         f"{cand['model']['window_samples']}")
    ns = data["n_sources"].astype(int)
    res: dict = {"board": args.board, "candidate": str(args.candidate), "shipped": shipped_dir, "data": data_dir,
                 "windows": len(ns), "resamples": args.resamples, "seed": args.seed}
    if args.as_is:
        out_c = outputs(args.candidate, data["audio"], cand)
    else:
        k = as_shipped(cand, shipped)
        fit = data if Path(fit_dir).resolve() == Path(data_dir).resolve() else load_windows(fit_dir)
        out_fit = outputs(args.candidate, fit["audio"], k)
        stretch, fit_rows = fit_stretch(out_fit, k, fit)
        print(f"fine_stretch {stretch:g} (lowest mean error on {fit_dir})", file=sys.stderr)
        cand = as_shipped(cand, shipped, stretch)
        res["fit"] = {"on": fit_dir, "fine_stretch": stretch, "rows": fit_rows}
        out_c = out_fit if fit is data else outputs(args.candidate, data["audio"], cand)
    res["candidate_decode"] = {"threshold": cand["decode"]["threshold"],
                               "min_separation_deg": cand["regions"]["min_separation_deg"],
                               "fine_stretch": cand["regions"].get("fine_stretch", 1.0)}
    rows_new = per_window(out_c, cand, data)
    rows_old = per_window(outputs(shipped_dir, data["audio"], shipped), shipped, data)
    res["old"], res["new"] = figures(rows_old, ns), figures(rows_new, ns)
    res["diff_new_minus_old"] = bootstrap(columns(rows_old), columns(rows_new), ns, args.resamples, args.seed)
    res.update(decide(res["diff_new_minus_old"]))

    def five(f: dict) -> str:
        return f"{f['f1']:.3f} / {f['f1_1to3']:.3f} / {f['p1']:.3f} / {f['r3']:.3f} / {f['err']:.2f}°"

    d = res["diff_new_minus_old"]
    c = res["candidate_decode"]
    print(f"# {args.board}: {args.candidate} (threshold {c['threshold']:g}, fine_stretch {c['fine_stretch']:g}) "
          f"vs {shipped_dir} on {data_dir}, {len(ns)} windows")
    print("F1@20° over 1–4 talkers / F1 over 1–3 talkers / single-talker precision / 3-talker recall / mean error")
    print(f"old  {five(res['old'])}")
    print(f"new  {five(res['new'])}")
    print(f"\nPaired bootstrap, new − old, 95 % interval ({args.resamples} resamples, seed {args.seed}):\n")
    print("| " + " | ".join(NAMES[m] for m in METRICS) + " | rule |")
    print("| --- | --- | --- | --- | --- |")
    cells = [f"{d[m]['mean']:+.{2 if m == 'err' else 3}f} [{d[m]['ci95'][0]:+.{2 if m == 'err' else 3}f}, "
             f"{d[m]['ci95'][1]:+.{2 if m == 'err' else 3}f}]" for m in METRICS]
    print("| " + " | ".join(cells) + f" | {'ship' if res['ship'] else 'keep'} |")
    print(f"\nbetter beyond the interval: {', '.join(res['better_beyond_interval']) or 'nothing'}; "
          f"worse beyond it: {', '.join(res['worse_beyond_interval']) or 'nothing'} -> "
          f"{'ship' if res['ship'] else 'keep the shipped model'}"
          + ("" if Path(data_dir).resolve() == Path(f"data/val2-{args.board}").resolve()
             else f" (the rounds apply the rule on data/val2-{args.board}; here it is reported only)"))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
