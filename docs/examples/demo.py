"""`make demo`: locate the talkers of the bundled recording and print them against its ground truth.

Uses only the public API (edge_msl.Localizer) and the truth file next to the recording; writes the
azimuth-vs-time plot when matplotlib is installed (pip install "edge-msl[plot]"). No dry-signal bank,
no TTS tools, no TensorFlow.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from edge_msl import Localizer
from edge_msl.api import example_path
from edge_msl.truth import TruthError, load_truth, plot, score


def circular_mean_deg(angles: list[float]) -> float:
    x = sum(math.cos(math.radians(a)) for a in angles)
    y = sum(math.sin(math.radians(a)) for a in angles)
    return math.degrees(math.atan2(y, x)) % 360.0


def diff_deg(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="out/demo/example.png", help="PNG to write ('' = none)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    loc = Localizer(array="uca8-r10")
    messages = list(loc.locate("example"))
    truth, meta = load_truth(example_path(".truth.json"))
    elapsed = time.perf_counter() - t0

    # one row per located talker id: where and when it was listed, and the true talker nearest to it
    tracks: dict[int, list[tuple[float, float]]] = {}
    for m in messages:
        for s in m["sources"]:
            tracks.setdefault(s["id"], []).append((m["t_s"], s["azimuth_deg"]))
    print(f"edge-msl locate example: {meta.get('duration_s')} s, {len(messages)} windows of "
          f"{loc.info.window_samples / loc.info.sample_rate_hz:g} s every 0.1 s, array {loc.info.array.name}, "
          f"{elapsed:.1f} s")
    print()
    print(f"{'id':>3}  {'listed t_s':>11}  {'azimuth':>8}  |  {'true talker':<10} {'azimuth':>8} "
          f"{'talks (s)':>10}  {'error':>6}")
    for tid, pts in sorted(tracks.items()):
        az = circular_mean_deg([a for _, a in pts])
        best = min(truth, key=lambda s: diff_deg(az, s.azimuth_deg))
        talks = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in best.voice)
        print(f"{tid:>3}  {pts[0][0]:>4.1f}-{pts[-1][0]:<4.1f}  "
              f"{az:>7.1f}°  |  {best.name:<10} {best.azimuth_deg:>7.1f}° {talks:>10}  {diff_deg(az, best.azimuth_deg):>5.1f}°")
    s = score(messages, truth, loc.info.window_samples / loc.info.sample_rate_hz)
    print()
    print(f"per window: recall {s['recall']}, precision {s['precision']}, F1 {s['f1']}, "
          f"mean error {s['doa_error_mean_deg']}°; {len(tracks)} ids for {len(truth)} talkers")
    if args.plot:
        try:
            import os

            os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
            plot(messages, args.plot, truth, title="edge-msl locate example")
            print(f"plot: {args.plot}")
        except TruthError as exc:
            print(f"no plot: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
