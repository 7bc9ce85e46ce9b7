"""Train the learned post-filter of per-talker audio (``edge_msl.separate_nn``) on simulated scenes.

The bundled network (edge_msl/models/separate-postfilter.npz, round 9 of
docs/experiments/separation-learned-postfilter.md) is made by:

    # rows of evidence from the separator as it runs in the pipeline, with each row's ideal gain (~1 s a scene);
    # its rows were made before round 14's spherical-wave steering became the default, hence the plane waves here
    python -m train_tf.separate_postfilter data --out data/separate-pf/train --seed 50000 --scenes 1200 \
        --settings '{"near_field": false}'
    # the network (about 90 s on one core): the mix target, round 9's 17 features
    python -m train_tf.separate_postfilter train --data data/separate-pf/train --target mix \
        --features $(python -c "from edge_msl.separate_nn import FEATURES; print(*FEATURES[:17])") \
        --out edge_msl/models/separate-postfilter.npz

``data`` renders scenes like benchmarks/separation_bench.py's but wider (1-4 talkers, RT60 0.15-0.8 s, 0.6-3.5 m;
training-bank voices, seeds apart from the benchmark's; ``--array`` another array with its packaged model), runs the
whole pipeline (int8 model, temporal decode, separator) and keeps, for a random share of each track's bins, every
feature of ``edge_msl.separate_nn.FEATURES``, the beam's magnitude and the phase-sensitive target of both references
(the direct sound, and the direct sound with 50 ms of echoes, at mic 0) of the talker nearest the track (within 20
deg; none: a target of 0). ``train`` fits gain = gain_min + (1 - gain_min) sigmoid(net(features)) by the
phase-sensitive spectrum approximation (the output spectrum's squared error against the reference, per scene
normalized by its talkers' early-image power), and folds the features' standardization into the first layer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edge_msl.separate_nn import FEATURES

REPO = Path(__file__).resolve().parents[1]
MATCH_DEG = 20.0
TARGETS = ("direct", "early")


def _stft(x: np.ndarray, win: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """(n_frames, F) frames of ``x`` as the separator cuts them (frame t starts at sample t * hop)."""
    nfft = len(win)
    pad = np.zeros(n_frames * hop + nfft)
    pad[:min(len(x), len(pad))] = x[:len(pad)]
    idx = np.arange(n_frames)[:, None] * hop + np.arange(nfft)[None, :]
    return np.fft.rfft(pad[idx] * win, axis=1)


def reference_stfts(scene, sep, name: str) -> np.ndarray:
    """(K, T, F) each talker's reference ``name`` ('direct' or 'early') in the frames of the separator ``sep``."""
    n_frames = len(scene.audio) // sep._hop + 2
    return np.stack([_stft(r, sep._win, sep._hop, n_frames) for r in getattr(scene, name)])


def nearest_talker(scene, azimuth_deg: float) -> int:
    """The scene's talker nearest ``azimuth_deg`` in azimuth, or -1 when none is within ``MATCH_DEG``."""
    d = np.abs((np.asarray(scene.azimuth_deg, dtype=float) - azimuth_deg + 180.0) % 360.0 - 180.0)
    return int(np.argmin(d)) if d.min() <= MATCH_DEG else -1


