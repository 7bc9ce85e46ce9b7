"""Per-window latency of an int8 model through edge_msl.runtime, with whatever TFLite runtime is installed.

    python -m benchmarks.runtime_bench [--model PATH] [--threads 1,2,4] [--windows 300]

Prints a markdown table (stdout): runtime, threads, median / p95 milliseconds per window for the
whole ``Model.outputs`` call (input scaling + int8 quantization + invoke + dequantization) and for
the scaling + quantization alone, and how many times faster than real time that is (window
length / median). Input is int16 noise (an int8 CNN's latency does not depend on the signal).
Needs only numpy and a runtime, so it runs in a bare device venv (e.g. tflite-runtime, numpy<2).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np

from edge_msl.commands.bench import measure
from edge_msl.runtime import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .tflite with its .json (default: the packaged uca8-r10)")
    parser.add_argument("--threads", default="1", help="comma list of num_threads values (default 1)")
    parser.add_argument("--windows", type=int, default=300, help="windows per setting (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for n in threads:
        model = load_model(args.model, num_threads=n)
        shape = (args.windows, model.info.window_samples, model.info.array.n_mics)
        windows = (np.random.default_rng(args.seed).standard_normal(shape) * 1000).astype(np.int16)
        rows.append((model, n, measure(model, windows)))
    model = rows[0][0]
    print(f"model `{model.info.path.name}` ({model.info.path.stat().st_size / 1e6:.2f} MB, "
          f"{(model.info.raw.get('macs_per_window') or 0) / 1e6:.1f} M MACs/window, window {model.info.window_s:g} s); "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"{args.windows} windows per row")
    print()
    print("| runtime | threads | per window median (ms) | p95 (ms) | scaling + quantization median (ms) | "
          "× real time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for m, n, r in rows:
        print(f"| {m.runtime} {m.runtime_version} | {n} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | "
              f"{r['scaling_median_ms']:.2f} | {m.info.window_s * 1e3 / r['median_ms']:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
