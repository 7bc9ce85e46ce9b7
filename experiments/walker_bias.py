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
- ``headroom TRAIN TEST``: is there accuracy left for a learned fusion of what the decode measures? For each window
  and each talker moving faster than 5°/s, the refined detection nearest the talker's direction at the centre of each
  of the last ``--k`` windows (within 15°: the association an oracle would make) and the newest hop's SRP-PHAT peak
  within 16° of the newest one predict the talker's direction at the window's end, by least squares fitted on the
  TRAIN walk set; scored on the TEST walk set against the newest window alone and the shipped decode on the same hits.

    .venv/bin/python -m experiments.walker_bias hyp data/scenes/val2-walk
    .venv/bin/python -m experiments.walker_bias sweep --walk data/scenes/val2-walk --ahead 0.04
    .venv/bin/python -m experiments.walker_bias sweep --walk data/scenes/val-walk --now-score 1
    .venv/bin/python -m experiments.walker_bias headroom data/scenes/val-walk data/scenes/val2-walk
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import numpy as np

from edge_msl import temporal as T
from edge_msl.regions import decode, wrap180, wrap360
from edge_msl.truth import _hits, present
from experiments.newest_audio import MOVING_DEG_S, Scenes, moving_hits, speed_bands, velocity


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
            for m, i, src, v in moving_hits(sc.decode(stem, sc.base), truth, sc.info.window_s):
                sg, true_az = np.sign(v), src.azimuth_at(m["t_s"])
                walking, rate, still_az, moving_az, updates = states[(round(m["t_s"], 3), m["sources"][i]["id"])]
                rows.append((abs(v), wrap180(m["sources"][i]["azimuth_deg"] - true_az) * sg, walking, rate * sg,
                             wrap180(still_az - true_az) * sg, wrap180(moving_az - true_az) * sg, updates))
    finally:
        T.TemporalDecoder.step = step
    r = np.array(rows, dtype=float)

    def cell(x: np.ndarray) -> str:
        return f"{x.mean():+.2f} / {np.abs(x).mean():.2f}"

    print(f"## {walk}: outputs matched to moving talkers (signed error along the motion / mean error, °)\n")
    print("| speed | hits | walking reported | walking hyp. speed / true °/s | reported | still hyp. | walking hyp. |")
    print("| --- | ---: | ---: | --- | --- | --- | --- |")
    for name, band in speed_bands(r[:, 0]):
        q = r[band]
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


def headroom_rows(sc: Scenes, walk: str, k_windows: int) -> np.ndarray:
    """(features..., target, speed, decode error or nan) per moving-talker window of ``walk`` (see ``headroom``)."""
    from benchmarks import scenes_bench as sb
    from edge_msl.pipeline import newest_peak
    from edge_msl.truth import load_truth

    rows = []
    for stem in sb.scenes([walk]):
        truth = load_truth(stem.with_suffix(".truth.json"))[0]
        c = sc.cache.get(stem) or sb.cached_outputs(sc.model, stem)
        msgs = sb.decode_cached(sc.model, c, sc.base, sc.images)
        dets = [sc.refiner.refine(decode(sc.info.layout, c[sc.images][k], 0.1), c["cross"][k])
                for k in range(len(c["t_s"]))]
        for k in range(k_windows - 1, len(c["t_s"])):
            t = float(c["t_s"][k])
            peak = newest_peak(sc.refiner, c["hop_cross"][k:k + 1])  # one GCC a window, for every talker
            for q in present(truth, t, sc.info.window_s):
                src = truth[q]
                v = velocity(src, t)
                if abs(v) < MOVING_DEG_S:
                    continue
                seen = []
                for j in range(k_windows):
                    centre = src.azimuth_at(float(c["t_s"][k - j]) - sc.info.window_s / 2)
                    near = [d for d in dets[k - j] if abs(wrap180(d.azimuth_deg - centre)) <= 15.0]
                    if not near:
                        break
                    seen.append(min(near, key=lambda d: abs(wrap180(d.azimuth_deg - centre))))
                if len(seen) < k_windows:
                    continue
                ref = seen[0].azimuth_deg
                pk = peak(float(wrap360(ref)), 16.0)
                if pk is None:
                    continue
                off = wrap180(pk[0] - ref)
                az = [x["azimuth_deg"] for x in msgs[k]["sources"]]
                err = [abs(wrap180(az[i] - src.azimuth_at(t))) for i, _, _ in _hits(az, [src.azimuth_at(t)], 20.0)]
                rows.append([*(wrap180(d.azimuth_deg - ref) for d in seen[1:]), *(d.confidence for d in seen),
                             off, pk[1], off * pk[1], wrap180(src.azimuth_at(t) - ref), abs(v),
                             err[0] if err else np.nan])
    return np.array(rows, dtype=float)


def headroom_report(train: str, test: str, k_windows: int) -> None:
    sc = Scenes("data/scenes/val-turns", train)
    a, b = headroom_rows(sc, train, k_windows), headroom_rows(sc, test, k_windows)
    w = np.linalg.lstsq(np.c_[a[:, :-3], np.ones(len(a))], a[:, -3], rcond=None)[0]
    pred = np.c_[b[:, :-3], np.ones(len(b))] @ w
    y, speed, dec = b[:, -3], b[:, -2], b[:, -1]
    print(f"## fitted on {train} ({len(a)} hits), scored on {test} ({len(b)}), {k_windows} windows: mean error °\n")
    print("| speed | hits | newest window alone | least-squares fusion | shipped decode, its hits | fusion, the same hits |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, s in speed_bands(speed):
        ok = s & ~np.isnan(dec)
        print(f"| {name} | {s.sum()} | {np.abs(y[s]).mean():.2f} | {np.abs(y[s] - pred[s]).mean():.2f} | "
              f"{dec[ok].mean():.2f} | {np.abs(y[ok] - pred[ok]).mean():.2f} |")


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
    ap.add_argument("report", choices=("hyp", "sweep", "headroom"))
    ap.add_argument("walk", nargs="?", default="data/scenes/val2-walk", help="hyp: the walk scene set; headroom: TRAIN")
    ap.add_argument("test", nargs="?", default="data/scenes/val-walk", help="headroom: the walk set scored")
    ap.add_argument("--k", type=int, default=5, help="headroom: windows fused")
    ap.add_argument("--ahead", type=float, default=0.0)
    ap.add_argument("--now-score", type=float, default=0.0)
    ap.add_argument("--now-min-strength", type=float, default=0.0)
    args, rest = ap.parse_known_args(argv)
    if args.report == "hyp":
        hyp_report(args.walk)
        return 0
    if args.report == "headroom":
        headroom_report(args.walk, args.test, args.k)
        return 0
    if args.ahead:
        ahead(args.ahead)
    if args.now_score:
        now_score(args.now_score, args.now_min_strength)
    from experiments.newest_audio import main as sweep_main
    return sweep_main(["sweep", *rest])


if __name__ == "__main__":
    sys.exit(main())
