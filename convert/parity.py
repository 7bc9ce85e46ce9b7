"""Parity of an int8 TFLite model with its float Keras model on a held-out simulated window set.

    python -m convert parity --model-dir models/uca8-r10 --tflite edge_msl/models/uca8-r10.tflite \\
        --data data/test-speech [--n 2000] [--out DIR] [--max-doa-loss-deg 0.5] [--max-f1-loss 0.01]

Both models see the same windows; the int8 model runs through ``edge_msl.runtime`` (the device's
loader and input scaling) on one thread. Reports DOA error and F1 of each (scored like
``train_tf.evaluate``), the per-output max/mean absolute difference, model sizes and per-window
latency. Prints a markdown table, writes ``parity.json`` and ``parity.md`` to ``--out``, and exits
1 if int8 loses more than the allowed DOA error or F1 against float.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("activity", "distance", "azimuth")


def int8_outputs(model: Any, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (N, n_regions, 3) of an ``edge_msl.runtime.Model`` and the seconds each window took
    (input scaling, quantization, invoke and dequantization included)."""
    out = np.empty((len(audio), model.info.layout.n_regions, 3), dtype=np.float32)
    seconds = np.empty(len(audio))
    model.outputs(audio[0])  # first call pays one-off setup (XNNPACK weight packing), not a window's cost
    for i in range(len(audio)):
        t0 = time.perf_counter()
        out[i] = model.outputs(audio[i])
        seconds[i] = time.perf_counter() - t0
    return out, seconds


def output_differences(y_float: np.ndarray, y_int8: np.ndarray) -> dict[str, dict[str, float]]:
    """Max and mean absolute difference per output column (normalized [0, 1] units)."""
    d = np.abs(y_float.astype(np.float64) - y_int8.astype(np.float64))
    return {name: {"max": float(d[..., k].max()), "mean": float(d[..., k].mean())} for k, name in enumerate(COLUMNS)}


def _loss(a: float, b: float) -> float:
    """a - b; 0 when both are undefined (nothing to compare), NaN (a failure) when only one is."""
    return 0.0 if math.isnan(a) and math.isnan(b) else a - b


