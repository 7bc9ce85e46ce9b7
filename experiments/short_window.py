"""Would a shorter network window, or a shorter hop, follow talkers better? (docs/experiments/short-windows.md)

The SampleCNN ends in a global average pool, so the shipped ``uca8-r10`` weights run unchanged on
shorter windows (a block whose input is shorter than its pool skips the pool). Three reports:

- ``convert SAMPLES``: the shipped weights as a model of ``SAMPLES``-sample windows, int8 (calibrated
  on the last ``SAMPLES`` of ``data/val-speech``'s windows), in ``out/cand/wSAMPLES/``, with the
  shipped decode and ``lead_s`` half the new window. Score it with ``benchmarks.scenes_bench --model``
  and ``train_tf.evaluate --model``.
- ``lag SHORT``: on the validation walks, the error of the packaged model's and the short model's
  detections against the direction some time before the window's end (moving talkers, 5-40°/s).
- ``dual SHORT SETS``: the shipped decode with the short model's newest window as a second measurement
  of each walking talker's track (nearest detection within ``--gate`` of the track, at ``--lag``).
- ``candidate RUN NAME LEAD_S``: a training run's weights (``RUN/model.weights.h5``, else best) as
  ``out/cand/NAME/`` with the shipped decode and ``lead_s`` LEAD_S, int8 (for ``raw-lag`` and the benchmarks).
  ``--with-shipped A`` averages them first with the shipped weights (grown to the run's ``head_frames``), weight A.
- ``raw-lag MODEL``: as ``lag``, for any 0.5 s model (e.g. one fine-tuned with ``move_label`` "end"),
  both models' plain outputs decoded at 0.45, not refined: which instant does each network report?
- ``hop HOP``: the packaged model analysed every ``HOP`` s instead of 0.1 s, decoded with decode
  settings given as JSON (``--v``), on the validation scenes and static windows (the float network's
  outputs, as ``experiments.newest_audio sweep`` does). Scene outputs are cached under
  ``out/hop/HOP-SET/`` (links to the scenes), the static ones in ``out/hop/``.

    .venv/bin/python -m experiments.short_window convert 4000
    .venv/bin/python -m experiments.short_window lag out/cand/w4000/w4000.tflite
    .venv/bin/python -m experiments.short_window dual out/cand/w4000/w4000.tflite data/scenes/val-walk
    .venv/bin/python -m experiments.short_window hop 0.075 --v '{}' --v '{"miss_windows": 2}'
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from benchmarks import scenes_bench as sb
from edge_msl.regions import decode, wrap180

LAGS = (0.0, 0.05, 0.1, 0.125, 0.15, 0.2, 0.25)


def candidate(name: str, params: dict, weights: str | Path, lead_s: float) -> Path:
    """``out/cand/NAME/``: a network's params with the shipped sidecar's decode, region layout and input
    scaling (``lead_s`` set), its weights, and its int8 model calibrated on ``data/val-speech`` (the newest
    part of each window, for a network of shorter windows)."""
    from convert.tflite import convert, representative_windows
    from edge_msl.features import model_scaling

    out = Path("out/cand") / name
    out.mkdir(parents=True, exist_ok=True)
    shipped = json.loads(Path("models/uca8-r10/params.json").read_text())
    p = {**params, **{k: shipped[k] for k in ("decode", "regions", "input_scaling")}}
    p["decode"]["temporal"]["lead_s"] = lead_s
    (out / "params.json").write_text(json.dumps(p, indent=1))
    shutil.copyfile(weights, out / "model.weights.h5")
    calib = representative_windows("data/val-speech", 300, 0, model_scaling(p))
    n = int(p["model"]["window_samples"])
    last_samples = n if n < calib.shape[1] else None
    if last_samples:
        calib = calib[:, -last_samples:]
    convert(out, calib, out / f"{name}.tflite", {"data": "data/val-speech", "last_samples": last_samples})
    return out


def with_shipped(params: dict, weights: Path, alpha: float, out: Path) -> Path:
    """``(1 - alpha)`` x a run's weights + ``alpha`` x the shipped ones (grown to the run's shape by
    ``train_tf.model.transfer_weights``), saved at ``out``."""
    from train_tf.model import ModelConfig, build_model, transfer_weights

    shipped_cfg = ModelConfig.from_dict(json.loads(Path("models/uca8-r10/params.json").read_text())["model"])
    cfg = ModelConfig.from_dict(params["model"])
    shipped, grown, run = build_model(shipped_cfg), build_model(cfg), build_model(cfg)
    shipped.load_weights("models/uca8-r10/model.weights.h5")
    transfer_weights(shipped, shipped_cfg, grown, cfg)
    run.load_weights(weights)
    run.set_weights([(1 - alpha) * a + alpha * b for a, b in zip(run.get_weights(), grown.get_weights())])
    out.parent.mkdir(parents=True, exist_ok=True)
    run.save_weights(out)
    return out


def convert_short(samples: int) -> Path:
    p = json.loads(Path("models/uca8-r10/params.json").read_text())
    p["model"]["window_samples"] = samples
    return candidate(f"w{samples}", p, "models/uca8-r10/model.weights.h5", round(samples / p["sample_rate_hz"] / 2, 4))


def short_outputs(model, short, stem: Path) -> np.ndarray:
    """The short model's outputs on the newest part of each window the pipeline analyses (cached)."""
    from edge_msl.pipeline import Pipeline

    cache = stem.parent / f".short-{short.info.sha256[:12]}-{stem.name}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["y"]
    pipe = Pipeline(model, hop_s=sb.HOP_S, track=False)
    pcm, _ = sb.read_wav(stem.with_suffix(".wav"))
    x = pipe.array.select_channels(sb.to_capture(pcm, pipe.array)).astype(np.float32) / 32768.0
    n = short.info.window_samples
    y = np.array([short.outputs(win[-n:]) for _, win in pipe.windower.push(x)])
    np.savez(cache, y=y)
    return y


