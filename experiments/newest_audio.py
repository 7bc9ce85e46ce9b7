"""Where does the temporal decode lose a walking talker, and what does the newest audio add?
(docs/experiments/newest-audio.md)

Three reports on the validation scenes (cached network outputs of ``benchmarks.scenes_bench``):

- ``lag``: signed error of the shipped decode on moving talkers (negative: behind them) and the
  angular velocity it reports, by speed; the network alone against the direction at several lags
  before the window's end; the SRP-PHAT peak of the newest two hops against the same lags.
- ``strength``: error of that peak by its strength (``edge_msl.pipeline.newest_peak``) and by how
  much of the talker's voice the newest 0.2 s hold.
- ``sweep``: the scene scores (turns and walk) and the static 1 s windows' F1 and error for decode
  settings given as JSON overrides of the model's ``decode.temporal``.

    .venv/bin/python -m experiments.newest_audio lag [--decode '{"now_hops": 1, ...}']
    .venv/bin/python -m experiments.newest_audio strength
    .venv/bin/python -m experiments.newest_audio sweep '{"now_sd_deg": 0}' '{"keep_threshold": 0.15}'

``sweep`` computes the float network's outputs of the static sets' sub-windows once and keeps them
in ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks import scenes_bench as sb
from edge_msl.refine import SrpRefiner
from edge_msl.regions import decode, wrap180
from edge_msl.runtime import load_model
from edge_msl.temporal import DecodeSettings
from edge_msl.truth import _hits, load_truth, present

MOVING_DEG_S = 5.0
BANDS = ((5.0, 20.0), (20.0, 40.0), (40.0, 1e9))


class Scenes:
    """The packaged model, its decode settings and the cached outputs of a turns and a walk set."""

    def __init__(self, turns: str, walk: str) -> None:
        self.model = load_model(None)
        self.info = self.model.info
        self.base = DecodeSettings.from_dict(self.info.raw.get("decode", {}).get("temporal", {}))
        self.images = "cycle" if self.info.symmetry == "cycle" else "plain"
        self.sets = {"turns": sb.scenes([turns]), "walk": sb.scenes([walk])}
        self.cache = {s: sb.cached_outputs(self.model, s) for stems in self.sets.values() for s in stems}
        self.refiner = SrpRefiner(self.info.array.positions(), self.info.sample_rate_hz, self.info.srp_refine)

    def decode(self, stem: Path, settings: DecodeSettings) -> list[dict]:
        return sb.decode_cached(self.model, self.cache[stem], settings, self.images)

    def walkers(self):
        """(stem, truth, cached outputs) of the walk set."""
        for stem in self.sets["walk"]:
            yield stem, load_truth(stem.with_suffix(".truth.json"))[0], self.cache[stem]


def speed_bands(speed: np.ndarray):
    """(name, mask) of each of ``BANDS`` over an array of angular speeds (°/s)."""
    for lo, hi in BANDS:
        yield (f"{lo:g}-{hi:g} °/s" if hi < 1e9 else f">= {lo:g} °/s"), (speed >= lo) & (speed < hi)


def velocity(src, t_s: float, dt: float = 0.1) -> float:
    return wrap180(src.azimuth_at(t_s) - src.azimuth_at(t_s - dt)) / dt


def moving_hits(msgs: list[dict], truth, window_s: float):
    """(message, index of the source matched to a talker, that talker, their angular velocity) for every output
    matched (within 20°) to a talker moving at least ``MOVING_DEG_S``."""
    for m in msgs:
        t = m["t_s"]
        req = present(truth, t, window_s)
        az = [x["azimuth_deg"] for x in m["sources"]]
        for i, j, _ in _hits(az, [truth[q].azimuth_at(t) for q in req], 20.0):
            v = velocity(truth[req[j]], t)
            if abs(v) >= MOVING_DEG_S:
                yield m, i, truth[req[j]], v


def lag_report(sc: Scenes) -> None:
    rows = []
    for stem, truth, _ in sc.walkers():
        for m, i, src, v in moving_hits(sc.decode(stem, sc.base), truth, sc.info.window_s):
            sign = np.sign(v)
            rows.append((abs(v), wrap180(m["sources"][i]["azimuth_deg"] - src.azimuth_at(m["t_s"])) * sign,
                         m["sources"][i]["azimuth_rate_deg_s"] * sign))
    r = np.array(rows)
    print("## the shipped decode on moving talkers (signed: along the motion)\n")
    print("| speed | hits | mean error ° | signed error ° | true speed °/s | reported speed °/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, band in speed_bands(r[:, 0]):
        q = r[band]
        print(f"| {name} | {len(q)} | {np.abs(q[:, 1]).mean():.2f} | {q[:, 1].mean():+.2f} | {q[:, 0].mean():.1f} | "
              f"{q[:, 2].mean():.1f} |")
    lags = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35)
    net: dict[float, list[float]] = {lag: [] for lag in lags}
    hop: dict[float, list[float]] = {lag: [] for lag in lags}
    for _, truth, c in sc.walkers():
        for k, t in enumerate(c["t_s"]):
            moving = [q for q in present(truth, t, sc.info.window_s)
                      if truth[q].path and MOVING_DEG_S <= abs(velocity(truth[q], t - 0.2)) < 40.0]
            if not moving or k < 1:
                continue
            dets = sc.refiner.refine(decode(sc.info.layout, c[sc.images][k], sc.info.threshold), c["cross"][k])
            gcc = sc.refiner.gcc(np.mean(c["hop_cross"][k - 1:k + 1], axis=0))
            for i, j, _ in _hits([d.azimuth_deg for d in dets], [truth[q].azimuth_at(t - 0.25) for q in moving], 20.0):
                src = truth[moving[j]]
                for lag in lags:
                    net[lag].append(wrap180(dets[i].azimuth_deg - src.azimuth_at(t - lag)) * np.sign(velocity(src, t)))
            for q in moving:
                src = truth[q]
                found = sc.refiner.peak(gcc, src.azimuth_at(t - 0.25), 12.0)
                if found is not None:
                    for lag in lags:
                        hop[lag].append(wrap180(found - src.azimuth_at(t - lag)) * np.sign(velocity(src, t)))
    print("\n## against the direction some time before the window's end (moving talkers, 5-40 °/s)\n")
    print("| before the end, s | network, one window: signed / mean ° | newest two hops' SRP-PHAT peak: signed / mean ° |")
    print("| ---: | ---: | ---: |")
    for lag in lags:
        a, b = np.array(net[lag]), np.array(hop[lag])
        print(f"| {lag:.2f} | {a.mean():+.2f} / {np.abs(a).mean():.2f} | {b.mean():+.2f} / {np.abs(b).mean():.2f} |")
    print(f"\n({len(net[0.0])} network hits, {len(hop[0.0])} peaks inside a 12° search around the direction 0.25 s "
          "before the end)")


def strength_report(sc: Scenes) -> None:
    from edge_msl.pipeline import newest_peak

    rng = np.random.default_rng(0)
    rows = []
    for _, truth, c in sc.walkers():
        for k, t in enumerate(c["t_s"]):
            if k < 1:
                continue
            peak = newest_peak(sc.refiner, np.mean(c["hop_cross"][k - 1:k + 1], axis=0))
            for q in present(truth, t, sc.info.window_s):
                src = truth[q]
                if not src.path:
                    continue
                found = peak(src.azimuth_at(t - 0.1) + rng.uniform(-6.0, 6.0), 12.0)
                if found is not None:
                    voice = sum(max(0.0, min(b, t) - max(a, t - 0.2)) for a, b in src.voice)
                    rows.append((abs(wrap180(found[0] - src.azimuth_at(t - 0.1))), found[1], voice))
    r = np.array(rows)
    print("## the newest two hops' peak (searched 12° around the walker's direction 0.1 s before the window's end, "
          "± 6°) by its strength\n")
    print("| strength | peaks | mean error ° | share > 6° | walker's voice in the newest 0.2 s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    edges = np.quantile(r[:, 1], [0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    edges[-1] += 1e-9
    for lo, hi in zip(edges[:-1], edges[1:]):
        q = r[(r[:, 1] >= lo) & (r[:, 1] < hi)]
        print(f"| {lo:.3f}-{hi:.3f} | {len(q)} | {q[:, 0].mean():.2f} | {(q[:, 0] > 6).mean():.2f} | {q[:, 2].mean():.3f} s |")


def static_outputs(data_dir: str, cache: Path) -> tuple[dict, np.ndarray, dict]:
    from train_tf.evaluate.outputs import params_of, window_outputs
    from train_tf.simulate import load_windows

    data = load_windows(data_dir)
    if cache.exists():
        per = np.load(cache)["per"]
    else:
        per, _ = window_outputs("models/uca8-r10", data["audio"], "model.weights.h5")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, per=per)
    return data, per, params_of("models/uca8-r10")


def sweep(sc: Scenes, overrides: list[str], static_dirs: list[str], cache_dir: Path) -> None:
    from train_tf.evaluate.device_decode import temporal_decode_all
    from train_tf.evaluate.scoring import score_detections, summarize

    static = [static_outputs(d, cache_dir / f"{Path(d).name}-outputs.npz") for d in static_dirs]
    print("| decode | turns F1 / P | pick-up p90 s | turns error ° | walk F1 / P | walk error ° | moving error ° | "
          "id sw./turn (walk) | " + " | ".join(f"{Path(d).name} F1 / error °" for d in static_dirs) + " |")
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |" + " --- |" * len(static_dirs))
    for text in ["{}", *overrides]:
        st = dataclasses.replace(sc.base, **json.loads(text))
        r = {name: sb.score_set(stems, lambda stem: sc.decode(stem, st), sc.info.window_s)
             for name, stems in sc.sets.items()}
        cells = []
        for data, per, params in static:
            dets, _, _ = temporal_decode_all(per, data["audio"], params, settings=st)
            s = summarize(score_detections(dets, data["azimuth_deg"], data["distance_m"], 20.0))
            cells.append(f"{s['f1']:.4f} / {s['err_mean']:.3f}")
        t, w = r["turns"], r["walk"]
        print(f"| {'shipped' if text == '{}' else '`' + text + '`'} | {t['f1']:.3f} / {t['precision']:.3f} | "
              f"{t['pickup_p90_s']:.2f} | {t['doa_error_mean_deg']:.2f} | {w['f1']:.3f} / {w['precision']:.3f} | "
              f"{w['doa_error_mean_deg']:.2f} | {w['doa_error_moving_deg']:.2f} | {w['id_switches_per_turn']:.3f} | "
              + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", choices=("lag", "strength", "sweep"))
    ap.add_argument("overrides", nargs="*", help="sweep: JSON objects of decode.temporal keys")
    ap.add_argument("--turns", default="data/scenes/val-turns")
    ap.add_argument("--walk", default="data/scenes/val-walk")
    ap.add_argument("--static", action="append", help="static window sets (sweep; default data/val-speech-1s; "
                    "repeatable)")
    ap.add_argument("--cache-dir", default="out/newest-audio", help="where the static sets' network outputs are kept")
    ap.add_argument("--decode", default="{}", help="JSON overrides of the model's decode.temporal for every report")
    args = ap.parse_args(argv)
    sc = Scenes(args.turns, args.walk)
    sc.base = dataclasses.replace(sc.base, **json.loads(args.decode))
    if args.report == "lag":
        lag_report(sc)
    elif args.report == "strength":
        strength_report(sc)
    else:
        sweep(sc, args.overrides, args.static or ["data/val-speech-1s"], Path(args.cache_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
