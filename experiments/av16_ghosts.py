"""False talkers on the real AV16.3 recording: how strong is the newest audio's SRP-PHAT peak at an
output that no talker explains, and what do decode settings do to the clips' scores
(docs/experiments/newest-audio.md, "Echoes on the real recording").

The clips and sums of ``benchmarks.av16_clips`` (the last 60 % of the recording) are written as WAVs
to ``--dir`` once, and their network outputs cached next to them as ``benchmarks.scenes_bench`` does;
every decode then runs on the cache.

    .venv/bin/python -m experiments.av16_ghosts strength
    .venv/bin/python -m experiments.av16_ghosts sweep '{"now_birth_strength": 0.03}' ...
    .venv/bin/python -m experiments.av16_ghosts lag

``lag``: the mean error of the shipped decode and of each window alone (decoded, refined) against the
labelled direction some time before the window's end: which instant does each report?
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks import scenes_bench as sb
from benchmarks.av16_clips import FS, WIN, labels, make_clips, scored
from edge_msl.audio_io import write_wav
from edge_msl.pipeline import newest_peak
from edge_msl.refine import SrpRefiner
from edge_msl.regions import angular_distance_deg
from edge_msl.runtime import load_model
from edge_msl.temporal import DecodeSettings
from edge_msl.truth import HIT_DEG, score_parts, summarize


def clip_sets(out: Path, model) -> dict[str, list]:
    """{"walking talker": [(truth, cached outputs)], "two-talker sums": [...]}."""
    from train_tf.real_av16 import DEFAULT_DIR, load_array

    audio = load_array(DEFAULT_DIR, "array1")
    singles, sums = make_clips(audio, labels(audio), 3.0, 0.4 * len(audio) / FS, 40, 0)
    out.mkdir(parents=True, exist_ok=True)
    sets = {}
    for name, clips in (("walking talker", singles), ("two-talker sums", sums)):
        sets[name] = []
        for i, (pcm, truth) in enumerate(clips):
            stem = out / f"{name.split()[0]}-{i:02d}"
            if not stem.with_suffix(".wav").exists():
                write_wav(stem.with_suffix(".wav"), pcm, FS)
            sets[name].append((truth, sb.cached_outputs(model, stem)))
    return sets


LAGS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


def lag_report(model, base: DecodeSettings, sets: dict) -> None:
    from edge_msl.regions import decode, wrap180
    from edge_msl.truth import _hits

    info = model.info
    refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine)
    print("| clips | output | " + " | ".join(f"{lag:g} s" for lag in LAGS) + " |")
    print("| --- | --- |" + " ---: |" * len(LAGS))
    for name, items in sets.items():
        for mode in ("shipped decode", "each window alone"):
            err: dict[float, list[float]] = {lag: [] for lag in LAGS}
            for truth, c in items:
                kept = {m["t_s"] for m in scored([{"t_s": float(t), "sources": []} for t in c["t_s"]], truth)}
                if mode == "shipped decode":
                    outs = [(m["t_s"], [s["azimuth_deg"] for s in m["sources"]])
                            for m in sb.decode_cached(model, c, base, "cycle") if m["t_s"] in kept]
                else:
                    outs = [(float(t), [d.azimuth_deg for d in refiner.refine(
                        decode(info.layout, c["cycle"][k], info.threshold), c["cross"][k])])
                        for k, t in enumerate(c["t_s"]) if float(t) in kept]
                for t, az in outs:
                    for lag in LAGS:
                        want = [tr.azimuth_at(t - lag) for tr in truth]
                        err[lag] += [abs(float(wrap180(az[i] - want[j]))) for i, j, _ in _hits(az, want, HIT_DEG)]
            print(f"| {name} | {mode} | " + " | ".join(f"{np.mean(err[lag]):.2f}" for lag in LAGS) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", choices=("strength", "sweep", "lag"))
    ap.add_argument("overrides", nargs="*", help="sweep: JSON objects of decode.temporal keys")
    ap.add_argument("--dir", default="out/av16-ghosts", help="where the clips and their outputs are kept")
    args = ap.parse_args(argv)
    model = load_model(None)
    info = model.info
    base = DecodeSettings.from_dict(info.raw.get("decode", {}).get("temporal", {}))
    sets = clip_sets(Path(args.dir), model)
    if args.report == "lag":
        lag_report(model, base, sets)
        return 0
    if args.report == "sweep":
        print("| decode | walking talker F1 / P | error ° | two-talker sums F1 / P / R | error ° |")
        print("| --- | --- | ---: | --- | ---: |")
        for text in ["{}", *args.overrides]:
            st = dataclasses.replace(base, **json.loads(text))
            r = {name: summarize([score_parts(scored(sb.decode_cached(model, c, st, "cycle"), truth), truth, WIN / FS)
                                  for truth, c in items]) for name, items in sets.items()}
            w, s = r["walking talker"], r["two-talker sums"]
            print(f"| {'shipped' if text == '{}' else '`' + text + '`'} | {w['f1']:.3f} / {w['precision']:.3f} | "
                  f"{w['doa_error_mean_deg']:.2f} | {s['f1']:.3f} / {s['precision']:.3f} / {s['recall']:.3f} | "
                  f"{s['doa_error_mean_deg']:.2f} |", flush=True)
        return 0
    refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine)
    rows: dict[str, list[tuple[float, float]]] = {"explained by no talker": [], "a talker": []}
    for items in sets.values():
        for truth, c in items:
            for k, m in enumerate(sb.decode_cached(model, c, base, "cycle")):
                if not scored([m], truth):
                    continue
                peak = newest_peak(refiner, c["hop_cross"][max(0, k + 1 - base.now_hops):k + 1])
                for src in m["sources"]:
                    d = min(float(angular_distance_deg(src["azimuth_deg"], tr.azimuth_at(m["t_s"]))) for tr in truth)
                    found = peak(src["azimuth_deg"], base.now_half_deg)
                    key = "a talker" if d <= HIT_DEG else "explained by no talker"
                    rows[key].append((src["confidence"], 0.0 if found is None else found[1]))
    print("| output | n | confidence p10 / p25 / p50 / p75 | newest peak strength p10 / p25 / p50 / p75 (0: none) |")
    print("| --- | ---: | --- | --- |")
    for key, v in rows.items():
        a = np.array(v)
        q = lambda x: " / ".join(f"{y:.3f}" for y in np.quantile(x, [0.1, 0.25, 0.5, 0.75]))  # noqa: E731
        print(f"| {key} | {len(a)} | {q(a[:, 0])} | {q(a[:, 1])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
