"""Fine-tune the model to your own room and array from a few recordings (needs edge-msl[train] to fine-tune).

A resumable session (default /var/lib/edge-msl/calibration): record one position at a time through
the daemon's ALSA device, then let 'all' build the set, fine-tune, convert to int8, validate on
positions held out whole (never trained on) and install into the daemon's state directory only if
it is better there.

  edge-msl calibrate record --seconds 8            (play speech from one spot; repeat for 8+ spots around)
  edge-msl calibrate record --azimuth-deg 90 --distance-m 1.5   (a direction you measured)
  edge-msl calibrate record --moving --seconds 30   (talk while walking around; labelled along the walk)
  edge-msl calibrate label                          (SRP-PHAT self-labels; rejects clips that are not one source)
  edge-msl calibrate all --bank bank.npz            (build, finetune, convert, validate, install, report)
  edge-msl calibrate build|finetune|convert|validate|install|report   (one step at a time)
  edge-msl calibrate --rollback                     (put the previously installed model back)

The daemon runs the installed model (<state-dir>/models/<array>.tflite, edge_msl.model_store) when its
config names no model; after an install it is told to reload (SIGHUP to --pid-file's process, else to
edge-msl.service).
stdout: one JSON object per step; progress and errors on stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path

from ..config import DEFAULT_CONFIG_PATH
from ..model_store import DEFAULT_STATE_DIR

STEP_NAMES = ("record", "label", "build", "finetune", "convert", "validate", "install", "report", "all")
_NEEDS_TF = ("finetune", "convert", "all")

log = logging.getLogger("edge_msl.calibrate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Steps as positional choice, options shared by all steps."""
    parser.add_argument("step", nargs="?", choices=STEP_NAMES, help="what to do (see above)")
    parser.add_argument("--rollback", action="store_true", help="reinstate the previously installed model and reload")
    parser.add_argument("--session", metavar="DIR", default=None,
                        help="session directory (default: <state-dir>/calibration)")
    parser.add_argument("--state-dir", metavar="DIR", default=str(DEFAULT_STATE_DIR),
                        help=f"the daemon's state directory; models go to DIR/models (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"the daemon's TOML config, for [device] and array (default {DEFAULT_CONFIG_PATH} if it "
                             "exists)")
    parser.add_argument("--device", metavar="PCM", default=None, help="ALSA capture PCM (overrides [device] name)")
    parser.add_argument("--array", metavar="NAME", default=None, help="array name (overrides the config's)")
    r = parser.add_argument_group("record")
    r.add_argument("--seconds", type=float, default=8.0, help="length of one clip (default 8)")
    r.add_argument("--azimuth-deg", type=float, default=None, help="the position's direction, if you measured it")
    r.add_argument("--distance-m", type=float, default=None, help="the position's horizontal distance, if measured")
    r.add_argument("--name", default=None, help="name of the position (default pos-NN)")
    r.add_argument("--moving", action="store_true",
                   help="the talker walks while speaking: short windows are labelled along the walk")
    r.add_argument("--redo", action="store_true", help="label: label every clip again")
    b = parser.add_argument_group("build / finetune")
    b.add_argument("--sim-data", metavar="DIR", default=None,
                   help="simulated windows for the array (python -m train_tf.simulate windows ...)")
    b.add_argument("--bank", metavar="FILE", default=None,
                   help="or a dry-signal bank to simulate them from (python -m train_tf.signals build)")
    b.add_argument("--simulated", type=int, default=None, help="simulated windows in the set (default 400; 0: none)")
    b.add_argument("--mixtures", type=int, default=None, help="real two-source training windows (default 200)")
    b.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 6)")
    b.add_argument("--workers", type=int, default=1, help="processes simulating windows (default 1)")
    b.add_argument("--keras-model", metavar="DIR", default=None,
                   help="float Keras model directory (default: models/<array> of a source checkout, else the "
                        "float16 copy packaged with edge-msl)")
    i = parser.add_argument_group("validate / install")
    i.add_argument("--before", metavar="TFLITE", default=None,
                   help="model to compare with (default: the installed one, else the packaged one)")
    i.add_argument("--no-install", action="store_true", help="all: stop after validate and report")
    i.add_argument("--pid-file", metavar="FILE", default=None, help="the daemon's pid file, to send it SIGHUP")


