"""The study of the two-array AV16.3 labels (issue 27): the labels themselves (each array's SRP-PHAT bearing of
the one talker on short windows, intersected in the room frame and smoothed in time) live in
``train_tf.av16_labels``; this checks them. Research only: nothing in ``edge_msl`` or ``train_tf`` imports it.

    .venv/bin/python -m experiments.av16_triangulate labels --png out/av16_tri.png
    .venv/bin/python -m experiments.av16_triangulate simcheck --scenes 10
    .venv/bin/python -m experiments.av16_triangulate score --json out/av16_tri.json

``labels`` labels the recording (``--check``: the arrays' frames turned and mirrored) and plots it; ``simcheck``
renders walking talkers heard by two arrays like AV16.3's and scores the array1-only labels of
``benchmarks.av16_clips`` and these against the true azimuth; ``score`` is
``benchmarks.av16_clips --labels triangulated``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train_tf.av16_labels import (ARRAY_CENTRES_M, FS, HOP, LabelSettings, PairSpectra, array_xy, azimuth_from,
                                  bearings, confident, intersect, two_array_labels)


# --------------------------------------------------------------------------- simulated check

TRAIN_BANK = "data/dry/bank-train.npz"
"""Real voices of the training split only: the simcheck never touches the test split."""


@dataclass(frozen=True)
class _Ring:
    """What ``train_tf.scenes.walk_path`` needs of a room plan: the ring's centre and the allowed box."""

    centre: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    yaw_deg: float = 0.0


def render_walk(bank, seed: int, duration_s: float = 16.0) -> dict[str, np.ndarray]:
    """One talker walking while talking, heard by two arrays like AV16.3's (8 mics, r 0.10 m, centres
    0.8 m apart, on a table at 0.8 m) in a shoebox meeting room: int16 audio (n, 16) (array1, then
    array2, each in ``load_array``'s channel order) and the path in the arrays' frame (midpoint at the
    origin, array1 at (0, 0.4))."""
    from train_tf.scenes import SceneSettings, _moving_convolve, speech_turn, voice_activity, voices, walk_path
    from train_tf.simulate import SimSettings, diffuse_noise, room_rirs, to_int16
    from train_tf.simulate.rooms import RoomPlan, sabine_absorption

    rng = np.random.default_rng(seed)
    dim = np.array([rng.uniform(6.5, 9.0), rng.uniform(5.0, 7.0), rng.uniform(2.6, 3.2)])
    rt60 = float(rng.uniform(0.3, 0.6))
    mid = np.array([dim[0] / 2 + rng.uniform(-0.5, 0.5), dim[1] / 2 + rng.uniform(-0.5, 0.5), 0.8])
    local = np.vstack([array_xy("array1"), array_xy("array2")])
    mic_xyz = np.column_stack([local + mid[:2], np.full(16, mid[2])]) + rng.uniform(-0.001, 0.001, (16, 3))
    sim = SimSettings(rt60_s=(rt60, rt60), max_image_order=10, source_distance_m=(0.3, 3.5))
    plan = RoomPlan(dim=dim, anechoic=False, rt60_s=rt60, absorption=min(0.99, sabine_absorption(rt60, dim)),
                    order=sim.max_image_order, yaw_deg=0.0, centre=np.array([mid[0], mid[1] + 0.4, mid[2]]),
                    mic_xyz=mic_xyz, mic_gain=10.0 ** (rng.uniform(-1.0, 1.0, 16) / 20.0),
                    lo=np.array([0.4, 0.4, 0.4]), hi=dim - 0.4)
    scene = SceneSettings(kind="walk", duration_s=duration_s, speed_m_s=(0.3, 1.2), distance_m=(1.1, 2.5),
                          stand_prob=0.15, arc_prob=0.4, step_m=0.05)
    times, xy = walk_path(_Ring(mid, plan.lo, plan.hi), scene, rng)
    z = float(rng.uniform(1.5, 1.8))
    rirs = room_rirs(plan, sim, np.column_stack([xy, np.full(len(xy), z)]), rng)
    fs = FS
    n = int(round(duration_s * fs))
    t_on, t_off = rng.uniform(1.0, 2.0), duration_s - rng.uniform(0.5, 1.5)
    dry = np.zeros(n)
    all_voices = voices(bank)
    voice = all_voices[int(rng.integers(len(all_voices)))]
    dry[int(t_on * fs):int(t_off * fs)] = speech_turn(bank, voice, int(t_off * fs) - int(t_on * fs), rng, (0.1, 0.8))
    clean = _moving_convolve(dry, times, rirs.rirs, fs, n) * plan.mic_gain[:, None]
    p_ref = float(np.mean(clean[:, int(t_on * fs):int(t_off * fs)] ** 2))
    snr_d, snr_s = rng.uniform(15.0, 30.0), rng.uniform(30.0, 40.0)
    diffuse = diffuse_noise("pink", mic_xyz, n, bank, rng, fs).astype(np.float64)
    diffuse *= math.sqrt(p_ref / (np.mean(diffuse ** 2) + 1e-20) * 10.0 ** (-snr_d / 10.0))
    sensor = rng.standard_normal(clean.shape) * math.sqrt(p_ref * 10.0 ** (-snr_s / 10.0))
    level = 10.0 ** (rng.uniform(-35.0, -25.0) / 20.0) / math.sqrt(p_ref)
    pcm = to_int16(((clean + diffuse + sensor) * level).T)
    voiced = np.array(voice_activity(dry, fs) or [(0.0, 0.0)], dtype=np.float64)
    return {"pcm": pcm, "t_s": times, "xy_m": xy - mid[:2], "voice_s": voiced, "room_m": dim, "rt60_s": rt60,
            "snr_db": np.array([snr_d, snr_s]), "voice": np.array(voice)}


