"""The learned temporal head (``train_tf.temporal_head``) against the network's own heads, through the decode.

``score`` decodes, per scene set, the int8 network as shipped before the head (its cycled images, from
``benchmarks.scenes_bench``'s cache), the float network's own heads (plain images) and each float head given
(``--head``: a ``train_tf.temporal_head train`` directory), all through the model's decode settings and SRP
refinement; ``static`` does the same on 1 s windows of still talkers (six sub-windows through the decode, as
``train_tf.evaluate``). Choices between heads are made on validation sets only.

    .venv/bin/python -m experiments.seq_head score data/scenes/val-walk data/scenes/val2-walk \\
        data/scenes/val-turns --head runs/temporal-head
    .venv/bin/python -m experiments.seq_head static data/val-speech-1s --head runs/temporal-head

Report: docs/experiments/learned-temporal-head.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from train_tf.temporal_head import (MODEL_DIR, WEIGHTS, _net, embeddings, histories, load_head, scene_features,
                                   stems_of)

def _plain(emb: np.ndarray, heads: tuple[np.ndarray, np.ndarray], n_regions: int) -> np.ndarray:
    """The float network's own heads on each embedding: its outputs (N, R, 3)."""
    z = emb @ heads[0] + heads[1]
    return (1.0 / (1.0 + np.exp(-z))).reshape(len(emb), n_regions, 3)


def decode_settings(info, overrides: dict | None, lead_s: float | None = None):
    from edge_msl.temporal import DecodeSettings

    st = DecodeSettings.from_dict(info.raw.get("decode", {}).get("temporal", {}))
    extra = dict(overrides or {})
    if lead_s is not None and "lead_s" not in extra:
        extra["lead_s"] = lead_s
    return DecodeSettings.from_dict(extra, base=st) if extra else st