def scene_rows(scene, model, keep: float, rng: np.random.Generator, settings=None) -> dict[str, np.ndarray]:
    """Run the pipeline with separation over ``scene``; the sampled rows of every rendered block."""
    from edge_msl.arrays import get_array
    from edge_msl.pipeline import Pipeline
    from edge_msl.separate import SeparatedAudio, SeparateSettings, Separator

    arr = get_array(scene.array)
    # the rows are the evidence before the post-filter: the same with or without the learned one (not run here)
    sep = Separator(arr.positions(), 16000, settings or SeparateSettings(learned=False))
    n = len(scene.audio)
    refs = {name: reference_stfts(scene, sep, name) for name in TARGETS}  # (K, T, F)
    rows: dict[str, list[np.ndarray]] = {"x": [], "mag": [], "direct": [], "early": []}

    def observe(s, ids, first, y, feats, spec) -> None:
        t_n = y.shape[1]
        for ki, k in enumerate(ids):
            talker = nearest_talker(scene, s._tracks[k].azimuth_deg)
            pick = rng.random((t_n, y.shape[2])) < keep
            if not pick.any():
                continue
            yk = y[ki][pick]
            rows["x"].append(feats[ki][pick].astype(np.float16))
            rows["mag"].append(np.abs(yk).astype(np.float32))
            for name in TARGETS:
                if talker < 0:
                    rows[name].append(np.zeros(len(yk), np.float32))
                    continue
                ref = refs[name][talker, first:first + t_n]
                if len(ref) < t_n:
                    ref = np.concatenate([ref, np.zeros((t_n - len(ref), ref.shape[1]), ref.dtype)])
                ref = ref[pick]
                # |S| cos(angle S - angle Y): the part of the reference in phase with the beam
                rows[name].append((np.real(ref * np.conj(yk)) / (np.abs(yk) + 1e-20)).astype(np.float32))

    sep.observer = observe
    pipe = Pipeline(model)
    listener = SeparatedAudio(sep, _Null())
    pipe.audio_listener = listener
    frames = np.zeros((n, arr.n_channels), dtype=np.float32)
    frames[:, list(arr.channel_map)] = scene.audio
    hop = 1600
    for i in range(0, n, hop):
        pipe.push(frames[i:i + hop])
    listener.close()
    if not rows["x"]:
        return {}
    out = {k: np.concatenate(v) for k, v in rows.items()}
    out["scale"] = np.full(len(out["x"]), float(np.mean(np.abs(refs["early"]) ** 2)) + 1e-20, np.float32)
    return out


class _Null:
    def write(self, chunks) -> None:
        pass

    def close(self) -> None:
        pass


