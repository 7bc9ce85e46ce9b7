"""Why the temporal decode reports a walker behind them, and two ways tried to close it
(docs/experiments/walker-speed-bias.md).

Two reports on the validation walk scenes (cached network outputs of ``benchmarks.scenes_bench``):

- ``hyp``: for every output matched to a moving talker (faster than 5°/s), by speed: the share whose track reports
  the walking hypothesis, the walking hypothesis' speed against the truth's, and the signed (along the motion) and
  mean error of what is reported, of the still hypothesis and of the walking one; then the hits whose track reports
  the still hypothesis, by the track's number of updates.
- ``sweep``: ``experiments.newest_audio sweep`` (turns, walk and static 1 s scores) with one decode change that has
  no key in ``DecodeSettings``:
  ``--ahead S``: every reported talker moved on by its reported angular velocity times S seconds;
  ``--now-score W``: the newest hop's SRP-PHAT peak, already a measurement of both hypotheses, also counts with
  weight W in the likelihood that chooses between them (``--now-min-strength``: only peaks that strong).

    .venv/bin/python -m experiments.walker_bias hyp data/scenes/val2-walk
    .venv/bin/python -m experiments.walker_bias sweep --walk data/scenes/val2-walk --ahead 0.04
    .venv/bin/python -m experiments.walker_bias sweep --walk data/scenes/val-walk --now-score 1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import numpy as np

from edge_msl import temporal as T
from edge_msl.regions import wrap180, wrap360
from edge_msl.truth import _hits, present
from experiments.newest_audio import BANDS, MOVING_DEG_S, Scenes, velocity


def hyp_report(walk: str) -> None:
    states: dict[tuple[float, int], tuple] = {}
    step = T.TemporalDecoder.step

    def logged(self, dets, t_s, peak=None, outputs=None):
        out = step(self, dets, t_s, peak, outputs)
        for tr in self._tracks:
            if tr.number is not None:
                states[(round(t_s, 3), tr.number)] = (tr.is_walking, tr.moving.rate, tr.still.az, tr.moving.az,
                                                      tr.updates)
        return out

    T.TemporalDecoder.step = logged
    try:
        sc = Scenes("data/scenes/val-turns", walk)
        rows = []
        for stem, truth, _ in sc.walkers():
            states.clear()
            for m in sc.decode(stem, sc.base):
                t = m["t_s"]
                req = present(truth, t, sc.info.window_s)
                az = [x["azimuth_deg"] for x in m["sources"]]
                for i, j, _ in _hits(az, [truth[q].azimuth_at(t) for q in req], 20.0):
                    v = velocity(truth[req[j]], t)
                    if abs(v) < MOVING_DEG_S:
                        continue
                    sg, true_az = np.sign(v), truth[req[j]].azimuth_at(t)
                    walking, rate, still_az, moving_az, updates = states[(round(t, 3), m["sources"][i]["id"])]
                    rows.append((abs(v), wrap180(az[i] - true_az) * sg, walking, rate * sg,
                                 wrap180(still_az - true_az) * sg, wrap180(moving_az - true_az) * sg, updates))
    finally:
        T.TemporalDecoder.step = step
    r = np.array(rows, dtype=float)

    def cell(x: np.ndarray) -> str:
        return f"{x.mean():+.2f} / {np.abs(x).mean():.2f}"

    print(f"## {walk}: outputs matched to moving talkers (signed error along the motion / mean error, °)\n")
    print("| speed | hits | walking reported | walking hyp. speed / true °/s | reported | still hyp. | walking hyp. |")
    print("| --- | ---: | ---: | --- | --- | --- | --- |")
    for lo, hi in BANDS:
        q = r[(r[:, 0] >= lo) & (r[:, 0] < hi)]
        name = f"{lo:g}-{hi:g} °/s" if hi < 1e9 else f">= {lo:g} °/s"
        print(f"| {name} | {len(q)} | {q[:, 2].mean():.2f} | {q[:, 3].mean():.1f} / {q[:, 0].mean():.1f} | "
              f"{cell(q[:, 1])} | {cell(q[:, 4])} | {cell(q[:, 5])} |")
        for walking in (1.0, 0.0):
            z = q[q[:, 2] == walking]
            if len(z):
                print(f"| ... {'walking' if walking else 'still'} reported | {len(z)} | | {z[:, 3].mean():.1f} / "
                      f"{z[:, 0].mean():.1f} | {cell(z[:, 1])} | | {cell(z[:, 5])} |")
    q = r[r[:, 2] == 0.0]
    print("\n| still reported: track's updates | hits | speed °/s | reported mean ° | walking hyp. mean ° |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for lo, hi in ((1, 3), (3, 6), (6, 15), (15, 10 ** 6)):
        z = q[(q[:, 6] >= lo) & (q[:, 6] < hi)]
        if len(z):
            print(f"| {lo}-{hi - 1 if hi < 10 ** 6 else ''} | {len(z)} | {z[:, 0].mean():.1f} | "
                  f"{np.abs(z[:, 1]).mean():.2f} | {np.abs(z[:, 5]).mean():.2f} |")


def ahead(seconds: float) -> None:
    """Every reported talker moved on by its reported velocity times ``seconds``."""
    step = T.TemporalDecoder.step

    def moved(self, dets, t_s, peak=None, outputs=None):
        return [dataclasses.replace(x, azimuth_deg=float(wrap360(x.azimuth_deg + seconds * x.rate_deg_s)))
                for x in step(self, dets, t_s, peak, outputs)]

    T.TemporalDecoder.step = moved


def now_score(weight: float, min_strength: float) -> None:
    """``_Track.measure_now`` whose peak also counts, with ``weight``, in the hypotheses' likelihoods."""

    def measure_now(self: Any, peak: Any, s: T.DecodeSettings) -> None:
        if self.updates < s.walk_after:
            return
        found = self.heard_now(peak, s)
        if found is None:
            return
        sd = s.now_sd_deg
        if s.now_sd_strength > 0:
            sd *= min(3.0, max(0.5, s.now_sd_strength / max(found[1], 1e-6)))
        scored = found[1] >= min_strength
        for f in (self.still, self.moving):
            old = f.score
            f.update(found[0], sd * sd, s.now_lag_s, s.max_rate_deg_s, s.model_forget if scored else None)
            if scored:
                f.score = old * s.model_forget + weight * (f.score - old * s.model_forget)

    T._Track.measure_now = measure_now


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", choices=("hyp", "sweep"))
    ap.add_argument("walk", nargs="?", default="data/scenes/val2-walk", help="hyp: the walk scene set")
    ap.add_argument("--ahead", type=float, default=0.0)
    ap.add_argument("--now-score", type=float, default=0.0)
    ap.add_argument("--now-min-strength", type=float, default=0.0)
    args, rest = ap.parse_known_args(argv)
    if args.report == "hyp":
        hyp_report(args.walk)
        return 0
    if args.ahead:
        ahead(args.ahead)
    if args.now_score:
        now_score(args.now_score, args.now_min_strength)
    from experiments.newest_audio import main as sweep_main
    return sweep_main(["sweep", *rest])


if __name__ == "__main__":
    sys.exit(main())
