"""Benchmark of ``edge-msl locate``'s costs: whole-process CPU per second of audio on one core,
start-up to the first line and peak RSS on a 60 s 8-channel file (accuracy on moving, pausing and
turn-taking talkers is ``benchmarks/scenes_bench.py``; against ODAS, ``benchmarks/odas_cpu.py``).

    .venv/bin/python -m benchmarks.locate_bench --json out/locate_bench.json

Needs /usr/bin/time and taskset. Prints a table on stdout; timings are medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_msl.audio_io import open_audio, write_wav

REPO = Path(__file__).resolve().parents[1]

TARGETS = {"cpu_s_per_audio_s": 0.05, "startup_s": 1.5, "rss_mb": 120.0}
EXAMPLE = REPO / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"


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
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    for tool in ("taskset", "/usr/bin/time"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt install util-linux time)")
    results: dict = {"machine": f"{os.cpu_count()} cores, {cpu_name()}", "load_average": os.getloadavg()[0]}
    print(f"# edge-msl locate benchmark ({results['machine']}; one core via taskset -c 0; load average "
          f"{results['load_average']:.1f})\n")
    with tempfile.TemporaryDirectory() as d:
        rows = process_bench(Path(d), args.repeat)
    results["process"] = rows
    print(fmt_table(rows[:-1], [("file", "file", ""), ("cpu_s", "CPU s", "{:.2f}"),
                                ("cpu_s_per_audio_s", "CPU s / audio s", "{:.4f}"),
                                ("steady_cpu_s_per_audio_s", "steady CPU s / audio s (minus start-up)", "{:.4f}"),
                                ("rss_mb", "peak RSS MB", "{:.0f}"), ("lines", "lines", "{:.0f}")]))
    print(f"\nstart-up to first line: {rows[-1]['startup_s']:.2f} s (median of {args.repeat})\n")
    checks = [("CPU s per audio s (60 s, 16 kHz)", rows[0]["cpu_s_per_audio_s"], TARGETS["cpu_s_per_audio_s"]),
              ("start-up to first line (s)", rows[-1]["startup_s"], TARGETS["startup_s"]),
              ("peak RSS (MB)", rows[0]["rss_mb"], TARGETS["rss_mb"])]
    print(fmt_table([{"what": w, "value": v, "target": t, "ok": "yes" if v <= t else "NO"} for w, v, t in checks],
                    [("what", "figure", ""), ("value", "measured", "{:.3f}"), ("target", "target", "{:g}"),
                     ("ok", "met", "")]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def cpu_name() -> str:
    """The CPU's model name (also the ODAS benchmark's)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