def _fail(message: str, code: int = 1) -> int:
    print(f"edge-msl calibrate: {message}", file=sys.stderr)
    return code


def _say(message: str) -> None:
    print(f"calibrate: {message}", file=sys.stderr)


def _emit(obj: dict) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _device_and_array(args: argparse.Namespace):
    from ..config import ConfigError, load_config

    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    overrides = []
    if args.device:
        overrides.append(("device.name", args.device))
    if args.array:
        overrides.append(("array", args.array))
    try:
        config = load_config(path, overrides)
    except (ConfigError, OSError) as exc:
        raise SystemExit(_fail(str(exc).splitlines()[0], 78))
    return config


def main(args: argparse.Namespace) -> int:
    """Run one step (or the rollback); errors are one line on stderr."""
    if not args.step and not args.rollback:
        return _fail("name a step (record, label, build, finetune, convert, validate, install, report, all) or "
                     "--rollback; see edge-msl calibrate --help", 2)
    if args.step in _NEEDS_TF and importlib.util.find_spec("tensorflow") is None:
        return _fail(f"'{args.step}' fine-tunes the model with TensorFlow, which is not installed; "
                     "pip install 'edge-msl[train]' (or run this step on another machine with the session copied)")
    try:
        from train_tf import calibrate as cal
    except ImportError as exc:
        return _fail(f"the calibration code is missing ({exc}); pip install 'edge-msl[train]'")
    state = Path(args.state_dir)
    try:
        if args.rollback:
            config = _device_and_array(args)
            dst = cal.rollback(state, config.array.name)
            _emit({"step": "rollback", "model": str(dst), "notify": cal.notify_daemon(args.pid_file)})
            return 0
        return _step(args, cal, state)
    except cal.CalibrationError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a full disk, a read-only state directory, a vanished device: one line, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"{args.step or 'rollback'} failed: {exc.strerror or exc}{where}")


def _open_session(args, cal, state: Path, create: bool = False):
    directory = Path(args.session) if args.session else state / "calibration"
    if create:
        from ..runtime import read_info

        config = _device_and_array(args)
        info = read_info(cal.installed_model(state, config.array))
        session = cal.Session.create(directory, config.array, info.sample_rate_hz, info.window_samples,
                                     args.keras_model)
        return session, config
    return cal.Session(directory), None


def _apply_overrides(args, session) -> None:
    from ..settings_check import SettingError

    flags = {"n_simulated": "--simulated", "n_mixtures": "--mixtures", "epochs": "--epochs"}
    changes = {k: getattr(args, f[2:]) for k, f in flags.items() if getattr(args, f[2:]) is not None}
    if changes:
        try:  # the session's own settings check (train_tf.calibrate.CalibrationSettings), once
            settings = type(session.settings).from_dict(changes, base=session.settings)
        except SettingError as exc:
            key = str(exc.key).rsplit(".", 1)[-1]
            raise SystemExit(_fail(f"{flags.get(key, key)} {exc.value}: allowed: {exc.allowed}", 2)) from None
        session.settings = settings
        session.data["settings"] = session.settings.to_dict()
        session.save()
    if args.keras_model:
        session.data["keras_model"] = args.keras_model
        session.save()


