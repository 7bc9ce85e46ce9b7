"""The real AV16.3 recording as users meet it: clips of a walking talker and sums of two such clips,
streamed through ``edge-msl locate``'s pipeline and scored per window like the simulated scenes.

    .venv/bin/python -m benchmarks.av16_clips --previous /tmp/prev --json out/av16_clips.json

Labels come from the recording itself, as ``train_tf.real_av16`` makes them: SRP-PHAT of the one
talker on every 0.5 s window (hop 0.1 s) where they are loud and the peak is sharp; the label is
where the talker was at the window's centre, so the truth at an output's ``t_s`` (the window's end)
is the label path interpolated there (a clip needs labels in 40 % of its windows, at least 6).
Voice activity: 10 ms frames within 25 dB of the clip's loud frames, inside the span of labels;
only windows inside that span (for a sum, both spans) are scored (the decode runs on the whole clip). A sum adds two clips that do not overlap in the
recording (starts at least the clip length + 1 s apart) whose talkers stay >= 30 degrees apart: a real two-talker mixture (sound adds linearly).
Only the last 60 % of the recording is used (the first 40 % is the calibration benchmark's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_msl.audio_io import write_wav
from edge_msl.pipeline import Pipeline
from edge_msl.regions import angular_distance_deg
from edge_msl.runtime import load_model
from edge_msl.truth import TrueSource, score_parts, summarize

REPO = Path(__file__).resolve().parents[1]

FS = 16000
WIN, HOP = 8000, 1600


def labels(audio: np.ndarray, min_level_db: float = 12.0, sharp_quantile: float = 0.3) -> dict[str, np.ndarray]:
    """Per 0.5 s window at hop 0.1 s: centre time, SRP-PHAT azimuth, and whether it is a clear label."""
    from train_tf.real_av16 import srp_single, window_levels_db

    starts, level = window_levels_db(audio, WIN, HOP)
    az, sharp = np.zeros(len(starts)), np.zeros(len(starts))
    for i, s in enumerate(starts):
        az[i], sharp[i] = srp_single(audio[s:s + WIN])
    loud = level >= np.percentile(level, 10) + min_level_db
    ok = loud & (sharp >= np.quantile(sharp[loud], sharp_quantile))
    # a label must agree with a neighbour (a walker moves < 8 deg in 0.1 s)
    near = np.zeros(len(starts), dtype=bool)
    near[1:] |= angular_distance_deg(az[1:], az[:-1]) <= 8.0
    near[:-1] |= angular_distance_deg(az[:-1], az[1:]) <= 8.0
    return {"centre_s": (starts + WIN / 2) / FS, "azimuth_deg": az, "ok": ok & near}


def clip_truth(audio: np.ndarray, lab: dict[str, np.ndarray], t0: float, t1: float, name: str) -> TrueSource | None:
    """The talker of [t0, t1) as a moving source (times relative to t0), or None if too few labels."""
    sel = lab["ok"] & (lab["centre_s"] >= t0 + 0.25) & (lab["centre_s"] <= t1 - 0.25)
    inside = (lab["centre_s"] >= t0 + 0.25) & (lab["centre_s"] <= t1 - 0.25)
    if sel.sum() < 0.4 * inside.sum() or sel.sum() < 6:
        return None
    c, az = lab["centre_s"][sel] - t0, lab["azimuth_deg"][sel]
    x = audio[int(t0 * FS):int(t1 * FS)].astype(np.float64)
    hop = FS // 100
    n = len(x) // hop
    rms = np.sqrt(np.mean(x[:n * hop].reshape(n, hop, -1) ** 2, axis=(1, 2)))
    voiced = rms >= np.percentile(rms, 95) * 10 ** (-25 / 20)
    lo, hi = c.min() - 0.25, c.max() + 0.25
    voice, start = [], None
    for i, v in enumerate(np.append(voiced, False)):
        t = i / 100
        if v and start is None and lo <= t <= hi:
            start = t
        elif (not v or t > hi) and start is not None:
            voice.append((start, min(t, hi)))
            start = None
    unwrapped = np.degrees(np.unwrap(np.radians(az)))
    return TrueSource(name, float(az[0]), float("nan"), ((max(0.0, lo), hi),), tuple(voice),
                      tuple((float(t), float(a % 360.0)) for t, a in zip(c, unwrapped)))


def make_clips(audio: np.ndarray, lab: dict[str, np.ndarray], clip_s: float, first_s: float, n_sums: int,
               seed: int) -> tuple[list, list]:
    """Single-talker clips (audio, [truth]) starting every second and two-clip sums (audio, [truth, truth])."""
    singles = []
    t = first_s
    while t + clip_s <= len(audio) / FS:
        tr = clip_truth(audio, lab, t, t + clip_s, "talker")
        if tr is not None:
            singles.append((t, audio[int(t * FS):int((t + clip_s) * FS)], tr))
        t += 1.0
    rng = np.random.default_rng(seed)
    sums, used = [], set()
    for _ in range(50 * n_sums):
        if len(sums) == n_sums:
            break
        i, j = (int(v) for v in rng.choice(len(singles), size=2, replace=False))
        (ta, a, tra), (tb, b, trb) = singles[i], singles[j]
        if (min(i, j), max(i, j)) in used or abs(ta - tb) < clip_s + 1.0:
            continue
        ts = np.arange(0.0, clip_s, 0.1)
        if min(float(angular_distance_deg(tra.azimuth_at(x), trb.azimuth_at(x))) for x in ts) < 30.0:
            continue
        used.add((min(i, j), max(i, j)))
        mix = np.clip(a.astype(np.int32) + b.astype(np.int32), -32768, 32767).astype(np.int16)
        sums.append((mix, [TrueSource("talker A", tra.azimuth_deg, tra.distance_m, tra.active_s, tra.voice_s, tra.path),
                           TrueSource("talker B", trb.azimuth_deg, trb.distance_m, trb.active_s, trb.voice_s,
                                      trb.path)]))
    return [(a, [tr]) for _, a, tr in singles], sums


def scored(msgs: list[dict], truth: list[TrueSource]) -> list[dict]:
    """The messages whose whole window lies where every talker of the clip is labelled (outside,
    a talker's voice and direction are unknown, so an output there is neither right nor wrong)."""
    lo = max(tr.active_s[0][0] for tr in truth) + WIN / FS
    hi = min(tr.active_s[0][1] for tr in truth)
    return [m for m in msgs if lo - 1e-6 <= m["t_s"] <= hi + 1e-6]


def run_locate(tree: str, pcm: np.ndarray) -> list[dict]:
    """``edge-msl locate`` of another checkout on this audio (default settings)."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "clip.wav"
        write_wav(wav, pcm, FS)
        p = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(wav)], cwd=tree, capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=tree))
    if p.returncode != 0:
        raise SystemExit(f"locate in {tree} failed: {p.stderr.strip()[-300:]}")
    return [json.loads(line) for line in p.stdout.splitlines()]


def main(argv: list[str] | None = None) -> int:
    from train_tf.real_av16 import DEFAULT_DIR, load_array

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DIR), help="AV16.3 sequence directory")
    parser.add_argument("--array", default="array1", choices=("array1", "array2"))
    parser.add_argument("--clip-s", type=float, default=3.0)
    parser.add_argument("--sums", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--previous", help="a checkout of the commit before the temporal decode (a646a83): its "
                        "`edge-msl locate` gives the 'previous' rows")
    parser.add_argument("--model", help="model .tflite (default: the packaged uca8-r10)")
    parser.add_argument("--json")
    parser.add_argument("--labels", default="srp", choices=("srp", "triangulated"),
                        help="srp: this array's SRP-PHAT per 0.5 s window (default); triangulated: both arrays' "
                        "bearings intersected and smoothed (train_tf.av16_labels)")
    args = parser.parse_args(argv)
    audio = load_array(args.data, args.array)
    if args.labels == "triangulated":
        from train_tf.av16_labels import av16_labels

        lab = av16_labels(args.data, args.array)
    else:
        lab = labels(audio)
    first_s = 0.4 * len(audio) / FS
    singles, sums = make_clips(audio, lab, args.clip_s, first_s, args.sums, args.seed)
    model = load_model(args.model)
    runners = {"shipped (locate)": lambda pcm: Pipeline(model).push(pcm),
               "each window alone, no tracking": lambda pcm: Pipeline(model, track=False).push(pcm)}
    if model.has_temporal_head:
        runners["without the temporal head"] = lambda pcm: Pipeline(model, temporal_head=False).push(pcm)
    if args.previous:
        runners["previous: 1 s pooling + tracker"] = lambda pcm: run_locate(args.previous, pcm)
    rows = []
    for set_name, clips in (("walking talker", singles), ("two-talker sums", sums)):
        for name, fn in runners.items():
            s = summarize([score_parts(scored(fn(pcm), truth), truth, WIN / FS) for pcm, truth in clips])
            rows.append({"set": set_name, "clips": len(clips), "decode": name, **s})
            print(f"{set_name:>16} {name:<34} F1 {s['f1']} P {s['precision']} R {s['recall']} "
                  f"err {s['doa_error_mean_deg']} mov {s['doa_error_moving_deg']} sw {s['id_switches_per_turn']}",
                  file=sys.stderr)
    print(f"# AV16.3 {Path(args.data).name} {args.array}: {len(singles)} walking-talker clips of {args.clip_s:g} s and "
          f"{len(sums)} two-talker sums (last 60 % of the recording)"
          + (", labels from both arrays (train_tf.av16_labels)" if args.labels == "triangulated" else "") + "\n")
    print("| set | clips | decode | F1 | recall | precision | error° | error moving° | id sw./turn |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['set']} | {r['clips']} | {r['decode']} | {r['f1']} | {r['recall']} | {r['precision']} | "
              f"{r['doa_error_mean_deg']} | {r['doa_error_moving_deg']} | {r['id_switches_per_turn']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
