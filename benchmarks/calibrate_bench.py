"""Calibration benchmark: before/after on a perturbed-array stand-in room and on the AV16.3 recording.

    taskset -c 0 .venv/bin/python -m benchmarks.calibrate_bench [--standin] [--av16] [--grid 8,12,16] [--out DIR]

Stand-in room: a simulated room the model never saw with a perturbed array (``train_tf.calibrate.
StandInRoom``); clips at ``--positions`` directions are self-labelled and run through ``calibrate all``
(a quarter of the positions held out whole for its validation), and both int8 models are scored on
two-source mixtures at fresh positions of that room. ``--grid`` runs it for several position counts x
``--seeds`` rooms and prints one table. AV16.3: the first 40 % of the recording is one walk clip of a
session (labelled window by window along the walk), two-talker sums of the rest evaluate. Recordings,
test sets and a pool of simulated windows are made once under ``--cache``. Prints markdown tables;
timing figures are wall-clock seconds on the cores this process may use.
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

from edge_msl.arrays import get_array  # noqa: E402
from train_tf import calibrate as cal  # noqa: E402
from train_tf.calibrate.validate import decision_sets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _score(tflite, array, audio, az, threshold=None, outputs_cache=None):
    return cal._summary(cal.score_model(tflite, array, audio, az, threshold=threshold, outputs_cache=outputs_cache))


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


def _cached(path: Path, make):
    """``make()`` (a dict of arrays) stored at ``path`` once; later runs load it (clips and test sets are
    the slow part of a run and do not depend on the recipe)."""
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)
    return data


def sim_pool(args, n: int) -> str:
    """A pool of simulated windows for uca8-r10 (``train_tf.simulate windows``, training signals), made once."""
    from train_tf.simulate import SimSettings, write_dataset

    d = Path(args.cache) / f"sim-pool-{n}"
    if not (d / "done").exists():
        settings = SimSettings(array="uca8-r10", sample_rate_hz=16000, window_s=0.5, n_sources=(1, 3),
                               min_source_separation_deg=20.0)
        write_dataset(d, "windows", n, settings, seed=1, bank_path=args.sim_bank, shard_size=50, workers=1,
                      progress=False)
        (d / "done").write_text("")
    return str(d)


def standin_clips(args, array, bank) -> dict:
    """The user's recording: ``--positions`` clips evenly around the array (random offset), self-labelled."""
    def make():
        rng = np.random.default_rng(args.seed)
        room = cal.StandInRoom(array, seed=args.seed)
        az = (np.arange(args.positions) * 360.0 / args.positions + rng.uniform(0, 360.0 / args.positions)) % 360
        dist = rng.uniform(0.8, 2.5, args.positions)
        rirs = room.rirs(az, dist, rng.uniform(-5, 20, args.positions))
        clips = []
        for p in range(args.positions):
            dry = cal.dry_speech(bank, int(args.clip_s * 16000) + rirs.shape[2] - 1, rng, 1)
            clips.append(room.render(rirs[[p]], dry, level_dbfs=float(rng.uniform(-35, -22))))
        return {"clips": np.stack(clips), "azimuth_deg": az, "distance_m": dist}
    return _cached(Path(args.cache) / f"standin-s{args.seed}-p{args.positions}-c{args.clip_s:g}.npz", make)


def standin_test(args, array, bank) -> dict:
    """Two-source mixtures at fresh positions of the seed's room (the same for any number of positions) and
    the packaged model's score on them."""
    def make():
        room = cal.StandInRoom(array, seed=args.seed)
        mix, truth = cal.standin_mixtures(room, bank, args.heldout, 8000, np.random.default_rng(args.seed + 100))
        return {"audio": mix, "azimuth_deg": truth}
    return _cached(Path(args.cache) / f"standin-test-s{args.seed}-n{args.heldout}.npz", make)


