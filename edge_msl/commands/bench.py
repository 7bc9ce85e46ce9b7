"""Measure the installed model's per-window latency on this machine (the figure that decides the hop).

Runs the int8 model through the same runtime and input path as ``locate`` and the daemon
(input scaling + int8 quantization + invoke + dequantization) on int16 noise windows (an int8
CNN's latency does not depend on the signal) and prints one table row per thread count:
median and p95 milliseconds per window, and the share of one core the daemon needs at ``--hop-s``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ..arrays import ArrayConfigError, get_array
from ..runtime import ModelError, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl bench``."""
    parser.add_argument("--model", default=None, help="a .tflite with its .json sidecar (default: the packaged one)")
    parser.add_argument("--array", default=None, help="built-in array whose packaged model to use (default uca8-r10)")
    parser.add_argument("--threads", default="1", help="comma list of num_threads values (default 1)")
    parser.add_argument("--windows", type=int, default=200, help="windows per row (default 200)")
    parser.add_argument("--hop-s", type=float, default=0.1, help="hop for the CPU-share column (default 0.1)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def measure(model, windows: np.ndarray) -> dict[str, float]:
    """Median and p95 milliseconds of ``model.outputs`` and of its input quantization alone."""
    model.outputs(windows[0])  # one-off setup (weight packing) is not a window's cost
    full, scaling = np.empty(len(windows)), np.empty(len(windows))
    for i, w in enumerate(windows):
        t0 = time.perf_counter()
        model.quantize(w)
        t1 = time.perf_counter()
        model.outputs(w)
        t2 = time.perf_counter()
        scaling[i], full[i] = t1 - t0, t2 - t1
    full, scaling = full * 1e3, scaling * 1e3
    return {"median_ms": float(np.median(full)), "p95_ms": float(np.percentile(full, 95)),
            "scaling_median_ms": float(np.median(scaling)), "scaling_p95_ms": float(np.percentile(scaling, 95))}


def main(args: argparse.Namespace) -> int:
    """Print the latency table (stdout)."""
    try:
        threads = [int(t) for t in args.threads.split(",")]
        if not threads or min(threads) < 1 or args.windows < 2 or args.hop_s <= 0:
            raise ValueError
    except ValueError:
        print("edge-msl bench: --threads takes positive integers like 1,2; --windows >= 2; --hop-s > 0",
              file=sys.stderr)
        return 2
    try:
        array = get_array(args.array) if args.array else None
        rows = []
        for n in threads:
            model = load_model(args.model, array=array, num_threads=n)
            shape = (args.windows, model.info.window_samples, model.info.array.n_mics)
            windows = (np.random.default_rng(0).standard_normal(shape) * 1000).astype(np.int16)
            rows.append((model, n, measure(model, windows)))
    except (ModelError, ArrayConfigError) as exc:
        print(f"edge-msl bench: {exc}", file=sys.stderr)
        return 2
    for model, n, r in rows:
        r.update({"runtime": f"{model.runtime} {model.runtime_version}", "threads": n,
                  "cpu_share_at_hop": r["median_ms"] / 1e3 / args.hop_s, "model": str(model.info.path)})
    if args.json:
        for _, _, r in rows:
            print(json.dumps(r))
        return 0
    info = rows[0][0].info
    print(f"model {info.path.name}: {info.array.name}, {(info.raw.get('macs_per_window') or 0) / 1e6:.1f} M MACs, "
          f"window {info.window_s:g} s; {args.windows} windows per row; hop {args.hop_s:g} s")
    print(f"{'runtime':28s} {'threads':>7s} {'median_ms':>9s} {'p95_ms':>7s} {'core_at_hop':>11s}")
    for _, n, r in rows:
        print(f"{r['runtime']:28s} {n:7d} {r['median_ms']:9.2f} {r['p95_ms']:7.2f} {r['cpu_share_at_hop']:10.1%}")
    return 0