def short_detections(info, refiner, ys: np.ndarray, c: dict, k: int, threshold: float, hops: int) -> list:
    """The short model's detections of window ``k``, refined on the newest ``hops`` hops' cross-spectra."""
    dets = decode(info.layout, np.asarray(ys[k], dtype=np.float64), threshold)
    if dets:
        dets = refiner.refine(dets, np.mean(c["hop_cross"][max(0, k + 1 - hops):k + 1], axis=0))
    return dets


def _lag_table(other_path: str, first_column: str, names: tuple[str, str], directions) -> None:
    """Errors on val-walk's moving talkers (5-40°/s) against the direction some time before the window's
    end, of the packaged model and another one. ``directions(sc, other, name, c, ys, k)`` gives the
    azimuths of window ``k`` under ``name`` and how long before the end they are matched to a talker."""
    from edge_msl.runtime import load_model
    from edge_msl.truth import _hits, present
    from experiments.newest_audio import MOVING_DEG_S, Scenes, velocity

    sc = Scenes("data/scenes/val-turns", "data/scenes/val-walk")
    other = load_model(other_path)
    rows = {name: {lag: [] for lag in LAGS} for name in names}
    for stem, truth, c in sc.walkers():
        ys = short_outputs(sc.model, other, stem)
        for k, t in enumerate(c["t_s"]):
            moving = [q for q in present(truth, t, sc.info.window_s)
                      if truth[q].path and MOVING_DEG_S <= abs(velocity(truth[q], t - 0.2)) < 40.0]
            if not moving or k < 3:
                continue
            for name in names:
                az, match_s = directions(sc, other, name, c, ys, k)
                for i, j, _ in _hits(az, [truth[q].azimuth_at(t - match_s) for q in moving], 20.0):
                    src = truth[moving[j]]
                    for lag in LAGS:
                        rows[name][lag].append(wrap180(az[i] - src.azimuth_at(t - lag)) * np.sign(velocity(src, t)))
    print(f"| {first_column} | hits | " + " | ".join(f"{lag:g} s" for lag in LAGS) + " |")
    print("| --- | ---: |" + " ---: |" * len(LAGS))
    for name, r in rows.items():
        print(f"| {name} | {len(r[0.0])} | " + " | ".join(
            f"{np.mean(r[lag]):+.2f} / {np.mean(np.abs(r[lag])):.2f}" for lag in LAGS) + " |")


def lag_report(short_path: str) -> None:
    def directions(sc, short, name, c, ys, k):
        if name.startswith("packaged"):
            dets = sc.refiner.refine(decode(sc.info.layout, c[sc.images][k], sc.info.threshold), c["cross"][k])
            return [d.azimuth_deg for d in dets], sc.info.window_s / 2
        dets = short_detections(sc.info, sc.refiner, ys, c, k, sc.info.threshold, 2)
        return [d.azimuth_deg for d in dets], short.info.window_s / 2

    _lag_table(short_path, "detections", ("packaged model (0.5 s)", "short model"), directions)
    print("\n(signed along the motion / mean absolute error, degrees, against the direction that long before the "
          "window's end; short model refined on the newest two hops)")


