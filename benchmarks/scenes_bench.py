"""Benchmark of the decode on dynamic scenes: talkers who take turns, pause, overlap and walk.

Scores what users get (``edge_msl.truth.score_parts``): per window F1 / recall / precision within
20 degrees, error on all and on moving talkers, duplicates; per turn pick-up, linger beyond the
window and id switches. Scenes come from ``python -m train_tf.scenes`` (see docs/decode.md).

    .venv/bin/python -m benchmarks.scenes_bench data/scenes/test-turns data/scenes/test-walk \
        --variants shipped,previous,no-track --previous /tmp/prev --png docs/figures/decode-turns.png

``shipped`` is the decode of the model's sidecar as ``edge-msl locate`` runs it (the real
``Pipeline`` on the WAV, int8 model); ``previous`` is the decode before the temporal one (1 s
pooling + tracker); ``sweep`` tries settings around the shipped ones (use validation scenes for
choices, test scenes only to report). The network's per-window outputs are cached next to the
scenes (``.cache-<model sha>.npz``) so that sweeps do not re-run the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_msl.audio_io import open_audio
from edge_msl.pipeline import Pipeline
from edge_msl.runtime import load_model
from edge_msl.temporal import DecodeSettings, TemporalDecoder
from edge_msl.truth import load_truth, score_parts, summarize

HOP_S = 0.1


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with open_audio(path) as r:
        return np.concatenate(list(r.blocks(16000))), r.info.sample_rate_hz


def scenes(dirs: list[str]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        found = sorted(Path(d).glob("*.truth.json"))
        if not found:
            raise SystemExit(f"{d}: no scenes (*.truth.json); make them with python -m train_tf.scenes")
        out += [Path(str(p)[:-len(".truth.json")]) for p in found]
    return out


def to_capture(pcm: np.ndarray, array) -> np.ndarray:
    """A scene's microphone channels placed as the board delivers them (all capture channels, the
    unused and loopback ones silent)."""
    if pcm.shape[1] == array.n_channels:
        return pcm
    frames = np.zeros((len(pcm), array.n_channels), dtype=pcm.dtype)
    frames[:, list(array.channel_map)] = pcm
    return frames


def run_pipeline(model, stem: Path, **kw: Any) -> list[dict]:
    """The real streaming pipeline on the scene's WAV, as ``edge-msl locate`` runs it."""
    pcm, fs = read_wav(stem.with_suffix(".wav"))
    pcm = to_capture(pcm, model.info.array)
    pipe = Pipeline(model, hop_s=HOP_S, input_rate_hz=fs, **kw)
    msgs = []
    for i in range(0, len(pcm), 1600):
        msgs += pipe.push(pcm[i:i + 1600])
    return msgs


def run_locate(tree: str, stem: Path) -> list[dict]:
    """``edge-msl locate`` of another checkout (``tree``) on the scene's WAV, default settings."""
    import os
    import subprocess

    p = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(stem.with_suffix(".wav").resolve())],
                       cwd=tree, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=tree))
    if p.returncode != 0:
        raise SystemExit(f"locate in {tree} failed: {p.stderr.strip()[-300:]}")
    return [json.loads(line) for line in p.stdout.splitlines()]


def cached_outputs(model, stem: Path) -> dict[str, np.ndarray]:
    """Per window (hop 0.1 s): end time, outputs as the window is, on the pipeline's cycled
    image and (a model with a temporal head) through the head, and the SRP cross-spectrum of the window (for the
    refinement)."""
    cache = stem.parent / f".cache-{model.info.sha256[:12]}-{stem.name}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return dict(z)
    pipe = Pipeline(model, hop_s=HOP_S, track=False)
    pcm, fs = read_wav(stem.with_suffix(".wav"))
    x = pipe.array.select_channels(to_capture(pcm, pipe.array)).astype(np.float32) / 32768.0
    from edge_msl.refine import SrpRefiner, hop_segments
    from edge_msl.symmetry import model_cycle

    info = model.info
    cycle = model_cycle(info.array.positions(), info.layout)
    refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine or {"fmax_hz": 8000})
    head = model.temporal_head()
    t, plain, cyc, cross, hops, headed = [], [], [], [], [], []
    for k, (end, win) in enumerate(pipe.windower.push(x)):
        t.append(end / fs)
        plain.append(model.outputs(win))
        if head is not None:
            headed.append(head.step(model.embedding()))
        img = cycle[k % len(cycle)]
        cyc.append(img.restore(model.outputs(img.permute(win))))
        pieces = [refiner.cross(p) for p in hop_segments(win, pipe.hop_samples)]
        cross.append(np.mean(pieces, axis=0))
        hops.append(pieces[-1])
    out = {"t_s": np.array(t), "plain": np.array(plain), "cycle": np.array(cyc),
           "cross": np.array(cross).astype(np.complex64), "hop_cross": np.array(hops).astype(np.complex64)}
    if head is not None:
        out["head"] = np.array(headed)
    np.savez(cache, **out)
    return out