def true_azimuth(scene: dict[str, np.ndarray], t_s: np.ndarray, array: str = "array1") -> np.ndarray:
    """The azimuth of the walker from ``array`` at times ``t_s`` (path interpolated)."""
    x = np.interp(t_s, scene["t_s"], scene["xy_m"][:, 0])
    y = np.interp(t_s, scene["t_s"], scene["xy_m"][:, 1])
    return azimuth_from(np.asarray(ARRAY_CENTRES_M[array]), np.column_stack([x, y]))


def _is_voiced(scene: dict[str, np.ndarray], t_s: np.ndarray) -> np.ndarray:
    v = scene["voice_s"]
    return np.any((t_s[:, None] >= v[None, :, 0]) & (t_s[:, None] < v[None, :, 1]), axis=1)


def label_errors(scene: dict[str, np.ndarray], lab: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Errors of labels against the truth: at the labelled hops, and of the label path interpolated to
    every voiced hop inside its span (what ``benchmarks.av16_clips`` scores against); coverage counts."""
    t, ok = lab["centre_s"], lab["ok"]
    truth = true_azimuth(scene, t)
    err = np.abs((lab["azimuth_deg"] - truth + 180.0) % 360.0 - 180.0)
    voiced = _is_voiced(scene, t)
    path_err = np.zeros(0)
    if ok.sum() >= 2:
        inside = voiced & (t >= t[ok].min()) & (t <= t[ok].max())
        unwrapped = np.degrees(np.unwrap(np.radians(lab["azimuth_deg"][ok])))
        interp = np.interp(t[inside], t[ok], unwrapped) % 360.0
        path_err = np.abs((interp - truth[inside] + 180.0) % 360.0 - 180.0)
    return {"err": err[ok], "path_err": path_err, "voiced": int(voiced.sum()), "voiced_labelled": int((voiced & ok).sum())}


def _scene_cache(out: Path, bank_path: str, seed: int, duration_s: float) -> dict[str, np.ndarray]:
    path = out / f"walk-{seed}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from train_tf.signals import DryBank

    if Path(bank_path).name != Path(TRAIN_BANK).name:
        raise SystemExit(f"simcheck renders training voices only ({TRAIN_BANK}), not {bank_path}")
    scene = render_walk(DryBank.load(bank_path), seed, duration_s)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **scene)
    return scene


def _row(name: str, parts: list[dict[str, np.ndarray]]) -> dict[str, float | str]:
    err = np.concatenate([p["err"] for p in parts])
    path = np.concatenate([p["path_err"] for p in parts])
    voiced = sum(p["voiced"] for p in parts)
    return {"labels": name, "labelled": int(len(err)), "mean_deg": round(float(err.mean()), 2),
            "median_deg": round(float(np.median(err)), 2), "p90_deg": round(float(np.percentile(err, 90)), 2),
            "over_10_deg": round(float(np.mean(err > 10.0)), 3),
            "coverage": round(sum(p["voiced_labelled"] for p in parts) / max(1, voiced), 3),
            "path_mean_deg": round(float(path.mean()), 2), "path_p90_deg": round(float(np.percentile(path, 90)), 2)}


def simcheck(out: Path, bank_path: str, n_scenes: int, seed: int, duration_s: float,
             windows_s: tuple[float, ...]) -> list[dict]:
    """Score the array1-only labels and the two-array labels on rendered walks."""
    from benchmarks.av16_clips import labels

    parts: dict[str, list] = {}
    for i in range(n_scenes):
        scene = _scene_cache(out, bank_path, seed + i, duration_s)
        a1, a2 = scene["pcm"][:, :8], scene["pcm"][:, 8:]
        runs = {"array1 SRP-PHAT 0.5 s (av16_clips)": labels(a1)}
        for w in windows_s:
            lab = two_array_labels(a1, a2, LabelSettings(window_s=w))
            runs[f"two arrays, {w:g} s windows, smoothed"] = lab
            runs[f"array1's own {w:g} s bearings, where confident (no smoothing)"] = {
                "centre_s": lab["centre_s"], "azimuth_deg": lab["bearing1_deg"], "ok": lab["confident1"]}
        for name, lab in runs.items():
            parts.setdefault(name, []).append(label_errors(scene, lab))
        mean_speed = float(np.sum(np.hypot(*np.diff(scene["xy_m"], axis=0).T)) / scene["t_s"][-1])
        print(f"scene {seed + i}: room {np.round(scene['room_m'], 1).tolist()} RT60 {float(scene['rt60_s']):.2f} s, "
              f"{mean_speed:.2f} m/s, " + ", ".join(f"{k.split(' (')[0]} {np.mean(v[-1]['err']):.2f}"
                                                   for k, v in parts.items() if len(v[-1]['err'])), file=sys.stderr)
    return [_row(name, p) for name, p in parts.items()]


# --------------------------------------------------------------------------- commands

def _plot(lab: dict[str, np.ndarray], old: dict[str, np.ndarray], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = lab["centre_s"]
    fig, (ax, ay) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    for key, conf, colour, name in (("bearing1_deg", "confident1", "tab:blue", "array1"),
                                    ("bearing2_deg", "confident2", "tab:orange", "array2")):
        ax.plot(t[lab[conf]], lab[key][lab[conf]], ".", color=colour, ms=4, label=f"{name} bearing ({name} frame)")
    for key, ok, colour, name in (("azimuth_deg", "ok", "navy", "array1"), ("azimuth2_deg", "ok2", "darkred", "array2")):
        az = np.where(lab[ok], lab[key], np.nan)
        az[1:][np.abs(np.diff(az)) > 180.0] = np.nan  # no line across the 0/360 seam
        ax.plot(t, az, "-", color=colour, lw=1.2, label=f"smoothed path, seen from {name}")
    ax.plot(old["centre_s"][old["ok"]], old["azimuth_deg"][old["ok"]], "x", color="grey", ms=4,
            label="array1 SRP-PHAT 0.5 s label (av16_clips)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("azimuth (deg, room x axis = 0)")
    ax.set_ylim(0, 360)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    crossed = lab["crossed_xy_m"]
    ay.plot(crossed[:, 0], crossed[:, 1], ".", color="grey", ms=3, label="intersections")
    xy = np.where(lab["ok"][:, None], lab["xy_m"], np.nan)
    ay.plot(xy[:, 0], xy[:, 1], "-", color="navy", lw=1, label="smoothed path (labelled hops)")
    for name, (cx, cy) in ARRAY_CENTRES_M.items():
        ay.plot(cx, cy, "o", color="k", ms=5)
        ay.annotate(name, (cx, cy), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ay.set_aspect("equal")
    ay.set_xlabel("x (m)")
    ay.set_ylabel("y (m)")
    ay.legend(fontsize=7)
    ay.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def orientation_check(a1: np.ndarray, a2: np.ndarray, window_s: float = 0.2) -> list[tuple[str, float, float]]:
    """For array2 turned by 0/90/180/270 degrees and each array mirrored or not: the share of the hops
    where both arrays are confident whose bearings meet in front of both arrays within 5 m, and the
    median step between consecutive intersections. Only the right frame gives a smooth path."""
    ts = np.arange(window_s / 2, min(len(a1), len(a2)) / FS - window_s / 2, HOP / FS)
    b1 = bearings(PairSpectra(a1, array_xy("array1")), ts, window_s)
    b2 = bearings(PairSpectra(a2, array_xy("array2")), ts, window_s)
    both = np.flatnonzero(confident(b1) & confident(b2))
    c1, c2 = np.asarray(ARRAY_CENTRES_M["array1"]), np.asarray(ARRAY_CENTRES_M["array2"])
    rows = []
    for m1 in (1, -1):
        for m2 in (1, -1):
            for turn in (0, 90, 180, 270):
                pts = np.array([p if p is not None else (np.nan, np.nan) for p in
                                (intersect(c1, m1 * b1.azimuth_deg[k] % 360.0, c2, (m2 * b2.azimuth_deg[k] + turn) % 360.0,
                                           5.0, 0.2, 5.0) for k in both)])
                valid = np.isfinite(pts[:, 0])
                adjacent = valid[1:] & valid[:-1] & (np.diff(both) == 1)
                steps = np.hypot(*np.diff(pts, axis=0).T)[adjacent]
                rows.append((f"array1 {'mirrored' if m1 < 0 else 'as is'}, array2 {'mirrored' if m2 < 0 else 'as is'} "
                             f"turned {turn}", float(valid.mean()), float(np.median(steps)) if len(steps) else float("nan")))
    return rows


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PRA_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("labels", help="label the AV16.3 sequence from both arrays; plot")
    p.add_argument("--data", default=None, help="AV16.3 sequence directory (default: train_tf.real_av16's)")
    p.add_argument("--window-s", type=float, default=LabelSettings.window_s)
    p.add_argument("--png", default="out/av16_triangulate.png")
    p.add_argument("--check", action="store_true", help="also test the arrays' frames (turned, mirrored)")
    p = sub.add_parser("simcheck", help="score both labellings against simulated truth")
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--seed", type=int, default=27000)
    p.add_argument("--duration-s", type=float, default=16.0)
    p.add_argument("--bank", default=TRAIN_BANK)
    p.add_argument("--windows-s", default="0.1,0.2,0.3,0.5")
    p.add_argument("--out", default="out/av16_tri_sim", help="rendered scenes are cached here")
    p.add_argument("--json")
    p = sub.add_parser("score", help="benchmarks.av16_clips against the two-array labels")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="passed on to benchmarks.av16_clips")
    args = ap.parse_args(argv)
    if args.cmd == "score":
        from benchmarks import av16_clips

        return av16_clips.main(["--labels", "triangulated", *args.rest])
    if args.cmd == "simcheck":
        rows = simcheck(Path(args.out), args.bank, args.scenes, args.seed, args.duration_s,
                        tuple(float(w) for w in args.windows_s.split(",")))
        print(f"# {args.scenes} simulated walks of {args.duration_s:g} s (seeds {args.seed}-{args.seed + args.scenes - 1}): "
              "label error against the true azimuth from array1\n")
        print("| labels | labelled hops | mean° | median° | p90° | > 10° | coverage of voiced hops | "
              "path mean° | path p90° |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['labels']} | {r['labelled']} | {r['mean_deg']} | {r['median_deg']} | {r['p90_deg']} | "
                  f"{r['over_10_deg']} | {r['coverage']} | {r['path_mean_deg']} | {r['path_p90_deg']} |")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    from benchmarks.av16_clips import labels
    from train_tf.real_av16 import DEFAULT_DIR, load_array

    data = Path(args.data or DEFAULT_DIR)
    a1, a2 = load_array(data, "array1"), load_array(data, "array2")
    if args.check:
        for name, valid, step in orientation_check(a1, a2):
            print(f"{name:<45} meet in front {valid:.2f}  median step {step:.3f} m")
    lab = two_array_labels(a1, a2, LabelSettings(window_s=args.window_s))
    old = labels(a1)
    n = len(lab["ok"])
    print(f"hops {n} ({n * HOP / FS:.1f} s): array1 confident {int(lab['confident1'].sum())}, array2 "
          f"{int(lab['confident2'].sum())}, both {int((lab['confident1'] & lab['confident2']).sum())}, intersected "
          f"(crossing >= {LabelSettings.min_angle_deg:g} deg) {int(np.isfinite(lab['crossed_xy_m'][:, 0]).sum())}, "
          f"bearings kept by the smoother {lab['used'].sum(axis=0).tolist()}; labelled from array1 {int(lab['ok'].sum())}, "
          f"from array2 {int(lab['ok2'].sum())} (av16_clips' array1 SRP-PHAT labels: {int(old['ok'].sum())} of "
          f"{len(old['ok'])})")
    both = old["ok"] & (np.interp(old["centre_s"], lab["centre_s"], lab["ok"].astype(float)) > 0.5)
    new_az = np.interp(old["centre_s"], lab["centre_s"], np.degrees(np.unwrap(np.radians(lab["azimuth_deg"])))) % 360.0
    diff = np.abs((new_az - old["azimuth_deg"] + 180.0) % 360.0 - 180.0)[both]
    print(f"where both label ({int(both.sum())} hops): the two labellings differ by {diff.mean():.2f} deg on average "
          f"(median {np.median(diff):.2f}, p90 {np.percentile(diff, 90):.2f})")
    _plot(lab, old, Path(args.png))
    print(f"plot: {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