def raw_lag_report(model_path: str) -> None:
    def directions(sc, other, name, c, ys, k):
        y = c["plain"][k] if name == "packaged model" else ys[k]
        return [d.azimuth_deg for d in decode(sc.info.layout, np.asarray(y, dtype=np.float64), 0.45)], 0.125

    _lag_table(model_path, "network", ("packaged model", Path(model_path).stem), directions)


def dual_report(short_path: str, sets: list[str], lag: float, gate: float, sd: float) -> None:
    import edge_msl.temporal as temporal
    from edge_msl.pipeline import message, newest_peak
    from edge_msl.refine import SrpRefiner
    from edge_msl.runtime import load_model
    from edge_msl.temporal import DecodeSettings, TemporalDecoder
    from edge_msl.truth import load_truth, score_parts, summarize

    model, short = load_model(None), load_model(short_path)
    info = model.info
    settings = DecodeSettings.from_dict(info.raw["decode"]["temporal"])
    refiner = SrpRefiner(info.array.positions(), info.sample_rate_hz, info.srp_refine)
    newest: dict[str, list] = {"dets": []}
    measure_now = temporal._Track.measure_now

    def with_short(track, peak, s):  # the shipped measurement, then the short window's
        measure_now(track, peak, s)
        if track.updates < s.walk_after or not track.is_walking:
            return
        az, w = track.blended(s)
        was = az - lag * w * track.moving.rate
        near = [d for d in newest["dets"] if abs(wrap180(d.azimuth_deg - was)) <= gate]
        if near:
            d = min(near, key=lambda d: abs(wrap180(d.azimuth_deg - was)))
            r = (sd / max(d.confidence, 0.05)) ** 2
            for f in (track.still, track.moving):
                f.update(was + wrap180(d.azimuth_deg - was), r, lag, s.max_rate_deg_s, None)

    for use in (False, True):
        temporal._Track.measure_now = with_short if use else measure_now
        for d in sets:
            parts = []
            for stem in sb.scenes([d]):
                c, ys = sb.cached_outputs(model, stem), short_outputs(model, short, stem)
                dec, msgs = TemporalDecoder(info.layout, settings), []
                for k, t in enumerate(c["t_s"]):
                    newest["dets"] = short_detections(info, refiner, ys, c, k, info.threshold, 2) if use else []
                    peak = newest_peak(refiner, c["hop_cross"][max(0, k + 1 - settings.now_hops):k + 1])
                    fn = lambda dets, k=k: refiner.refine(dets, c["cross"][k])  # noqa: E731
                    msgs.append(message(float(t), dec.update(c["cycle"][k], float(t), fn, peak)))
                parts.append(score_parts(msgs, load_truth(stem.with_suffix(".truth.json"))[0], info.window_s))
            r = summarize(parts)
            print(f"| {Path(d).name} | {'shipped + short window' if use else 'shipped'} | {r['f1']:.3f} | "
                  f"{r['precision']:.3f} | {r['doa_error_mean_deg']:.2f} | {r['doa_error_moving_deg']:.2f} | "
                  f"{r['id_switches_per_turn']:.3f} |", flush=True)
    temporal._Track.measure_now = measure_now