def decode_cached(model, c: dict[str, np.ndarray], settings: DecodeSettings, images: str = "plain",
                  refine: bool = True) -> list[dict]:
    """The temporal decode on cached outputs: what ``Pipeline`` does with these settings."""
    from edge_msl.pipeline import message, newest_peak
    from edge_msl.refine import SrpRefiner

    info = model.info
    dec = TemporalDecoder(info.layout, settings)
    refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine) \
        if refine and info.srp_refine else None
    msgs = []
    for k, t in enumerate(c["t_s"]):
        fn = peak = None
        if refiner is not None:  # as edge_msl.pipeline.decode_window does with the audio
            fn = lambda d, k=k: refiner.refine(d, c["cross"][k])  # noqa: E731
            # the pipeline's newest hops: this window's last now_hops
            peak = newest_peak(refiner, c["hop_cross"][max(0, k + 1 - settings.now_hops):k + 1])
        msgs.append(message(float(t), dec.update(c[images][k], float(t), fn, peak)))
    return msgs


def score_set(stems: list[Path], runner: Callable[[Path], list[dict]], window_s: float) -> dict[str, Any]:
    parts = []
    for stem in stems:
        truth, _ = load_truth(stem.with_suffix(".truth.json"))
        parts.append(score_parts(runner(stem), truth, window_s))
    return summarize(parts)


COLS = [("f1", "F1"), ("recall", "recall"), ("precision", "precision"), ("doa_error_mean_deg", "error°"),
        ("doa_error_moving_deg", "error moving°"), ("duplicates", "dupl."), ("pickup_mean_s", "pick-up s"),
        ("pickup_p90_s", "pick-up p90"), ("linger_mean_s", "linger s"), ("linger_p90_s", "linger p90"),
        ("id_switches_per_turn", "id sw./turn"), ("turns_missed", "turns missed")]