def parity(model_dir: str | Path, tflite: str | Path, data_dir: str | Path, n: int | None = None,
           match_deg: float = 20.0, num_threads: int = 1) -> dict[str, Any]:
    """Compare the float and int8 models on the first ``n`` windows of ``data_dir``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from edge_msl.runtime import load_model
    from train_tf.model_dir import default_weights
    from train_tf.evaluate import decode_all, score_detections, summarize
    from train_tf.simulate import _read_meta, load_windows

    model_dir, tflite, data_dir = Path(model_dir), Path(tflite), Path(data_dir)
    meta = _read_meta(data_dir)
    params = json.loads((model_dir / "params.json").read_text())
    model = load_model(tflite, num_threads=num_threads)
    side = model.info.raw
    for what, name in (("Keras model", params["array"]["name"]), ("data", meta["settings"]["array"])):
        if name != model.info.array.name:
            raise SystemExit(f"{tflite} is for array {model.info.array.name} but the {what} is for {name}; "
                             f"compare a model with its own conversion and data")
    data = load_windows(data_dir)
    total = len(data["audio"])
    n = total if n is None else min(n, total)
    audio = data["audio"][:n]
    true_az, true_d, level = data["azimuth_deg"][:n], data["distance_m"][:n], data["level_db"][:n]

    from train_tf.evaluate import model_outputs

    weights = default_weights(model_dir)
    y_float, _ = model_outputs(model_dir, audio, weights, symmetry="none")  # network against network
    y_int8, seconds = int8_outputs(model, audio)

    summaries = {}
    active_sets = {}
    for name, y, p in (("float", y_float, params), ("int8", y_int8, side)):
        # each model decodes with its own recorded settings (the int8 one with what the device reads)
        dets, threshold, min_sep = decode_all(y, p)
        summaries[name] = {**summarize(score_detections(dets, true_az, true_d, match_deg, level)),
                           "threshold": threshold, "min_separation_deg": min_sep}
        active_sets[name] = y[..., 0] >= threshold
    same_regions = float(np.mean(np.all(active_sets["float"] == active_sets["int8"], axis=-1)))
    ms = seconds * 1e3
    weights_path = model_dir / weights
    return {
        "model_dir": str(model_dir), "weights": weights, "tflite": str(tflite), "data": str(data_dir),
        "n_windows": int(n), "match_deg": match_deg,
        "float": summaries["float"], "int8": summaries["int8"],
        "doa_loss_deg": _loss(summaries["int8"]["err_mean"], summaries["float"]["err_mean"]),
        "f1_loss": _loss(summaries["float"]["f1"], summaries["int8"]["f1"]),
        "same_active_regions": same_regions,
        "output_abs_diff": output_differences(y_float, y_int8),
        "size_bytes": {"tflite": tflite.stat().st_size,
                       "keras_weights": weights_path.stat().st_size if weights_path.exists() else None},
        "latency_ms": {"runtime": f"{model.runtime} {model.runtime_version}", "num_threads": num_threads,
                       "windows": int(n), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
                       "mean": float(ms.mean()), "window_s": model.info.window_s,
                       "includes": "normalize_window + int8 quantization + invoke + dequantization"},
        "macs_per_window": side.get("macs_per_window"),
    }


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(r: dict[str, Any]) -> str:
    """The report as markdown."""
    f, q = r["float"], r["int8"]
    lat, size = r["latency_ms"], r["size_bytes"]
    lines = [
        f"{r['n_windows']} windows of `{r['data']}`; hit = Hungarian match within {r['match_deg']:g}°; "
        f"threshold {q['threshold']:g}, duplicates within {q['min_separation_deg']:g}° suppressed.", "",
        "| metric | float (Keras) | int8 (TFLite) | int8 − float |", "| --- | ---: | ---: | ---: |",
        f"| DOA error of hits, mean (°) | {_f(f['err_mean'], '.2f')} | {_f(q['err_mean'], '.2f')} | "
        f"{_f(r['doa_loss_deg'], '+.2f')} |",
        f"| DOA error of hits, median (°) | {_f(f['err_median'], '.2f')} | {_f(q['err_median'], '.2f')} | "
        f"{_f(q['err_median'] - f['err_median'], '+.2f')} |",
        f"| F1@{r['match_deg']:g}° | {_f(f['f1'], '.4f')} | {_f(q['f1'], '.4f')} | {_f(-r['f1_loss'], '+.4f')} |",
        f"| recall | {_f(f['recall'], '.4f')} | {_f(q['recall'], '.4f')} | {_f(q['recall'] - f['recall'], '+.4f')} |",
        f"| precision | {_f(f['precision'], '.4f')} | {_f(q['precision'], '.4f')} | "
        f"{_f(q['precision'] - f['precision'], '+.4f')} |",
        f"| distance error of hits, mean (m) | {_f(f['dist_err_mean'], '.3f')} | {_f(q['dist_err_mean'], '.3f')} | "
        f"{_f(q['dist_err_mean'] - f['dist_err_mean'], '+.3f')} |",
        f"| size | {_f(size['keras_weights'] and size['keras_weights'] / 1e6, '.2f')} MB (weights .h5) | "
        f"{size['tflite'] / 1e6:.2f} MB | |",
        "", "| output (normalized units) | max abs diff | mean abs diff |", "| --- | ---: | ---: |",
    ]
    for name, d in r["output_abs_diff"].items():
        lines.append(f"| {name} | {d['max']:.4f} | {d['mean']:.5f} |")
    lines += ["", f"Windows whose set of active regions is identical: {r['same_active_regions'] * 100:.2f} %.",
              f"int8 latency per {lat['window_s']:g} s window ({lat['runtime']}, {lat['num_threads']} thread, "
              f"{lat['windows']} windows, {lat['includes']}): median {lat['median']:.2f} ms, "
              f"p95 {lat['p95']:.2f} ms."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert parity", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="Keras model directory (params.json + weights)")
    parser.add_argument("--tflite", required=True, help="the int8 model (its .json sidecar next to it)")
    parser.add_argument("--data", required=True, help="held-out window set (train_tf.simulate windows)")
    parser.add_argument("--n", type=int, default=None, help="use the first N windows (default: all)")
    parser.add_argument("--out", default=None, help="directory for parity.json and parity.md")
    parser.add_argument("--match-deg", type=float, default=20.0, help="hit radius for F1 (default 20)")
    parser.add_argument("--max-doa-loss-deg", type=float, default=0.5,
                        help="fail if int8's mean DOA error exceeds float's by more (default 0.5)")
    parser.add_argument("--max-f1-loss", type=float, default=0.01,
                        help="fail if int8's F1 is lower than float's by more (default 0.01)")
    parser.add_argument("--threads", type=int, default=1, help="TFLite threads for the int8 model (default 1)")
    args = parser.parse_args(argv)
    for path, what in ((Path(args.model_dir) / "params.json", "--model-dir"), (Path(args.tflite), "--tflite"),
                       (Path(args.data) / "meta.json", "--data")):
        if not path.exists():
            raise SystemExit(f"{path} not found: check {what}")
    if args.n is not None and args.n < 1:
        raise SystemExit(f"--n must be at least 1, got {args.n}")
    from edge_msl.runtime import ModelError

    try:
        r = parity(args.model_dir, args.tflite, args.data, args.n, args.match_deg, args.threads)
    except ModelError as exc:
        raise SystemExit(str(exc)) from None
    r["limits"] = {"max_doa_loss_deg": args.max_doa_loss_deg, "max_f1_loss": args.max_f1_loss}
    failures = []
    if not r["doa_loss_deg"] <= args.max_doa_loss_deg:
        failures.append(f"int8 loses {r['doa_loss_deg']:.2f}° of mean DOA error against float "
                        f"(allowed {args.max_doa_loss_deg:g}°)")
    if not r["f1_loss"] <= args.max_f1_loss:
        failures.append(f"int8 loses {r['f1_loss']:.4f} of F1 against float (allowed {args.max_f1_loss:g})")
    r["passed"] = not failures
    md = table(r)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "parity.json").write_text(json.dumps(r, indent=2))
        (out / "parity.md").write_text(md)
        print(f"wrote {out}/parity.json and parity.md", file=sys.stderr)
    if failures:
        print("parity FAILED: " + "; ".join(failures) + "; recalibrate (more --calib-windows) or keep the float "
              "model", file=sys.stderr)
        return 1
    print("parity passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