def cmd_data(args: argparse.Namespace) -> int:
    from edge_msl.runtime import load_model
    from train_tf.separation_scenes import render_scene
    from train_tf.signals import DryBank

    os.environ.setdefault("PRA_NUM_THREADS", "1")
    from edge_msl.arrays import get_array
    from edge_msl.separate import SeparateSettings

    bank = DryBank.load(REPO / args.bank if not Path(args.bank).is_absolute() else Path(args.bank))
    model = load_model(None, array=get_array(args.array))
    settings = SeparateSettings.from_dict({**json.loads(args.settings), "learned": False})
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for i in range(args.start, args.scenes, args.stride):
        path = out_dir / f"scene-{args.seed + i}.npz"
        if path.exists():
            continue
        rng = np.random.default_rng(args.seed + i)
        k = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.35, 0.15]))
        try:
            scene = render_scene(bank, args.array, args.seed + i, k, (0.15, 0.8), args.duration_s,
                                 distance_m=(0.6, 3.5))
        except RuntimeError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        rows = scene_rows(scene, model, args.keep, rng, settings)
        if rows:
            np.savez(path, **rows)
        print(f"scene {args.seed + i}: {k} talkers, RT60 {scene.rt60_s:.2f} s, {len(rows.get('x', ()))} rows "
              f"({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


def load_rows(data: Path, max_scenes: int | None = None) -> dict[str, np.ndarray]:
    files = sorted(data.glob("scene-*.npz"))[:max_scenes]
    if not files:
        raise SystemExit(f"no scene-*.npz in {data}: make them with `python -m train_tf.separate_postfilter data`")
    return _concat(files)


def _concat(files: list[Path]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for f in files:
        with np.load(f) as z:
            for k in z.files:
                parts.setdefault(k, []).append(z[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


def cmd_train(args: argparse.Namespace) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from edge_msl.separate import SeparateSettings

    rows = load_rows(Path(args.data), args.max_scenes)
    if args.more_data:
        # other sets (e.g. board scenes) before the last 5 %, which stay the main set's scenes
        more = _concat([f for d in args.more_data for f in sorted(Path(d).glob("scene-*.npz"))])
        rows = {k: np.concatenate([more[k], rows[k]]) for k in rows}
        del more
    names = tuple(args.features or FEATURES[:rows["x"].shape[1]])
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise SystemExit(f"--features: unknown {', '.join(unknown)} (known: {', '.join(FEATURES)})")
    if max(FEATURES.index(n) for n in names) >= rows["x"].shape[1]:
        raise SystemExit(f"{args.data}: rows hold the first {rows['x'].shape[1]} features only; make them again")
    x = rows.pop("x")[:, [FEATURES.index(n) for n in names]].astype(np.float32)
    w = {"direct": 1.0, "early": 0.0} if args.target == "direct" else \
        {"direct": 0.0, "early": 1.0} if args.target == "early" else {"direct": 0.5, "early": 0.5}
    norm = 1.0 / np.sqrt(rows.pop("scale"))
    mag = rows.pop("mag") * norm
    tgt = (w["direct"] * rows.pop("direct") + w["early"] * rows.pop("early")) * norm
    np.clip(tgt, 0.0, mag, out=tgt)  # a gain in [0, 1] cannot do better than this
    yt = np.stack([mag, tgt], axis=1).astype(np.float32)
    del mag, tgt, norm
    own_logit = x[:, names.index("gain_logit")].copy()
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    x -= mean
    x /= std
    gmin = SeparateSettings().gain_min
    # the last scenes' rows (5 %) check the fit; the rows are in scene order, so these are other scenes
    n_val = max(1, int(0.05 * len(x)))
    tr, val = slice(0, len(x) - n_val), slice(len(x) - n_val, None)
    keras.utils.set_random_seed(args.seed)
    inp = keras.Input((len(names),))
    h = inp
    for width in args.hidden:
        h = keras.layers.Dense(width, activation="relu")(h)
    z = keras.layers.Dense(1)(h)
    net = keras.Model(inp, z)

    def psa(y_true, z_pred):
        g = gmin + (1.0 - gmin) * keras.ops.sigmoid(z_pred[:, 0])
        return keras.ops.mean(keras.ops.square(g * y_true[:, 0] - y_true[:, 1]))

    net.compile(keras.optimizers.Adam(args.lr), loss=psa)
    hist = net.fit(x[tr], yt[tr], batch_size=args.batch, epochs=args.epochs, validation_data=(x[val], yt[val]),
                   verbose=2, shuffle=True)
    # the separator's own gain on the same rows, for the record
    g_own = np.maximum(1.0 / (1.0 + np.exp(-own_logit[val])), gmin)
    own = float(np.mean(np.square(g_own * yt[val, 0] - yt[val, 1])))
    layers = [(layer.get_weights()[0], layer.get_weights()[1]) for layer in net.layers if layer.get_weights()]
    w0, b0 = layers[0]
    layers[0] = (w0 / std[:, None], b0 - (mean / std) @ w0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"w{i}": lw.astype(np.float32) for i, (lw, _) in enumerate(layers)}
    arrays.update({f"b{i}": lb.astype(np.float32) for i, (_, lb) in enumerate(layers)})
    np.savez(out, n_layers=np.array(len(layers)), features=np.array(names), target=np.array(args.target),
             **arrays)
    summary = {"rows": int(len(x)), "features": len(names), "target": args.target, "hidden": args.hidden,
               "epochs": args.epochs,
               "val_loss": float(hist.history["val_loss"][-1]), "val_loss_own_gain": own}
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="render scenes, run the pipeline, keep rows of evidence and targets")
    d.add_argument("--out", required=True)
    d.add_argument("--bank", default="data/dry/bank-train.npz")
    d.add_argument("--seed", type=int, default=50000)
    d.add_argument("--scenes", type=int, default=600)
    d.add_argument("--start", type=int, default=0, help="first scene index (with --stride: one of several workers)")
    d.add_argument("--stride", type=int, default=1)
    d.add_argument("--duration-s", type=float, default=6.0)
    d.add_argument("--keep", type=float, default=0.1, help="share of each track's bins kept (default 0.1)")
    d.add_argument("--array", default="uca8-r10", help="the array (its packaged model; default uca8-r10)")
    d.add_argument("--settings", default="{}",
                   help='separator settings as JSON, e.g. \'{"near_field": true}\' (learned is always off here)')
    t = sub.add_parser("train", help="fit the network; write the .npz edge_msl loads")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--target", choices=("direct", "early", "mix"), default="mix")
    t.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch", type=int, default=4096)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--max-scenes", type=int, default=None)
    t.add_argument("--more-data", nargs="+", default=[], help="more row directories (e.g. board scenes)")
    t.add_argument("--features", nargs="+", default=None,
                   help="the features the network reads (default: every one the rows hold)")
    args = ap.parse_args(argv)
    return cmd_data(args) if args.cmd == "data" else cmd_train(args)


if __name__ == "__main__":
    raise SystemExit(main())