def hop_report(hop: float, sets: list[str], static_dirs: list[str], variants: list[str]) -> None:
    from edge_msl.runtime import load_model
    from edge_msl.temporal import DecodeSettings
    from train_tf.evaluate.device_decode import temporal_decode_all
    from train_tf.evaluate.outputs import params_of, window_outputs
    from train_tf.evaluate.scoring import score_detections, summarize
    from train_tf.simulate import load_windows

    sb.HOP_S = hop  # the scenes' windows (cached_outputs) and the pipeline's hop
    model = load_model(None)
    info = model.info
    dirs = []
    for name in sets:
        d = Path("data/scenes") / name
        if hop != 0.1:  # the cache is named after the scene, so each hop gets its own folder of links
            d = Path("out/hop") / f"{hop:g}-{name}"
            d.mkdir(parents=True, exist_ok=True)
            for f in sorted((Path("data/scenes") / name).glob("scene-*")):
                if not f.name.startswith(".") and not (d / f.name).exists():
                    (d / f.name).symlink_to(f.resolve())
        dirs.append(d)
    cached = {d: {s: sb.cached_outputs(model, s) for s in sb.scenes([str(d)])} for d in dirs}
    static = []
    for d in static_dirs:
        data = load_windows(d)
        cache = Path("out/hop") / f"static-{Path(d).name}-{hop:g}.npz"
        if cache.exists():
            with np.load(cache) as z:
                per = z["per"]
        else:
            per, _ = window_outputs("models/uca8-r10", data["audio"], "model.weights.h5", hop_s=hop)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, per=per)
        static.append((d, data, per))
    params = params_of("models/uca8-r10")
    print("| hop s | decode | " + " | ".join(f"{s} F1 / P / moving error° / pick-up p90 s / linger s / id sw." for s in sets)
          + " | " + " | ".join(f"{Path(d).name} F1 / error°" for d in static_dirs) + " |")
    print("| ---: | --- |" + " --- |" * (len(sets) + len(static_dirs)))
    for text in variants:
        st = DecodeSettings.from_dict({**info.raw["decode"]["temporal"], **json.loads(text)})
        cells = []
        for d in dirs:
            r = sb.score_set(list(cached[d]), lambda s, d=d: sb.decode_cached(model, cached[d][s], st, "cycle"),
                             info.window_s)
            cells.append(f"{r['f1']:.3f} / {r['precision']:.3f} / {r['doa_error_moving_deg'] or 0:.2f} / "
                         f"{r['pickup_p90_s']} / {r['linger_mean_s']} / {r['id_switches_per_turn']}")
        for d, data, per in static:
            dets, _, _ = temporal_decode_all(per, data["audio"], params, settings=st, hop_s=hop)
            s = summarize(score_detections(dets, data["azimuth_deg"], data["distance_m"], 20.0))
            cells.append(f"{s['f1']:.4f} / {s['err_mean']:.3f}")
        print(f"| {hop:g} | `{text}` | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="report", required=True)
    c = sub.add_parser("convert")
    c.add_argument("samples", type=int)
    g = sub.add_parser("lag")
    g.add_argument("short")
    u = sub.add_parser("dual")
    u.add_argument("short")
    u.add_argument("sets", nargs="+")
    u.add_argument("--lag", type=float, default=0.15, help="the short window's direction is where a walker was "
                   "this long before its end")
    u.add_argument("--gate", type=float, default=12.0)
    u.add_argument("--sd", type=float, default=3.0, help="its noise at full confidence, degrees")
    d = sub.add_parser("candidate")
    d.add_argument("run")
    d.add_argument("name")
    d.add_argument("lead_s", type=float)
    d.add_argument("--with-shipped", type=float, default=0.0, metavar="A",
                   help="average the run's weights with the shipped ones, weight A (0: the run's alone)")
    r = sub.add_parser("raw-lag")
    r.add_argument("model")
    h = sub.add_parser("hop")
    h.add_argument("hop", type=float)
    h.add_argument("--sets", default="val-turns,val-walk,val2-walk", help="scene sets under data/scenes")
    h.add_argument("--static", action="append", help="static window sets (default data/val-speech-1s and -3s)")
    h.add_argument("--v", action="append", help="JSON overrides of the model's decode.temporal (default: none)")
    args = ap.parse_args(argv)
    if args.report == "hop":
        hop_report(args.hop, args.sets.split(","), args.static or ["data/val-speech-1s", "data/val-speech-3s"],
                   args.v or ["{}"])
    elif args.report == "convert":
        print(convert_short(args.samples))
    elif args.report == "candidate":
        run = Path(args.run)
        weights = run / "model.weights.h5" if (run / "model.weights.h5").exists() else run / "best.weights.h5"
        params = json.loads((run / "params.json").read_text())
        if args.with_shipped:
            weights = with_shipped(params, weights, args.with_shipped, Path("out/cand") / f"{args.name}.soup.weights.h5")
        print(candidate(args.name, params, weights, args.lead_s))
    elif args.report == "raw-lag":
        raw_lag_report(args.model)
    elif args.report == "lag":
        lag_report(args.short)
    else:
        print("| set | decode | F1 | precision | error° | moving error° | id sw./turn |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        dual_report(args.short, args.sets, args.lag, args.gate, args.sd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