def score(args: argparse.Namespace) -> int:
    from benchmarks.scenes_bench import cached_outputs, decode_cached, score_set, table
    from edge_msl.runtime import load_model

    tfl = load_model(args.model)
    info = tfl.info
    rows = []
    heads_runs = [load_head(h, args.weights) for h in args.head]
    embed, heads, params = heads_runs[0][2:] if heads_runs else _net(MODEL_DIR)
    n_regions = int(params["regions"]["n_regions"])
    over = json.loads(args.decode) if args.decode else None
    for d in args.sets:
        stems = stems_of([d])
        cache = {}
        for stem in stems:
            c = dict(cached_outputs(tfl, stem))
            f = scene_features(stem, embed, params)
            if len(f["t_s"]) != len(c["t_s"]) or not np.allclose(f["t_s"], c["t_s"]):
                raise SystemExit(f"{stem}: windows differ from the int8 cache")
            c["float"] = _plain(f["emb"], heads, n_regions)
            for j, (model, cfg, *_r) in enumerate(heads_runs):
                c[f"seq{j}"] = np.asarray(model.predict(histories(f["emb"], cfg["k"]), verbose=0, batch_size=512))
            cache[stem] = c
        alone = "cycle" if info.symmetry == "cycle" else "plain"  # the network alone, on its decode's images
        variants = {f"int8 network alone ({alone})": (alone, None), "float heads (plain)": ("float", None)}
        for j, (_m, cfg, *_r) in enumerate(heads_runs):
            lead = None if cfg["instant"] == "centre" else 0.0
            for extra in args.seq_decode or ["{}"]:
                variants[f"seq {Path(args.head[j]).name} {extra if extra != '{}' else ''}"] = \
                    (f"seq{j}", lead, json.loads(extra))
        for name, (key, lead, *extra) in variants.items():
            st = decode_settings(info, {**(over or {}), **(extra[0] if extra else {})}, lead)
            row = {"set": Path(d).name, "decode": name,
                   **score_set(stems, lambda s, key=key, st=st: decode_cached(tfl, cache[s], st, key), info.window_s)}
            rows.append(row)
            print(f"{row['set']:>10} | {name:<28} F1 {row['f1']:.4f} P {row['precision']:.4f} R {row['recall']:.4f} "
                  f"err {row['doa_error_mean_deg']:.3f} mov {row['doa_error_moving_deg']} pick90 {row['pickup_p90_s']} "
                  f"linger {row['linger_mean_s']} sw {row['id_switches_per_turn']}", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def static(args: argparse.Namespace) -> int:
    """The 1 s static windows (six sub-windows through the decode, as ``train_tf.evaluate``): shipped float
    network (cycled images) against the float heads (plain) and the learned stage."""
    from train_tf.evaluate.device_decode import temporal_decode_all
    from train_tf.evaluate.outputs import POOL_HOP_S, pool_offsets, window_outputs
    from train_tf.evaluate.scoring import score_detections, summarize
    from train_tf.simulate import load_windows

    data = load_windows(args.data)
    n = min(args.max_windows, len(data["audio"]))
    audio = data["audio"][:n]
    true_az, true_d = data["azimuth_deg"][:n], data["distance_m"][:n]
    heads_runs = [load_head(h, args.weights) for h in args.head]
    embed, heads, params = heads_runs[0][2:] if heads_runs else _net(MODEL_DIR)
    n_regions = int(params["regions"]["n_regions"])
    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    offsets = pool_offsets(audio.shape[1], window, int(round(POOL_HOP_S * fs)))
    cache = Path(args.data) / f".seqstatic-{n}.npz"
    if cache.exists():
        with np.load(cache) as z:
            emb, shipped = z["emb"], z["shipped"]
    else:
        emb = np.zeros((n, len(offsets), int(heads[0].shape[0])), np.float32)
        for j, o in enumerate(offsets):
            emb[:, j] = embeddings(embed, params, audio[:, o:o + window], full_scale=32768.0)
        from edge_msl.symmetry import symmetry_mode

        # the network alone, on the images its decode uses
        model_dir = heads_runs[0][1]["model_dir"] if heads_runs else MODEL_DIR
        shipped = window_outputs(model_dir, audio, WEIGHTS, symmetry=symmetry_mode(params["decode"]))[0]
        np.savez(cache, emb=emb, shipped=shipped)
    pers = {"float network alone": shipped,
            "float heads (plain)": _plain(emb.reshape(-1, emb.shape[-1]), heads, n_regions).reshape(
                n, len(offsets), n_regions, 3)}
    for j, (model, cfg, *_r) in enumerate(heads_runs):
        hist = np.stack([histories(e, cfg["k"]) for e in emb])
        pers[f"seq {Path(args.head[j]).name}"] = np.asarray(model.predict(
            hist.reshape(-1, *hist.shape[2:]), verbose=0, batch_size=512)).reshape(n, len(offsets), n_regions, 3)
    from train_tf.evaluate.device_decode import temporal_settings

    base = temporal_settings(params)
    runs = [(name, per, args.network_decode if not name.startswith("seq") else "{}") for name, per in pers.items()]
    runs += [(name, per, extra) for name, per in pers.items() if name.startswith("seq") for extra in args.decode]
    for name, per, extra in runs:
        from edge_msl.temporal import DecodeSettings

        st = DecodeSettings.from_dict(json.loads(extra), base=base)
        dets, _t, _s = temporal_decode_all(per, audio, params, settings=st)
        s = summarize(score_detections(dets, true_az, true_d, 20.0))
        name = f"{name} {extra}" if extra != "{}" else name
        print(f"{name:<28} F1 {s['f1']:.4f} recall {s['recall']:.4f} precision {s['precision']:.4f} "
              f"error {s['err_mean']:.3f}", flush=True)
    return 0


def sweep(args: argparse.Namespace) -> int:
    """The packaged int8 model through its head (``benchmarks.scenes_bench``'s cache) with decode settings over the
    sidecar's, one row per set and JSON."""
    from benchmarks.scenes_bench import cached_outputs, decode_cached, score_set
    from edge_msl.runtime import load_model

    tfl = load_model(args.model)
    info = tfl.info
    for d in args.sets:
        stems = stems_of([d])
        cache = {s: cached_outputs(tfl, s) for s in stems}
        for extra in ["{}", *args.variants]:
            st = decode_settings(info, json.loads(extra))
            r = score_set(stems, lambda s, st=st: decode_cached(tfl, cache[s], st, args.images), info.window_s)
            print(f"| {Path(d).name} | {extra} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
                  f"{r['doa_error_mean_deg']:.3f} | {r['doa_error_moving_deg'] or float('nan'):.3f} | "
                  f"{r['pickup_p90_s']} | {r['linger_mean_s']} / {r['linger_p90_s']} | {r['id_switches_per_turn']} |",
                  flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="decode scene sets with the shipped, float and learned outputs")
    s.add_argument("sets", nargs="+")
    s.add_argument("--head", nargs="*", default=[])
    s.add_argument("--weights", default="best.weights.h5")
    s.add_argument("--decode", help="JSON of decode settings over the model's")
    s.add_argument("--model", help="the int8 model of the heads' network (default: the packaged uca8-r10)")
    s.add_argument("--seq-decode", nargs="*", help="JSONs of decode settings for the learned stage's rows (one "
                   "row each)")
    s.add_argument("--json")
    st = sub.add_parser("static", help="the static 1 s windows through the decode")
    st.add_argument("data")
    st.add_argument("--head", nargs="*", default=[])
    st.add_argument("--weights", default="best.weights.h5")
    st.add_argument("--max-windows", type=int, default=2000)
    st.add_argument("--decode", nargs="*", default=[], help="JSONs of decode settings for the heads' extra rows")
    st.add_argument("--network-decode", default="{}", help="JSON of decode settings for the rows of the network "
                    "alone (e.g. the settings it shipped with)")
    w = sub.add_parser("sweep", help="decode settings for the int8 model through its head, on scene sets")
    w.add_argument("sets", nargs="+")
    w.add_argument("--variants", nargs="*", default=[], help="JSONs of decode settings over the sidecar's")
    w.add_argument("--model", help="model .tflite (default: the packaged one)")
    w.add_argument("--images", default="head", help="which cached outputs: head, cycle or plain")
    args = p.parse_args(argv)
    return {"score": score, "static": static, "sweep": sweep}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
