"""Elevation (edge_msl.refine: SRP-PHAT on a grid of elevations around each track's azimuth) on held-out
simulated scenes, per array: error of ``elevation_deg`` against the talker's angle above or below the
array plane (a planar array reports its magnitude), per band of true elevation.

Scenes as benchmarks/separation_bench.py (2-3 talkers talking over each other, RT60 0.2-0.6 s, 0.8-3 m,
0-60 deg above or below the plane, the test bank's voices). The whole pipeline runs on each scene with
the array's packaged model; each message's track nearest a talker in azimuth (within 20 deg) is scored,
from 1.5 s into the scene (the track's responses accumulated over a second).

    .venv/bin/python -m benchmarks.elevation_bench                  # uca8-r10 and every board
    .venv/bin/python -m benchmarks.elevation_bench --arrays uca8-r10 --scenes 24

Prints a markdown table: mean absolute error, its 95% interval (bootstrap over scenes), median and
90th percentile, in degrees.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.separation_bench import BANK, FS, MATCH_DEG, REPO, render_scene

BANDS = ((0.0, 20.0), (20.0, 40.0), (40.0, 60.0))
SKIP_S = 1.5


def scene_errors(scene, model) -> list[tuple[float, float]]:
    """(true |elevation|, absolute error) per scored message and talker."""
    from edge_msl.arrays import get_array
    from edge_msl.pipeline import Pipeline

    arr = get_array(scene.array)
    pipe = Pipeline(model)
    frames = np.zeros((len(scene.audio), arr.n_channels), dtype=np.float32)
    frames[:, list(arr.channel_map)] = scene.audio
    out = []
    for m in pipe.push(frames):
        if m["t_s"] < SKIP_S:
            continue
        for k, az in enumerate(scene.azimuth_deg):
            near = [s for s in m["sources"] if abs((s["azimuth_deg"] - az + 180) % 360 - 180) <= MATCH_DEG]
            if near and near[0]["elevation_deg"] is not None:
                s = min(near, key=lambda s: abs((s["azimuth_deg"] - az + 180) % 360 - 180))
                true = abs(float(scene.elevation_deg[k]))
                out.append((true, abs(s["elevation_deg"] - true)))
    return out


def main(argv: list[str] | None = None) -> int:
    from edge_msl.arrays import list_arrays
    from edge_msl.runtime import load_model
    from train_tf.signals import DryBank

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arrays", default=",".join(["uca8-r10"] + [a for a in list_arrays() if a != "uca8-r10"]))
    ap.add_argument("--scenes", type=int, default=12, help="scenes for uca8-r10 (boards: half as many)")
    ap.add_argument("--seed", type=int, default=34000, help="first scene seed (held-out: 34000+)")
    ap.add_argument("--duration-s", type=float, default=4.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    bank = DryBank.load(BANK)
    rng = np.random.default_rng(0)
    print("| array | true elevation (deg) | talker-windows | scenes | mean abs error (95% CI) | median | p90 |")
    print("|---|---|---|---|---|---|---|")
    dump = {}
    for name in args.arrays.split(","):
        model = load_model(str(REPO / "edge_msl" / "models" / f"{name}.tflite"))
        n = args.scenes if name == "uca8-r10" else max(2, args.scenes // 2)
        per_scene = []
        for i in range(n):
            sc = render_scene(bank, name, args.seed + i, 2 + i % 2, (0.2, 0.6), args.duration_s)
            per_scene.append(scene_errors(sc, model))
            print(f"{name} scene {args.seed + i}: {len(per_scene[-1])} talker-windows", file=sys.stderr)
        dump[name] = per_scene
        for lo, hi in BANDS + ((20.0, 60.0), (0.0, 60.0)):
            sel = [[e for t, e in s if lo <= t < hi + (hi == 60.0)] for s in per_scene]
            flat = np.array([e for s in sel for e in s])
            if not len(flat):
                continue
            # scenes are the independent units: resample them, not windows
            boot = []
            idx = [i for i, s in enumerate(sel) if s]
            for _ in range(1000):
                pick = rng.choice(idx, size=len(idx))
                boot.append(np.mean(np.concatenate([sel[j] for j in pick])))
            lo_ci, hi_ci = np.percentile(boot, [2.5, 97.5])
            print(f"| {name} | {lo:g}-{hi:g} | {len(flat)} | {len(idx)} | {flat.mean():.1f} ({lo_ci:.1f}-{hi_ci:.1f}) "
                  f"| {np.median(flat):.1f} | {np.percentile(flat, 90):.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dump))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