def table(rows: list[dict]) -> str:
    head = "| set | decode | " + " | ".join(h for _, h in COLS) + " |"
    lines = [head, "| --- | --- | " + " | ".join("---:" for _ in COLS) + " |"]
    for r in rows:
        cells = ["" if r.get(k) is None else (f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]))
                 for k, _ in COLS]
        lines.append(f"| {r['set']} | {r['decode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_variants(base: DecodeSettings) -> dict[str, DecodeSettings]:
    r = dataclasses.replace
    return {
        "shipped": base,
        "keep 0.2": r(base, keep_threshold=0.2), "keep 0.3": r(base, keep_threshold=0.3),
        "keep 0.35": r(base, keep_threshold=0.35),
        "birth 0.4": r(base, birth_threshold=0.4), "birth 0.6": r(base, birth_threshold=0.6),
        "miss 0": r(base, miss_windows=0), "miss 2": r(base, miss_windows=2),
        "confirm conf 0.6": r(base, confirm_confidence=0.6), "confirm conf 0.8": r(base, confirm_confidence=0.8),
        "confirm 1 of 1": r(base, confirm_hits=1, confirm_windows=1),
        "lead 0": r(base, lead_s=0.0), "lead 0.15": r(base, lead_s=0.15),
        "turn rate 50": r(base, turn_rate_deg_s2=50.0), "turn rate 400": r(base, turn_rate_deg_s2=400.0),
        "noise 2": r(base, azimuth_noise_deg=2.0), "noise 5": r(base, azimuth_noise_deg=5.0),
        "gate 20": r(base, gate_deg=20.0), "gate 35": r(base, gate_deg=35.0),
    }


SPEED_BANDS = ((5.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, 1e9))


def speed_bands(model, stems: list[Path], settings: DecodeSettings, images: str) -> str:
    """Error on moving talkers by angular speed: the shipped decode against the direction at
    ``t_s``, and each window alone (model threshold, refined) against the window's centre and end."""
    from edge_msl.refine import SrpRefiner
    from edge_msl.regions import decode
    from edge_msl.truth import _hits, present

    info = model.info
    ref = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine or {"fmax_hz": 8000})
    errs: dict = {b: {"shipped": [], "centre": [], "end": []} for b in SPEED_BANDS}
    for stem in stems:
        c = cached_outputs(model, stem)
        truth, _ = load_truth(stem.with_suffix(".truth.json"))
        for k, m in enumerate(decode_cached(model, c, settings, images)):
            t = m["t_s"]
            req = present(truth, t, info.window_s)
            raw = [d.azimuth_deg for d in ref.refine(decode(info.layout, c["plain"][k], info.threshold), c["cross"][k])]
            for key, az, lag in (("shipped", [x["azimuth_deg"] for x in m["sources"]], 0.0),
                                 ("centre", raw, info.window_s / 2), ("end", raw, 0.0)):
                for _, j, e in _hits(az, [truth[q].azimuth_at(t - lag) for q in req], 20.0):
                    speed = truth[req[j]].speed_deg_s(t)
                    for lo, hi in SPEED_BANDS:
                        if lo <= speed < hi:
                            errs[(lo, hi)][key].append(e)
    lines = ["| azimuth speed | hits | shipped, at t_s (°) | each window alone, at its centre (°) | "
             "each window alone, at t_s (°) |", "| --- | ---: | ---: | ---: | ---: |"]
    for (lo, hi), e in errs.items():
        name = f"{lo:g}-{hi:g} °/s" if hi < 1e9 else f">= {lo:g} °/s"
        lines.append(f"| {name} | {len(e['shipped'])} | " + " | ".join(
            f"{np.mean(e[k]):.2f}" if e[k] else "" for k in ("shipped", "centre", "end")) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="scene directories (each one table row per decode)")
    parser.add_argument("--model", help="model .tflite (default: the packaged one for --array)")
    parser.add_argument("--array", help="built-in array (default: uca8-r10); scenes must be of that array")
    parser.add_argument("--variants", default="shipped,previous",
                        help="comma list: shipped, previous (1 s pooling + tracker), no-track (each window "
                             "alone), sweep, images (plain vs cycled), refine (with vs without SRP), speed (error "
                             "on moving talkers by angular speed)")
    parser.add_argument("--previous", help="a checkout of the commit before the temporal decode (a646a83): its "
                        "`edge-msl locate` gives the 'previous' rows")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--png", help="plot azimuth vs time of one scene of the first set (truth, output)")
    parser.add_argument("--plot-scene", default="scene-001", help="which scene --png draws (default scene-001)")
    args = parser.parse_args(argv)
    from edge_msl.arrays import get_array

    model = load_model(args.model, array=get_array(args.array) if args.array else None)
    info = model.info
    base = DecodeSettings.from_dict(info.raw.get("decode", {}).get("temporal", {}))
    images = "head" if model.has_temporal_head else "cycle" if info.symmetry == "cycle" else "plain"
    rows = []
    wanted = args.variants.split(",")
    t0 = time.perf_counter()
    for d in args.sets:
        stems = scenes([d])
        cached = {stem: cached_outputs(model, stem) for stem in stems}
        runners: dict[str, Callable[[Path], list[dict]]] = {}
        if "shipped" in wanted:
            runners["shipped (locate)"] = lambda stem: run_pipeline(model, stem)
        if "previous" in wanted:
            if not args.previous:
                raise SystemExit("--variants previous needs --previous DIR: git worktree add DIR a646a83")
            runners["previous: 1 s pooling + tracker"] = lambda stem: run_locate(args.previous, stem)
        if "no-track" in wanted:
            runners["each window alone, no tracking"] = lambda stem: run_pipeline(model, stem, track=False)
        if "sweep" in wanted:
            for name, st in sweep_variants(base).items():
                runners[f"temporal: {name}"] = lambda stem, st=st: decode_cached(model, cached[stem], st, images)
        if "images" in wanted:
            for im in ("plain", "cycle"):
                runners[f"temporal, {im} images"] = lambda stem, im=im: decode_cached(model, cached[stem], base, im)
        if "refine" in wanted:
            for ref in (True, False):
                runners[f"temporal, SRP refine {'on' if ref else 'off'}"] = \
                    lambda stem, ref=ref: decode_cached(model, cached[stem], base, images, ref)
        if "speed" in wanted:
            print(f"## {Path(d).name}: error on moving talkers by angular speed\n\n"
                  f"{speed_bands(model, stems, base, images)}\n")
        for name, fn in runners.items():
            row = {"set": Path(d).name, "decode": name, **score_set(stems, fn, info.window_s)}
            rows.append(row)
            print(f"{row['set']:>12} | {name:<40} F1 {row['f1']} P {row['precision']} R {row['recall']} "
                  f"err {row['doa_error_mean_deg']} mov {row['doa_error_moving_deg']} linger "
                  f"{row['linger_mean_s']}/{row['linger_p90_s']} pick {row['pickup_mean_s']}/{row['pickup_p90_s']} "
                  f"sw {row['id_switches_per_turn']}", file=sys.stderr)
    print(f"# decode on dynamic scenes ({len(rows)} rows, {time.perf_counter() - t0:.0f} s)\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.png:
        plot_scene(model, Path(args.sets[0]) / args.plot_scene, args.png)
    return 0


def plot_scene(model, stem: Path, png: str) -> None:
    """Azimuth vs time of one scene: the truth (voiced parts) and what ``locate`` lists."""
    from edge_msl.truth import plot

    truth, _ = load_truth(stem.with_suffix(".truth.json"))
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    plot(run_pipeline(model, stem), png, truth, title=f"{stem.parent.name}/{stem.name}: truth (grey) and output")


if __name__ == "__main__":
    sys.exit(main())