def _step(args, cal, state: Path) -> int:
    import time

    step = args.step
    if step == "record":
        if args.seconds <= 0.6:
            return _fail(f"--seconds {args.seconds}: record at least 1 s (8 s or more works best)", 2)
        session, config = _open_session(args, cal, state, create=True)
        _say(f"recording {args.seconds:g} s from {config.device.name} ({config.array.name}); "
             + ("talk while walking slowly around the array" if args.moving else
                "play speech from one spot and keep still"))
        t0 = time.perf_counter()
        audio = cal.record_clip(config.device, config.array, args.seconds, session.sample_rate_hz)
        pos = session.add_clip(audio, args.azimuth_deg, args.distance_m, args.name, moving=args.moving)
        label = cal.label_positions(session)[-1]
        session.record_step("record", time.perf_counter() - t0 + session.data["steps"].get("record", {}).get("seconds", 0))
        _say(f"{pos['name']}: {_describe(label)}")
        _emit({"step": "record", "position": pos["name"], "clip": str(session.dir / pos["clip"]), "label": label,
               "positions": len(session.positions), "labelled": len(session.labelled())})
        return 0
    session, _ = _open_session(args, cal, state)
    _apply_overrides(args, session)
    t0 = time.perf_counter()
    if step == "label":
        labels = cal.label_positions(session, redo=args.redo)
        for p, lb in zip(session.positions, labels):
            _say(f"{p['name']}: {_describe(lb)}")
        out = {"labels": {p["name"]: lb for p, lb in zip(session.positions, labels)}}
    elif step == "build":
        out = {"counts": cal.build_set(session, sim_data=args.sim_data, bank=args.bank, workers=args.workers)}
    elif step == "finetune":
        ft = cal.finetune(session, args.keras_model, progress=_say)
        out = {k: ft[k] for k in ("windows", "trainable_parameters", "loss")}
    elif step == "convert":
        out = {"model": str(cal.convert_model(session))}
    elif step == "validate":
        before = args.before or cal.installed_model(state, session.array)
        val = cal.validate(session, before)
        _say(f"{'better' if val['better'] else 'not better'}: {val['why']}")
        out = {"better": val["better"], "why": val["why"], "sets": val["sets"]}
    elif step == "install":
        v = session.dir / "validation.json"
        if not v.exists():
            return _fail(f"no validation in {session.dir}; run 'edge-msl calibrate validate' first")
        val = json.loads(v.read_text())
        if not val["better"]:
            return _fail(f"not installed: the calibrated model is not better ({val['why']}); record more positions "
                         "or keep the current model")
        dst = cal.install(val["after"], state, session.array.name)
        out = {"model": str(dst), "notify": cal.notify_daemon(args.pid_file)}
        _say(f"installed {dst}; {out['notify']}")
    elif step == "report":
        text = cal.report(session)
        print(text, file=sys.stderr)
        out = {"report": str(session.dir / "report.md"), "png": str(session.dir / "report.png")}
    else:  # all
        res = cal.run_all(session, keras_model=args.keras_model, state_dir=state, sim_data=args.sim_data,
                          bank=args.bank, workers=args.workers, do_install=not args.no_install,
                          pid_file=args.pid_file, say=_say)
        out = {k: res[k] for k in ("counts", "better", "why", "model", "installed")}
        out["notify"] = res.get("notify")
        out["report"] = str(session.dir / "report.md")
    if step not in ("report", "all"):
        session.record_step(step, time.perf_counter() - t0)
    _emit({"step": step, "session": str(session.dir), **out})
    return 0


def _describe(label: dict) -> str:
    head = f"{label['azimuth_deg']:.0f} deg ({label['source']}"
    if label["source"] == "srp-phat":
        head += f", confidence {label['confidence']:.0%}, second peak {label['second_peak']:.0%}"
    if label.get("moving"):
        track = label.get("track_deg") or [label["azimuth_deg"]]
        head = (f"walk, {label['windows']} windows labelled ({label['source']}, {min(track):.0f}-{max(track):.0f} "
                "deg")
    head += ")"
    return head + ("" if label["accepted"] else f" REJECTED: {label['reason']}; record this position again")
