"""Evaluate a trained model on a held-out simulated window set, against pyroomacoustics' DOA baselines.

The command line of ``python -m train_tf.evaluate`` (what it reports: the package's docstring); it
must not hold evaluation logic.
"""

from __future__ import annotations

import argparse
import os
import sys

from edge_msl.regions import RegionConfigError, RegionLayout
from train_tf.model_dir import default_weights
from train_tf.evaluate.baselines import BASELINES
from train_tf.evaluate.report import tables
from train_tf.evaluate.run import evaluate, fit_stretch, sweep

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
