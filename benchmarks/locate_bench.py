"""Benchmark of ``edge-msl locate``: whole-process CPU per second of audio on one core, start-up to
the first line and peak RSS on a 60 s 8-channel file; and tracking on simulated turn-taking scenes
(id switches per talker turn, pick-up latency of a talker who starts while another talks).

    .venv/bin/python benchmarks/locate_bench.py --bank data/dry/bank-test.npz --png out/locate_bench.png

Needs edge-msl[train] (scenes come from edge_msl/examples/make_example.py), /usr/bin/time and
taskset. Prints tables on stdout; timings are medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_msl.audio_io import open_audio, write_wav  # noqa: E402
from edge_msl.examples import make_example  # noqa: E402  (a namespace package: the generator script)
from edge_msl.pipeline import Pipeline, message  # noqa: E402
from edge_msl.runtime import load_model  # noqa: E402
from edge_msl.tracking import Tracker, TrackerSettings  # noqa: E402
from edge_msl.truth import TrueSource, score  # noqa: E402

TARGETS = {"cpu_s_per_audio_s": 0.05, "startup_s": 1.5, "rss_mb": 120.0, "id_switches_per_turn": 0.1,
           "pickup_second_s": 0.3}
EXAMPLE = REPO / "edge_msl" / "examples" / f"{make_example.EXAMPLE_NAME}.wav"


# --------------------------------------------------------------------------- process costs

def _locate_cmd(wav: Path, extra: list[str]) -> list[str]:
    return ["taskset", "-c", "0", sys.executable, "-m", "edge_msl", "locate", str(wav), *extra]


def run_timed(wav: Path, extra: list[str]) -> dict[str, float]:
    """One run under /usr/bin/time -v: user+sys CPU seconds, peak RSS, lines printed."""
    cmd = ["/usr/bin/time", "-v", *_locate_cmd(wav, extra)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if p.returncode != 0:
        raise SystemExit(f"locate failed: {p.stderr.strip().splitlines()[-1]}")
    err = p.stderr

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.:]+)", err)
        if not m:
            raise SystemExit(f"/usr/bin/time printed no {name!r}")
        return float(m.group(1))

    return {"cpu_s": field("User time (seconds)") + field("System time (seconds)"),
            "rss_mb": field("Maximum resident set size (kbytes)") / 1024.0,
            "lines": float(len(p.stdout.splitlines()))}


def first_line_s(wav: Path) -> float:
    """Wall time from spawning ``edge-msl locate`` to reading its first JSON line."""
    t0 = time.perf_counter()
    p = subprocess.Popen(_locate_cmd(wav, []), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    line = p.stdout.readline()
    dt = time.perf_counter() - t0
    p.kill()
    p.wait()
    p.stdout.close()
    if not line:
        raise SystemExit("locate printed nothing")
    return dt


def tile_example(seconds: float, out: Path, rate_hz: int = 16000) -> Path:
    """The bundled example repeated to ``seconds`` (resampled with scipy for other rates)."""
    with open_audio(EXAMPLE) as r:
        x = np.concatenate(list(r.blocks(16000)))
    n = int(seconds * 16000)
    y = np.concatenate([x] * (n // len(x) + 1))[:n]
    if rate_hz != 16000:
        from scipy.signal import resample_poly

        g = np.gcd(rate_hz, 16000)
        y = np.clip(np.round(resample_poly(y.astype(np.float64), rate_hz // g, 16000 // g, axis=0)), -32768,
                    32767).astype(np.int16)
    write_wav(out, y, rate_hz)
    return out


def process_bench(tmp: Path, repeat: int) -> list[dict]:
    rows = []
    files = {
        "60 s, 16 kHz": (tile_example(60.0, tmp / "long16.wav"), 60.0, []),
        "60 s, 48 kHz (resampled)": (tile_example(60.0, tmp / "long48.wav", 48000), 60.0, []),
        "60 s, 16 kHz, --no-track": (tmp / "long16.wav", 60.0, ["--no-track"]),
        "0.5 s (start-up only)": (tile_example(0.5, tmp / "short.wav"), 0.5, []),
    }
    for name, (wav, seconds, extra) in files.items():
        runs = [run_timed(wav, extra) for _ in range(repeat)]
        cpu = statistics.median(r["cpu_s"] for r in runs)
        rows.append({"file": name, "cpu_s": cpu, "cpu_s_per_audio_s": cpu / seconds,
                     "rss_mb": max(r["rss_mb"] for r in runs), "lines": runs[0]["lines"]})
    fixed = rows[3]["cpu_s"]
    for r in rows[:3]:
        r["steady_cpu_s_per_audio_s"] = (r["cpu_s"] - fixed) / (60.0 - 0.5)
    startup = statistics.median(first_line_s(tmp / "long16.wav") for _ in range(repeat))
    rows.append({"file": "start-up to first line (60 s, 16 kHz)", "startup_s": startup})
    return rows


# --------------------------------------------------------------------------- tracking

@dataclasses.dataclass
class Scene:
    seed: int
    truth: list[TrueSource]
    detections: list[tuple[float, list]]  # (t_s, detections of the window)
    raw_truth: dict


SCENE = {"min_separation_deg": 25.0, "rt60_s": (0.3, 0.8), "snr_diffuse_db": 15.0, "pause_s": (0.1, 0.5)}
"""Harder than the bundled example: talkers 25 deg apart, reverberant rooms, pauses inside turns."""


def make_scenes(bank_path: str, n: int, duration_s: float, model) -> list[Scene]:
    from train_tf.signals import DryBank

    bank = DryBank.load(bank_path)
    scenes = []
    for k in range(n):
        seed = 5000 + k
        rng = np.random.default_rng(seed)
        n_talkers = 2 + k % 2
        schedule = make_example.random_schedule(n_talkers, duration_s, rng)
        pcm, truth = make_example.render_scene(bank, schedule, duration_s, seed, **SCENE)
        p = Pipeline(model, track=False)
        dets = []
        for end, win in p.windower.push(p.array.select_channels(pcm).astype(np.float32) / 32768.0):
            dets.append((end / p.sample_rate_hz, p.detections(win)))  # the model's decode, pooling included
        ts = [TrueSource(s["name"], s["azimuth_deg"], s["distance_m"], tuple(tuple(a) for a in s["active_s"]))
              for s in truth["sources"]]
        scenes.append(Scene(seed, ts, dets, truth))
    return scenes


def track_scene(scene: Scene, settings: TrackerSettings | None) -> list[dict]:
    if settings is None:
        return [message(t, d) for t, d in scene.detections]
    tr = Tracker(settings)
    return [message(t, tr.update(d, t)) for t, d in scene.detections]


def tracking_bench(scenes: list[Scene], variants: dict[str, TrackerSettings | None]) -> list[dict]:
    rows = []
    for name, st in variants.items():
        totals: dict[str, list] = {"switch": [], "turns": [], "pick": [], "pick2": [], "err": [], "recall": [],
                                   "precision": [], "missed": []}
        for sc in scenes:
            s = score(track_scene(sc, st), sc.truth, window_s=0.5, hold_s=st.end_after_s if st else 0.0)
            totals["switch"].append(s["id_switches_per_turn"] * s["turns"])
            totals["turns"].append(s["turns"])
            totals["missed"].append(s["turns_missed"])
            totals["pick"] += [s["pickup_mean_s"]] if s["pickup_mean_s"] is not None else []
            totals["pick2"] += [s["pickup_second_talker_mean_s"]] if s["pickup_second_talker_mean_s"] is not None \
                else []
            totals["err"].append(s["doa_error_mean_deg"])
            totals["recall"].append(s["recall"])
            totals["precision"].append(s["precision"])
        n_turns = sum(totals["turns"])
        rows.append({
            "tracker": name,
            "id_switches_per_turn": sum(totals["switch"]) / n_turns if st else None,
            "turns": n_turns, "turns_missed": sum(totals["missed"]),
            "pickup_mean_s": float(np.mean(totals["pick"])), "pickup_second_s": float(np.mean(totals["pick2"])),
            "doa_err_deg": float(np.mean(totals["err"])), "recall": float(np.mean(totals["recall"])),
            "precision": float(np.mean(totals["precision"])),
        })
    return rows


def second_talker_latencies(scenes: list[Scene], st: TrackerSettings) -> list[float]:
    """Per turn that starts while another talker talks: seconds until its track is published."""
    out = []
    for sc in scenes:
        msgs = track_scene(sc, st)
        turns = [(k, a, b) for k, s in enumerate(sc.truth) for a, b in s.active_s]
        for k, a, b in turns:
            if not any(a > a2 + 0.3 and a < b2 for k2, a2, b2 in turns if k2 != k):
                continue
            s = score([m for m in msgs if a <= m["t_s"] <= b + 0.25], [TrueSource("x", sc.truth[k].azimuth_deg,
                                                                                 0.0, ((a, b),))], 0.5)
            if s["pickup_mean_s"] is not None:
                out.append(s["pickup_mean_s"])
    return out


def fmt_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = " | ".join(h for _, h, _ in cols)
    lines = [f"| {head} |", "|" + "|".join(" --- " if k == cols[0][0] else " ---: " for k, _, _ in cols) + "|"]
    for r in rows:
        cells = []
        for key, _, f in cols:
            v = r.get(key)
            cells.append("" if v is None else (f.format(v) if f else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", default=str(REPO / "data" / "dry" / "bank-test.npz"),
                        help="dry-signal bank for the tracking scenes (use the test split)")
    parser.add_argument("--scenes", type=int, default=16, help="turn-taking scenes (2 and 3 talkers alternately)")
    parser.add_argument("--scene-s", type=float, default=12.0, help="length of each scene")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--png", default=str(REPO / "out" / "locate_bench.png"))
    parser.add_argument("--skip-process", action="store_true", help="tracking part only")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    for tool in ("taskset", "/usr/bin/time"):
        if not args.skip_process and shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt install util-linux time)")
    results: dict = {"machine": f"{os.cpu_count()} cores, {_cpu_name()}"}
    print(f"# edge-msl locate benchmark ({results['machine']}; one core via taskset -c 0)\n")
    if not args.skip_process:
        with tempfile.TemporaryDirectory() as d:
            rows = process_bench(Path(d), args.repeat)
        results["process"] = rows
        print(fmt_table(rows[:-1], [("file", "file", ""), ("cpu_s", "CPU s", "{:.2f}"),
                                    ("cpu_s_per_audio_s", "CPU s / audio s", "{:.4f}"),
                                    ("steady_cpu_s_per_audio_s", "steady CPU s / audio s (minus start-up)", "{:.4f}"),
                                    ("rss_mb", "peak RSS MB", "{:.0f}"), ("lines", "lines", "{:.0f}")]))
        print(f"\nstart-up to first line: {rows[-1]['startup_s']:.2f} s (median of {args.repeat})\n")
    model = load_model()
    t0 = time.perf_counter()
    scenes = make_scenes(args.bank, args.scenes, args.scene_s, model)
    n_turns = sum(len(s.active_s) for sc in scenes for s in sc.truth)
    print(f"tracking: {len(scenes)} scenes x {args.scene_s:g} s, {n_turns} talker turns, simulated in "
          f"{time.perf_counter() - t0:.0f} s (RT60 0.3-0.8 s, talkers >= 25 deg apart at 0.8-2.5 m, pauses of "
          f"0.1-0.5 s inside turns, diffuse noise at 15 dB SNR)\n")
    base = TrackerSettings()
    variants: dict[str, TrackerSettings | None] = {
        "no tracking (raw detections)": None,
        "default": base,
        "k=1 of 1": dataclasses.replace(base, confirm_hits=1, confirm_windows=1),
        "k=2 of 3 only (confirm_confidence 1)": dataclasses.replace(base, confirm_confidence=1.0),
        "confirm_confidence 0.5": dataclasses.replace(base, confirm_confidence=0.5),
        "confirm_confidence 0.7": dataclasses.replace(base, confirm_confidence=0.7),
        "k=3 of 5": dataclasses.replace(base, confirm_hits=3, confirm_windows=5),
        "end after 0.3 s": dataclasses.replace(base, end_after_s=0.3),
        "end after 0.4 s": dataclasses.replace(base, end_after_s=0.4),
        "end after 1.0 s": dataclasses.replace(base, end_after_s=1.0),
        "direction alpha 0.3": dataclasses.replace(base, direction_alpha=0.3),
        "direction alpha 1 (no smoothing)": dataclasses.replace(base, direction_alpha=1.0),
        "gate 15 deg": dataclasses.replace(base, gate_deg=15.0),
    }
    rows = tracking_bench(scenes, variants)
    results["tracking"] = rows
    results["tracker_default"] = base.to_dict()
    print(fmt_table(rows, [("tracker", "tracker", ""), ("id_switches_per_turn", "id switches / turn", "{:.3f}"),
                           ("pickup_second_s", "pick-up, talker joining (s)", "{:.2f}"),
                           ("pickup_mean_s", "pick-up, all turns (s)", "{:.2f}"),
                           ("turns_missed", "turns missed", "{}"), ("doa_err_deg", "DOA err (deg)", "{:.2f}"),
                           ("recall", "recall", "{:.3f}"), ("precision", "precision", "{:.3f}")]))
    lat = second_talker_latencies(scenes, base)
    if lat:
        print(f"\ndefault tracker, talker joining: {len(lat)} turns, pick-up median {np.median(lat):.2f} s, "
              f"90th percentile {np.percentile(lat, 90):.2f} s, max {max(lat):.2f} s")
    default = next(r for r in rows if r["tracker"] == "default")
    print("\n## targets")
    checks = []
    if "process" in results:
        proc = results["process"]
        checks += [("CPU s per audio s (60 s, 16 kHz)", proc[0]["cpu_s_per_audio_s"], TARGETS["cpu_s_per_audio_s"]),
                   ("start-up to first line (s)", proc[-1]["startup_s"], TARGETS["startup_s"]),
                   ("peak RSS (MB)", proc[0]["rss_mb"], TARGETS["rss_mb"])]
    checks += [("id switches per turn", default["id_switches_per_turn"], TARGETS["id_switches_per_turn"]),
               ("pick-up of a joining talker (s, mean)", default["pickup_second_s"], TARGETS["pickup_second_s"])]
    print(fmt_table([{"what": w, "value": v, "target": t, "ok": "yes" if v <= t else "NO"} for w, v, t in checks],
                    [("what", "figure", ""), ("value", "measured", "{:.3f}"), ("target", "target", "{:g}"),
                     ("ok", "met", "")]))
    if args.png:
        _plot(args.png, scenes, base, lat)
        print(f"\nplot: {args.png}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _plot(png: str, scenes: list[Scene], st: TrackerSettings, lat: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 1]})
    sc = scenes[1]
    ax = axes[0]
    for s in sc.truth:
        for a, b in s.active_s:
            ax.plot([a, b], [s.azimuth_deg] * 2, color="0.8", lw=8, solid_capstyle="butt", zorder=1)
    by_id: dict = {}
    for m in track_scene(sc, st):
        for s in m["sources"]:
            by_id.setdefault(s["id"], []).append((m["t_s"], s["azimuth_deg"], s["active"]))
    cmap = plt.get_cmap("tab10")
    for n, (tid, pts) in enumerate(sorted(by_id.items())):
        on = [(t, a) for t, a, act in pts if act]
        off = [(t, a) for t, a, act in pts if not act]
        if on:
            ax.scatter(*zip(*on), s=8, color=cmap(n % 10), label=f"id {tid}", zorder=2)
        if off:
            ax.scatter(*zip(*off), s=8, facecolors="none", edgecolors=cmap(n % 10), zorder=2)
    ax.set(xlabel="time (s, end of window)", ylabel="azimuth (deg)", ylim=(0, 420), yticks=range(0, 361, 45),
           title=f"scene seed {sc.seed}: truth (grey) and tracks (hollow: held through a dropout)")
    ax.legend(fontsize=7, ncol=10, loc="upper left")  # above 360 deg, clear of the tracks
    ax.grid(alpha=0.3)
    ax = axes[1]
    if lat:
        v = np.sort(lat)
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post")
    ax.axvline(TARGETS["pickup_second_s"], color="r", ls="--", lw=1)
    ax.set(xlabel="pick-up latency (s)", ylabel="fraction of joining turns", title="talker joining: pick-up CDF")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
