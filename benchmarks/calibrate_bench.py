"""Calibration benchmark: before/after on a perturbed-array stand-in room and on the AV16.3 recording.

    taskset -c 0 .venv/bin/python benchmarks/calibrate_bench.py [--standin] [--av16] [--out DIR]

Stand-in room: a simulated room the model never saw with a perturbed array (``train_tf.calibrate.
StandInRoom``); clips at ``--positions`` directions are self-labelled, ~200 real + ~200 simulated
windows fine-tune the shipped model, and both int8 models are scored on held-out two-source mixtures
at fresh positions. AV16.3: the first 40 % of the recording calibrates, mixtures of the rest evaluate.
Prints markdown tables; timing figures are wall-clock seconds on the cores this process may use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_msl.arrays import get_array  # noqa: E402
from train_tf import calibrate as cal  # noqa: E402


def _score(tflite, array, audio, az):
    return cal._summary(cal.score_model(tflite, array, audio, az))


def _row(name, before, after):
    e = lambda s: "-" if s["err_mean"] is None else f"{s['err_mean']:.2f}"  # noqa: E731
    change = ""
    if before["err_mean"] and after["err_mean"] is not None:
        change = f"{100 * (after['err_mean'] / before['err_mean'] - 1):+.0f} %"
    return (f"| {name} | {before['windows']} | {e(before)} | {e(after)} | {change} | {before['f1']:.3f} | "
            f"{after['f1']:.3f} | {before['recall']:.3f} / {before['precision']:.3f} | "
            f"{after['recall']:.3f} / {after['precision']:.3f} |")


HEADER = ("| held-out set | windows | DOA err before (°) | after (°) | change | F1 before | F1 after | "
          "R / P before | R / P after |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def _overrides(args) -> dict:
    """``--setting KEY=JSON`` pairs (any CalibrationSettings field)."""
    out = {}
    for item in args.setting:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--setting {item}: the value must be JSON (e.g. learning_rate=5e-4, "
                             'train_layers=["conv0","heads"])') from None
    return out


def standin(args, work: Path) -> dict:
    from train_tf.signals import DryBank

    array = get_array("uca8-r10")
    rng = np.random.default_rng(args.seed)
    room = cal.StandInRoom(array, seed=args.seed)
    bank = DryBank.load(args.bank)
    settings = cal.CalibrationSettings.from_dict({
        "max_singles": args.real // 2, "n_mixtures": args.real - args.real // 2, "n_simulated": args.simulated,
        "epochs": args.epochs, "seed": args.seed, **_overrides(args)})
    session = cal.Session.create(work / "session", array, 16000, 8000, args.keras_model, settings)
    t0 = time.perf_counter()
    az = (np.arange(args.positions) * 360.0 / args.positions + rng.uniform(0, 360.0 / args.positions)) % 360
    dist = rng.uniform(0.8, 2.5, args.positions)
    rirs = room.rirs(az, dist, rng.uniform(-5, 20, args.positions))
    for p in range(args.positions):
        dry = cal.dry_speech(bank, int(args.clip_s * 16000) + rirs.shape[2] - 1, rng, 1)
        clip = room.render(rirs[[p]], dry, level_dbfs=float(rng.uniform(-35, -22)))
        session.add_clip(clip, azimuth_deg=float(az[p]) if args.entered else None)
    labels = cal.label_positions(session)
    label_err = [float(cal.angular_distance_deg(lb["azimuth_deg"], a)) for lb, a in zip(labels, az)]
    nominal_err = [float(cal.angular_distance_deg(lb.get("nominal_azimuth_deg", lb["azimuth_deg"]), a))
                   for lb, a in zip(labels, az)]
    fe = cal.session_front_end(session)
    fe_err = None
    if fe is not None:  # against the stand-in's true errors, all relative to the mean over mics
        rel = lambda v: np.asarray(v, dtype=np.float64) - np.mean(v)  # noqa: E731
        fe_err = {"gain_db": float(np.abs(rel(fe.gain_db) - rel(20 * np.log10(room.gain))).max()),
                  "delay_us": float(1e6 * np.abs(rel(fe.delay_s) - rel(room.delay_s)).max()),
                  "phase_deg": float(np.abs(rel(fe.phase_deg) - rel(np.degrees(room.phase_rad))).max())}
    sim_seconds = time.perf_counter() - t0
    state = work / "state"
    res = cal.run_all(session, keras_model=args.keras_model, state_dir=state, sim_data=args.sim_data,
                      bank=args.sim_bank, do_install=True, say=lambda m: print(m, file=sys.stderr))
    steps = session.data["steps"]
    mix, truth = cal.standin_mixtures(room, bank, args.heldout, 8000, np.random.default_rng(args.seed + 100))
    before = _score(cal.installed_model(work / "none", array), array, mix, truth)
    after = _score(res["model"], array, mix, truth)
    return {"label_err_mean_deg": float(np.mean(label_err)), "label_err_max_deg": float(np.max(label_err)),
            "nominal_label_err_mean_deg": float(np.mean(nominal_err)), "front_end_err": fe_err,
            "accepted": sum(bool(lb["accepted"]) for lb in labels), "positions": args.positions,
            "counts": res["counts"], "steps": steps, "validation": res["validation"], "installed": res["installed"],
            "heldout": {"before": before, "after": after}, "simulate_clips_s": sim_seconds}


def av16(args, work: Path) -> dict:
    from train_tf.real_av16 import DEFAULT_DIR, build_mixtures, load_array, self_label

    data_dir = Path(args.av16_dir or DEFAULT_DIR)
    if not data_dir.is_dir():
        raise SystemExit(f"AV16.3 data not found at {data_dir}; pass --av16-dir DIR")
    array = get_array("uca8-r10")
    audio = load_array(data_dir)
    window, hop = 8000, 4000
    labels = self_label(audio, window, hop)
    first = int(0.4 * len(audio))
    settings = cal.CalibrationSettings.from_dict({"n_simulated": args.simulated, "epochs": args.epochs,
                                                  "seed": args.seed, **_overrides(args)})
    session = cal.Session.create(work / "av16", array, 16000, window, args.keras_model, settings)
    # the talker walks, so there are no fixed positions: every self-labelled window of the first 40 % is a
    # single-source window, and sums of two of them >= 30 deg and >= 2 s apart are two-source windows
    early = {k: v[labels["start"] + window <= first] if k in ("start", "azimuth_deg", "level_db") else v
             for k, v in labels.items()}
    train = build_mixtures(audio[:first], early, window, args.real, 30.0, 2.0, 0, args.seed)
    val = build_mixtures(audio, labels, window, 300, 30.0, 2.0, first, args.seed + 1)
    sim = cal.simulated_windows(session, args.simulated, sim_data=args.sim_data, bank=args.sim_bank)
    nan2 = lambda a: np.concatenate([a, np.full((len(a), 2 - a.shape[1]), np.nan)], axis=1)  # noqa: E731
    out = {
        "train_audio": np.concatenate([train["single_audio"], train["mix_audio"]]),
        "train_azimuth_deg": np.concatenate([nan2(train["single_az"]), train["mix_az"]]),
        "val_audio": np.concatenate([val["single_audio"], val["mix_audio"]]),
        "val_azimuth_deg": np.concatenate([nan2(val["single_az"]), val["mix_az"]]),
        "val_kind": np.array(["single"] * len(val["single_audio"]) + ["mixture"] * len(val["mix_audio"])),
        "val_position": np.full((len(val["single_audio"]) + len(val["mix_audio"]), 2), -1),
        "position_names": np.array([], dtype=str),
        **{f"sim_{k}": v for k, v in sim.items()}}
    out["train_distance_m"] = np.full(out["train_azimuth_deg"].shape, np.nan)
    np.savez(session.dir / "set.npz", **out)
    t0 = time.perf_counter()
    ft = cal.finetune(session, args.keras_model)
    t1 = time.perf_counter()
    tflite = cal.convert_model(session)
    t2 = time.perf_counter()
    val_res = cal.validate(session, cal.installed_model(work / "none", array), tflite)
    return {"train_single": int(len(train["single_audio"])), "train_mix": int(len(train["mix_audio"])),
            "simulated": int(len(sim["audio"])), "val_single": int(len(val["single_audio"])),
            "val_mix": int(len(val["mix_audio"])), "finetune_s": t1 - t0, "convert_s": t2 - t1,
            "trainable_parameters": ft["trainable_parameters"], "sets": val_res["sets"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--standin", action="store_true", help="run the stand-in room (default: both)")
    p.add_argument("--av16", action="store_true", help="run the AV16.3 check (default: both)")
    p.add_argument("--av16-dir", default=None)
    p.add_argument("--keras-model", default=str(ROOT / "models" / "uca8-r10"))
    p.add_argument("--bank", default=str(ROOT / "data" / "dry" / "bank-test.npz"),
                   help="dry signals played in the stand-in room (held-out signals)")
    p.add_argument("--sim-data", default=None, help="simulated windows for the array (a train_tf.simulate windows set)")
    p.add_argument("--sim-bank", default=str(ROOT / "data" / "dry" / "bank-train.npz"),
                   help="else simulate them now from this dry-signal bank (training signals)")
    p.add_argument("--positions", type=int, default=12)
    p.add_argument("--clip-s", type=float, default=8.0)
    p.add_argument("--real", type=int, default=200, help="real training windows (half single, half summed)")
    p.add_argument("--simulated", type=int, default=200)
    p.add_argument("--epochs", type=int, default=cal.CalibrationSettings.epochs)
    p.add_argument("--heldout", type=int, default=200, help="held-out two-source mixtures in the stand-in room")
    p.add_argument("--entered", action="store_true", help="enter the true directions instead of self-labelling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", action="append", default=[], metavar="KEY=JSON",
                   help="override a CalibrationSettings field (repeatable), e.g. --setting epochs=10")
    p.add_argument("--out", default=None, help="keep the sessions and write results.json here")
    args = p.parse_args(argv)
    if args.sim_data:
        args.sim_bank = None
    both = not (args.standin or args.av16)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="calibrate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"cpus": sorted(os.sched_getaffinity(0))}
    if args.standin or both:
        r = results["standin"] = standin(args, work)
        st = r["steps"]
        print(f"\nStand-in room (perturbed uca8-r10), {r['positions']} positions, {r['accepted']} accepted, "
              f"label error mean {r['label_err_mean_deg']:.1f}° / max {r['label_err_max_deg']:.1f}° "
              f"(nominal-geometry SRP-PHAT {r['nominal_label_err_mean_deg']:.1f}°); mic errors estimated "
              f"within {r['front_end_err']}; "
              f"windows {r['counts']}\n")
        print(HEADER)
        print(_row("stand-in two-source mixtures, fresh positions", r["heldout"]["before"], r["heldout"]["after"]))
        for k in ("mixture", "single"):
            v = r["validation"][k]
            print(_row(f"session held-out real {k}", v["before"], v["after"]))
        print(f"\nsteps (s): " + ", ".join(f"{k} {v['seconds']:.1f}" for k, v in st.items()) +
              f"; fine-tune + convert {st['finetune']['seconds'] + st['convert']['seconds']:.1f} s on CPUs "
              f"{results['cpus']}; installed: {r['installed']}")
    if args.av16 or both:
        r = results["av16"] = av16(args, work)
        print(f"\nAV16.3 seq11-1p-0100 array1: calibration {r['train_single']} self-labelled + {r['train_mix']} summed "
              f"windows (first 40 %) + {r['simulated']} simulated; evaluation {r['val_single']} single + "
              f"{r['val_mix']} two-talker mixtures from the rest\n")
        print(HEADER)
        for k in ("mixture", "single"):
            v = r["sets"][k]
            print(_row(f"AV16.3 {k}", v["before"], v["after"]))
        print(f"\nfine-tune {r['finetune_s']:.1f} s + convert {r['convert_s']:.1f} s on CPUs {results['cpus']}")
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {work / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