def standin(args, work: Path) -> dict:
    from train_tf.signals import DryBank

    array = get_array("uca8-r10")
    room = cal.StandInRoom(array, seed=args.seed)
    bank = DryBank.load(args.bank)
    real = {} if args.real is None else {"max_singles": args.real // 2, "n_mixtures": args.real - args.real // 2}
    settings = cal.CalibrationSettings.from_dict({**real, "n_simulated": args.simulated, "epochs": args.epochs,
                                                  "seed": args.seed, **_overrides(args)})
    session = cal.Session.create(work / "session", array, 16000, 8000, args.keras_model, settings)
    t0 = time.perf_counter()
    rec = standin_clips(args, array, bank)
    az = rec["azimuth_deg"]
    if not session.positions:
        for clip, a in zip(rec["clips"], az):
            session.add_clip(clip, azimuth_deg=float(a) if args.entered else None)
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
    test = standin_test(args, array, bank)
    before_path = Path(args.cache) / f"standin-test-s{args.seed}-n{args.heldout}.before.json"
    if before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        before = _score(cal.installed_model(work / "none", array), array, test["audio"], test["azimuth_deg"])
        before_path.write_text(json.dumps(before))
    after = _score(res["model"], array, test["audio"], test["azimuth_deg"])
    return {"label_err_mean_deg": float(np.mean(label_err)), "label_err_max_deg": float(np.max(label_err)),
            "nominal_label_err_mean_deg": float(np.mean(nominal_err)), "front_end_err": fe_err,
            "accepted": sum(bool(lb["accepted"]) for lb in labels), "positions": args.positions,
            "counts": res["counts"], "steps": steps, "validation": res["validation"], "installed": res["installed"],
            "why": res["why"], "threshold": json.loads((session.dir / "model" / "params.json").read_text())
            .get("decode", {}).get("threshold"),
            "heldout": {"before": before, "after": after}, "simulate_clips_s": sim_seconds, "seed": args.seed}


def av16(args, work: Path) -> dict:
    from train_tf.real_av16 import DEFAULT_DIR, build_mixtures, load_array, self_label

    data_dir = Path(args.av16_dir or DEFAULT_DIR)
    if not data_dir.is_dir():
        raise SystemExit(f"AV16.3 data not found at {data_dir}; pass --av16-dir DIR")
    array = get_array("uca8-r10")
    audio = load_array(data_dir)
    window = 8000
    first = int(0.4 * len(audio))
    # holdout_fraction 0: the whole walk trains, since the rest of the recording is the validation here
    settings = cal.CalibrationSettings.from_dict({"n_simulated": args.simulated, "epochs": args.epochs,
                                                  "seed": args.seed, "moving_hop_s": args.av16_hop_s,
                                                  "holdout_fraction": 0.0, **_overrides(args)})
    session = cal.Session.create(work / "av16", array, 16000, window, args.keras_model, settings)
    # the talker walks: the first 40 % is one walk clip of the session (record --moving), labelled window by
    # window along the walk; evaluation: two-talker sums of the rest, labelled as train_tf.real_av16 does
    if not session.positions:
        session.add_clip(audio[:first], name="walk", moving=True)
    t0 = time.perf_counter()
    walk = cal.label_positions(session)[0]
    label_s = time.perf_counter() - t0
    counts = cal.build_set(session, sim_data=args.sim_data, bank=args.sim_bank)
    if args.av16_labels == "triangulated":
        # labels independent of array1's SRP-PHAT (which self-labels the walk): the two-array path at each
        # window's centre, where it is known and the talker loud
        from train_tf.av16_labels import window_labels

        val_labels = window_labels(audio, load_array(data_dir, "array2"), window, 4000)
    else:
        val_labels = self_label(audio, window, 4000)
    val = build_mixtures(audio, val_labels, window, 300, 30.0, 2.0, first, args.seed + 1)
    nan2 = lambda a: np.concatenate([a, np.full((len(a), 2 - a.shape[1]), np.nan)], axis=1)  # noqa: E731
    n_val = len(val["single_audio"]) + len(val["mix_audio"])
    with np.load(session.dir / "set.npz") as z:
        data = {k: z[k] for k in z.files}
    data.update({"val_audio": np.concatenate([val["single_audio"], val["mix_audio"]]),
                 "val_azimuth_deg": np.concatenate([nan2(val["single_az"]), val["mix_az"]]),
                 "val_kind": np.array(["single"] * len(val["single_audio"]) + ["mixture"] * len(val["mix_audio"])),
                 "val_position": np.full((n_val, 2), -1)})
    np.savez(session.dir / "set.npz", **data)
    t0 = time.perf_counter()
    ft = cal.finetune(session, args.keras_model)
    t1 = time.perf_counter()
    tflite = cal.convert_model(session)
    t2 = time.perf_counter()
    val_res = cal.validate(session, cal.installed_model(work / "none", array), tflite)
    track = walk.get("track_deg") or [0.0]
    return {"labelled": int(walk["windows"]), "label_s": label_s, "labelled_span_deg": [min(track), max(track)],
            "front_end": session.data.get("front_end") is not None,
            "train_single": counts["real_single_train"], "train_mix": counts["real_mixture_train"],
            "simulated": counts["simulated_train"], "tune": int(len(data["tune_audio"])),
            "val_single": int(len(val["single_audio"])), "val_mix": int(len(val["mix_audio"])),
            "finetune_s": t1 - t0, "convert_s": t2 - t1,
            "threshold": json.loads((session.dir / "model" / "params.json").read_text())["decode"]["threshold"],
            "trainable_parameters": ft["trainable_parameters"], "sets": val_res["sets"],
            **({"eval_labels": args.av16_labels} if args.av16_labels != "srp" else {})}


def _pct(before, after):
    return f"{100 * (after / before - 1):+.0f} %" if before and after is not None else "-"


GRID_HEADER = ("| positions | seed | fresh: DOA err before → after (°) | change | F1 before → after | "
               "recall before → after | validation: held-out positions' err before → after (margin) | "
               "validation: F1, recall (pooled) before → after | installed | fine-tune + convert (s) |\n"
               "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")


def _decision(v: dict) -> tuple[dict, bool, str]:
    """Today's install rule on a session's validation.json: ``decision_sets`` and ``is_better``."""
    s = cal.CalibrationSettings()
    d = decision_sets(v["sets"], v.get("per_position", {}) if v.get("heldout_positions") else {}, s)
    ok, why = cal.is_better(d["before"], d["after"], s.f1_tolerance, s.recall_tolerance, d["error_margin_deg"])
    return d, ok, why


def _grid_row(r: dict, d: dict, installed: bool) -> str:
    b, a = r["heldout"]["before"], r["heldout"]["after"]
    db, da = d["before"], d["after"]
    st = r["steps"]
    return (f"| {r['positions']} | {r['seed']} | {b['err_mean']:.2f} → {a['err_mean']:.2f} | "
            f"{_pct(b['err_mean'], a['err_mean'])} | {b['f1']:.3f} → {a['f1']:.3f} | "
            f"{b['recall']:.3f} → {a['recall']:.3f} | {db['err_mean']:.2f} → {da['err_mean']:.2f} "
            f"(±{d['error_margin_deg']:.2f}) | {db['f1']:.3f} → {da['f1']:.3f}, {db['recall']:.3f} → "
            f"{da['recall']:.3f} | {'yes' if installed else 'no'} | "
            f"{st['finetune']['seconds'] + st['convert']['seconds']:.0f} |")


def grid(args, work: Path) -> list:
    """The stand-in over ``--grid`` position counts x ``--seeds`` rooms: one summary table."""
    rows = []
    print(GRID_HEADER, flush=True)
    for positions in [int(v) for v in args.grid.split(",")]:
        for seed in [int(v) for v in args.seeds.split(",")]:
            sub = argparse.Namespace(**{**vars(args), "positions": positions, "seed": seed})
            r = standin(sub, work / f"p{positions}-s{seed}")
            rows.append({"positions": positions, "seed": seed, **r})
            v = json.loads((work / f"p{positions}-s{seed}" / "session" / "validation.json").read_text())
            print(_grid_row(rows[-1], _decision(v)[0], bool(r["installed"])), flush=True)
            (work / "grid.json").write_text(json.dumps(rows, indent=2, default=str))
    return rows


def summarize(dirs: list[str]) -> None:
    """The ``--grid`` table again from the runs' grid.json (or a single run's results.json), the install
    decision taken by today's rule (``decision_sets`` + ``is_better``, default settings) on each run's own
    session validation.json."""
    rows = []
    for d in dirs:
        g = Path(d) / "grid.json"
        if g.exists():
            rows += [(Path(d) / f"p{r['positions']}-s{r['seed']}", r) for r in json.loads(g.read_text())]
        else:  # one --standin run: results.json
            r = json.loads((Path(d) / "results.json").read_text())["standin"]
            rows.append((Path(d), {**r, "seed": r.get("seed", "-")}))
    print(GRID_HEADER)
    for where, r in rows:
        d, ok, _ = _decision(json.loads((where / "session" / "validation.json").read_text()))
        print(_grid_row(r, d, ok))


RESCORE_HEADER = ("| positions | seed | a | threshold | fresh: DOA err before → after (°) | change | F1 before → after | "
                  "recall before → after | validation: held-out err before → after (margin) | validation: F1, "
                  "recall (pooled) before → after | installed |\n"
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def rescore(args, dirs: list[str], work: Path) -> list:
    """Earlier ``--grid`` sessions' fine-tuned weights mixed with the original ones (``--interpolate``: a * w_ft +
    (1 - a) * w_0, WiSE-FT), each converted to int8 as the session converts, and scored at fresh positions and by
    the session's own validation and install rule, decoded at each of ``--thresholds``. The fine-tune is the
    session's own, so a row is what ``calibrate all`` with ``weight_interpolation=a`` and that threshold gives."""
    import keras

    array = get_array("uca8-r10")
    bank = None
    alphas = [float(v) for v in args.interpolate.split(",")]
    thresholds = [float(v) for v in args.thresholds.split(",")]
    rows = []
    print(RESCORE_HEADER, flush=True)
    s0 = cal.CalibrationSettings()
    for d in dirs:
        if (Path(d) / "av16" / "set.npz").exists():  # an --av16 run: its validation sets are AV16.3's
            rows += _rescore_av16(Path(d) / "av16", alphas, thresholds, work, array, args.keras_model)
            (work / "rescore.json").write_text(json.dumps(rows, indent=2, default=str))
            continue
        for r in json.loads((Path(d) / "grid.json").read_text()):
            session = cal.Session(Path(d) / f"p{r['positions']}-s{r['seed']}" / "session")
            sub = argparse.Namespace(**{**vars(args), "seed": r["seed"]})
            if bank is None and not (Path(args.cache) / f"standin-test-s{r['seed']}-n{args.heldout}.npz").exists():
                from train_tf.signals import DryBank
                bank = DryBank.load(args.bank)
            test = standin_test(sub, array, bank)
            before = json.loads((Path(args.cache) / f"standin-test-s{r['seed']}-n{args.heldout}.before.json").read_text())
            packaged = cal.installed_model(work / "none", array)
            where = work / f"p{r['positions']}-s{r['seed']}"
            for a, tfl in _interpolated_models(session, alphas, where, args.keras_model):
                for thr in thresholds:
                    after = _score(tfl, array, test["audio"], test["azimuth_deg"], thr, _OUTPUTS)
                    v = cal.validate(session, packaged, tfl, after_threshold=thr, write=False, outputs_cache=_OUTPUTS)
                    dec = decision_sets(v["sets"], v["per_position"] if v["heldout_positions"] else {}, s0)
                    ok, why = cal.is_better(dec["before"], dec["after"], s0.f1_tolerance, s0.recall_tolerance,
                                            dec["error_margin_deg"])
                    row = {"positions": r["positions"], "seed": r["seed"], "alpha": a, "threshold": thr,
                           "fresh": {"before": before, "after": after}, "decision": dec, "installed": ok, "why": why}
                    rows.append(row)
                    b, af, db, da = before, after, dec["before"], dec["after"]
                    print(f"| {r['positions']} | {r['seed']} | {a:g} | {thr:g} | {b['err_mean']:.2f} → "
                          f"{af['err_mean']:.2f} | {_pct(b['err_mean'], af['err_mean'])} | {b['f1']:.3f} → "
                          f"{af['f1']:.3f} | {b['recall']:.3f} → {af['recall']:.3f} | {db['err_mean']:.2f} → "
                          f"{da['err_mean']:.2f} (±{dec['error_margin_deg']:.2f}) | {db['f1']:.3f} → {da['f1']:.3f}, "
                          f"{db['recall']:.3f} → {da['recall']:.3f} | {'yes' if ok else 'no'} |", flush=True)
                    (work / "rescore.json").write_text(json.dumps(rows, indent=2, default=str))
            keras.backend.clear_session()
    return rows


def _interpolated_models(session, alphas, work: Path, keras_model: str):
    """(a, int8 model) for each a: the session's fine-tuned weights mixed with the original ones, converted."""
    from train_tf.model_dir import PARAMS, WEIGHTS, default_weights, load_model

    model, _ = load_model(keras_model, default_weights(keras_model))
    original = [v.numpy() for v in model.weights]
    model.load_weights(session.dir / "model" / WEIGHTS)
    tuned = [v.numpy() for v in model.weights]
    for a in alphas:
        for v, w in zip(model.weights, tuned):
            v.assign(w)
        cal.interpolate_weights(model, original, a)
        mdir = work / f"a{a:g}"
        mdir.mkdir(parents=True, exist_ok=True)
        model.save_weights(mdir / WEIGHTS)
        (mdir / PARAMS).write_text((session.dir / "model" / PARAMS).read_text())
        yield a, cal.convert_model(session, mdir, mdir / "build" / f"{session.array.name}.tflite")


def _rescore_av16(where: Path, alphas, thresholds, work: Path, array, keras_model: str) -> list:
    """An --av16 run's fine-tune mixed with the original weights at each a, scored on its AV16.3 sets."""
    session = cal.Session(where)
    packaged = cal.installed_model(work / "none", array)
    rows = []
    for a, tfl in _interpolated_models(session, alphas, work / "av16", keras_model):
        for thr in thresholds:
            v = cal.validate(session, packaged, tfl, after_threshold=thr, write=False, outputs_cache=_OUTPUTS)
            rows.append({"av16": True, "alpha": a, "threshold": thr, "sets": v["sets"]})
            m, s1 = v["sets"]["mixture"], v["sets"]["single"]
            print(f"| AV16.3 mixtures / singles | - | {a:g} | {thr:g} | {m['before']['err_mean']:.2f} → "
                  f"{m['after']['err_mean']:.2f} | {_pct(m['before']['err_mean'], m['after']['err_mean'])} | "
                  f"{m['before']['f1']:.3f} → {m['after']['f1']:.3f} | {m['before']['recall']:.3f} → "
                  f"{m['after']['recall']:.3f} | singles {s1['before']['err_mean']:.2f} → {s1['after']['err_mean']:.2f} "
                  f"| F1 {s1['before']['f1']:.3f} → {s1['after']['f1']:.3f} | - |", flush=True)
    return rows


_OUTPUTS: dict = {}
"""Each model's outputs on each set, decoded at every threshold (``score_model``'s ``outputs_cache``): a
model's outputs on a set are computed once (validate() re-reads the set)."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--standin", action="store_true", help="run the stand-in room (default: both)")
    p.add_argument("--av16", action="store_true", help="run the AV16.3 check (default: both)")
    p.add_argument("--av16-dir", default=None)
    p.add_argument("--av16-labels", default="srp", choices=("srp", "triangulated"),
                   help="labels of the AV16.3 evaluation windows (the calibration's own self-labels are unchanged): "
                        "srp, array1's SRP-PHAT as train_tf.real_av16.self_label (default); triangulated, the path "
                        "smoothed from both arrays' bearings at each window's centre (train_tf.av16_labels)")
    p.add_argument("--av16-hop-s", type=float, default=0.0625, help="hop between labelled windows along the walk")
    p.add_argument("--keras-model", default=str(ROOT / "models" / "uca8-r10"))
    p.add_argument("--bank", default=str(ROOT / "data" / "dry" / "bank-test.npz"),
                   help="dry signals played in the stand-in room (held-out signals)")
    p.add_argument("--sim-data", default=None, help="simulated windows for the array (a train_tf.simulate windows set)")
    p.add_argument("--sim-bank", default=str(ROOT / "data" / "dry" / "bank-train.npz"),
                   help="else simulate them now from this dry-signal bank (training signals)")
    p.add_argument("--positions", type=int, default=12)
    p.add_argument("--clip-s", type=float, default=8.0)
    p.add_argument("--real", type=int, default=None,
                   help="real training windows, half single, half summed (default: the session's, 200 + 200)")
    p.add_argument("--simulated", type=int, default=cal.CalibrationSettings.n_simulated)
    p.add_argument("--epochs", type=int, default=cal.CalibrationSettings.epochs)
    p.add_argument("--heldout", type=int, default=200, help="held-out two-source mixtures in the stand-in room")
    p.add_argument("--entered", action="store_true", help="enter the true directions instead of self-labelling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", action="append", default=[], metavar="KEY=JSON",
                   help="override a CalibrationSettings field (repeatable), e.g. --setting epochs=10")
    p.add_argument("--grid", default=None, metavar="P,P,...",
                   help="run the stand-in for these position counts x --seeds and print one table")
    p.add_argument("--seeds", default="0,1,2", help="stand-in rooms/perturbations for --grid")
    p.add_argument("--out", default=None, help="keep the sessions and write results.json here")
    p.add_argument("--cache", default=str(ROOT / "out" / "calibrate-cache"),
                   help="recordings, test sets and simulated windows made once and reused here")
    p.add_argument("--sim-pool", type=int, default=800,
                   help="simulate a pool of this many windows once (in --cache) and draw from it (0: per session)")
    p.add_argument("--summarize", nargs="+", default=None, metavar="DIR",
                   help="print the --grid table of earlier --out DIRs (install decision by today's rule)")
    p.add_argument("--rescore", nargs="+", default=None, metavar="DIR",
                   help="earlier --grid or --av16 --out DIRs: their fine-tuned weights mixed with the original ones at each "
                        "--interpolate a, converted and scored at fresh positions and by the session's validation")
    p.add_argument("--interpolate", default="0.5,0.7,0.9,1", metavar="A,A,...",
                   help="--rescore: the mixes a * w_ft + (1 - a) * w_0 (WiSE-FT) to score")
    p.add_argument("--thresholds", default="0.25", metavar="T,T,...", help="--rescore: decode thresholds to score")
    args = p.parse_args(argv)
    if args.summarize:
        summarize(args.summarize)
        return 0
    if args.rescore:
        work = Path(args.out or tempfile.mkdtemp(prefix="calibrate-rescore-"))
        work.mkdir(parents=True, exist_ok=True)
        rescore(args, args.rescore, work)
        return 0
    if not args.sim_data and args.sim_pool > 0 and args.sim_bank and (args.standin or args.av16
                                                                   or not (args.standin or args.av16)):
        args.sim_data = sim_pool(args, args.sim_pool)
    if args.sim_data:
        args.sim_bank = None
    both = not (args.standin or args.av16)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="calibrate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"cpus": sorted(os.sched_getaffinity(0))}
    if args.grid:
        results["grid"] = grid(args, work)
        (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
        return 0
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
        for k, name in (("mixture", "session: positions held out whole, sums"),
                        ("single", "session: positions held out whole, singles"),
                        ("recorded_mixture", "session: recorded positions' tails, sums"),
                        ("recorded_single", "session: recorded positions' tails, singles")):
            if k in r["validation"]:
                v = r["validation"][k]
                print(_row(name, v["before"], v["after"]))
        print(f"\nsteps (s): " + ", ".join(f"{k} {v['seconds']:.1f}" for k, v in st.items()) +
              f"; fine-tune + convert {st['finetune']['seconds'] + st['convert']['seconds']:.1f} s on CPUs "
              f"{results['cpus']}; threshold {r['threshold']}; installed: {r['installed']} ({r['why']})")
    if args.av16 or both:
        r = results["av16"] = av16(args, work)
        print(f"\nAV16.3 seq11-1p-0100 array1: {r['labelled']} windows labelled along the walk in the first 40 % "
              f"({r['label_s']:.1f} s; azimuths {r['labelled_span_deg']}; mic errors estimated: {r['front_end']}); "
              f"training {r['train_single']} single (with turned copies) + {r['train_mix']} summed + "
              f"{r['simulated']} simulated; evaluation {r['val_single']} single + {r['val_mix']} two-talker "
              f"mixtures from the rest"
              + (", labelled from both arrays (train_tf.av16_labels)" if r.get("eval_labels") == "triangulated" else "")
              + "\n")
        print(HEADER)
        for k in ("mixture", "single"):
            v = r["sets"][k]
            print(_row(f"AV16.3 {k}", v["before"], v["after"]))
        print(f"\nfine-tune {r['finetune_s']:.1f} s + convert {r['convert_s']:.1f} s on CPUs {results['cpus']}; "
              f"threshold {r['threshold']}")
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {work / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
