"""The learned temporal stage of a model (issue 27): a small head over the network's embeddings of the last K
windows, trained on dynamic scenes; training only (TensorFlow or JAX Keras), never imported by ``edge_msl``.

The network maps one 0.5 s window to per-region (active, distance, azimuth); its dense layer's output (the
*embedding*, 320 values for ``uca8-r10``) is all its heads see. The temporal head sees the embeddings of the last ``k``
windows (0.1 s apart: 0.5 + (k - 1) x 0.1 s of audio) and gives the same per-region outputs, as a correction of the
network's own heads on the newest embedding: ``sigmoid(heads(e_t) + delta(e_{t-k+1}, ..., e_t))``, ``delta`` starting
at zero, so that an untrained head is the network; the distance column stays the network's. It is trained on

- scenes of ``train_tf.scenes`` (talkers who take turns, pause and walk) rendered from training voices with seeds no
  evaluation set uses, each window labelled as the scene scoring labels it (``edge_msl.truth.present``: the talkers
  with at least 0.15 s of voice in the window, at the window's centre, where the decode models the measurement;
  talkers with less voice are neither), and
- 1 s windows of ``train_tf.simulate`` (1-4 still talkers): each of their six sub-windows with the ones before it,

each also on the array's first ``--images`` symmetric images (rotated and mirrored copies, labels mapped with them).
At a stream's start a head has fewer than ``k`` windows: the oldest it has stands in for the missing ones, in
training as on the device.

    .venv/bin/python -m train_tf.temporal_head train --model-dir models/uca8-r10 \\
        --train data/scenes-train/turns data/scenes-train/turns2 data/scenes-train/walk data/scenes-train/walk2 \\
        data/scenes-train/walk3 --static data/seq-static-1s --val data/scenes/val-walk data/scenes/val-turns \\
        --images 4 --out runs/temporal-head
    cp runs/temporal-head/head.json models/uca8-r10/temporal_head/
    cp runs/temporal-head/best.weights.h5 models/uca8-r10/temporal_head/head.weights.h5

(``docs/experiments/learned-temporal-head.md`` has the commands that render the training scenes.) ``python -m
convert.temporal_head`` makes the int8 TFLite head the device runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MODEL_DIR = "models/uca8-r10"
WEIGHTS = "model.weights.h5"
HOP_S = 0.1
LEAD_S = {"centre": 0.25, "end": 0.0}
"""Where in the window the label's direction is taken (seconds before its end)."""


def _net(model_dir: str | Path, weights: str = WEIGHTS):
    """The network of a model directory as (embedding model, its heads' (kernel, bias), params)."""
    import keras

    from train_tf.model_dir import load_model

    model, params = load_model(model_dir, weights)
    embed = keras.Model(model.inputs, model.get_layer("dense").output)
    w, b = model.get_layer("heads").get_weights()
    return embed, (w, b), params


def _layout(params: dict):
    from edge_msl.regions import RegionLayout

    return RegionLayout.from_dict(params["regions"])


def embeddings(embed, params: dict, windows: np.ndarray, sym=None, full_scale: float = 1.0,
               batch: int = 64) -> np.ndarray:
    """The network's embeddings (N, dim) of windows (N, samples, mics): scaled as the model's input (after dividing
    by ``full_scale``, 32768 for int16 PCM), on the symmetric image ``sym`` if given, ``batch`` at a time."""
    from edge_msl.features import model_scaling, normalize_window

    scaling = model_scaling(params)
    out = []
    for i in range(0, len(windows), batch):
        x = windows[i:i + batch].astype(np.float32) / full_scale
        x = x if sym is None else sym.permute(x)
        out.append(np.asarray(embed(normalize_window(x, **scaling), training=False)))
    return np.concatenate(out)


def labels(truth, t_s: np.ndarray, window_s: float, layout, lead_s: float,
           min_voiced_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Targets (N, R, 3) and a care mask (N, R) per window ending at ``t_s``: the scoring's present talkers (at least
    ``min_voiced_s`` of voice in the window, default the scoring's 0.15 s), at ``t - lead_s``; a region holding a
    talker with some voice but less is not cared about."""
    from edge_msl.regions import encode
    from edge_msl.truth import PRESENT_VOICED_S, audible, present

    tgt = np.zeros((len(t_s), layout.n_regions, 3), np.float32)
    care = np.ones((len(t_s), layout.n_regions), np.float32)
    for k, t in enumerate(t_s):
        on = present(truth, t, window_s, PRESENT_VOICED_S if min_voiced_s is None else min_voiced_s)
        if on:
            az = [truth[i].azimuth_at(t - lead_s) for i in on]
            dist = [truth[i].distance_m if np.isfinite(truth[i].distance_m) else 1.5 for i in on]
            tgt[k] = encode(layout, az, dist).target
        for i in set(audible(truth, t, window_s)) - set(on):
            care[k, int(layout.region_of(truth[i].azimuth_at(t - lead_s)))] = 0.0
    return tgt, care


def scene_features(stem: Path, embed, params: dict, batch: int = 64) -> dict[str, np.ndarray]:
    """Per window of the pipeline (hop 0.1 s): end time, embedding, and labels at both instants (cached)."""
    cache = stem.parent / f".seqfeat-{stem.name}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return dict(z)
    from edge_msl.truth import load_truth

    wins = _windows(stem, params)
    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    ends = [(window + i * int(round(HOP_S * fs))) / fs for i in range(len(wins))]
    emb = embeddings(embed, params, wins, batch=batch)
    truth, _ = load_truth(stem.with_suffix(".truth.json"))
    t_s = np.array(ends)
    out = {"t_s": t_s, "emb": emb.astype(np.float32)}
    layout = _layout(params)
    for name, lead in LEAD_S.items():
        out[f"target_{name}"], out[f"care_{name}"] = labels(truth, t_s, window / fs, layout, lead)
    np.savez(cache, **out)
    return out


def to_image(sym, target: np.ndarray, care: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and care mask of the true frame -> those of a symmetric image of the array (the inverse of
    ``Symmetry.restore``: roll the regions back, then mirror)."""
    from edge_msl.regions import AZIMUTH

    t = np.roll(target, -sym.shift, axis=-2)
    c = np.roll(care, -sym.shift, axis=-1)
    if sym.mirror:
        t = t[..., ::-1, :].copy()
        t[..., AZIMUTH] = np.where(t[..., 0] > 0, 1.0 - t[..., AZIMUTH], 0.0)
        c = c[..., ::-1].copy()
    return t, c


def image_features(stem: Path, embed, params: dict, n_images: int, batch: int = 64) -> np.ndarray:
    """Embeddings (n_images - 1, N, D) of the scene's windows on the array's symmetric images 1.. (in the
    daemon's cycle order; image 0 is the scene as it is), cached: a rotated or mirrored copy of every scene for
    training."""
    from edge_msl.symmetry import model_cycle

    cache = stem.parent / f".seqaug{n_images}-{stem.name}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["emb"]
    cycle = model_cycle(params["array"]["positions_m"], params["regions"])[1:n_images]
    wins = _windows(stem, params)
    out = np.stack([embeddings(embed, params, wins, sym, batch=batch) for sym in cycle]).astype(np.float16)
    np.savez(cache, emb=out)
    return out


def _windows(stem: Path, params: dict) -> np.ndarray:
    from edge_msl.arrays import get_array
    from edge_msl.audio_io import open_audio
    from edge_msl.stream import Windower

    with open_audio(stem.with_suffix(".wav")) as r:
        pcm, fs = np.concatenate(list(r.blocks(16000))), r.info.sample_rate_hz
    if fs != int(params["sample_rate_hz"]):
        raise SystemExit(f"{stem}: {fs} Hz, the model's rate is {params['sample_rate_hz']}")
    array = get_array(params["array"]["name"])
    mics = pcm if pcm.shape[1] == array.n_mics else array.select_channels(pcm)  # a scene's WAV or a capture
    x = mics.astype(np.float32) / 32768.0
    win = Windower(int(params["model"]["window_samples"]), int(round(HOP_S * fs)), x.shape[1])
    return np.stack([np.array(w, np.float32) for _end, w in win.push(x)])


def stems_of(dirs: list[str]) -> list[Path]:
    """The scenes (path stems of ``*.truth.json`` + ``.wav``) of the directories."""
    from benchmarks.scenes_bench import scenes

    return scenes(dirs)


def histories(emb: np.ndarray, k: int) -> np.ndarray:
    """(N, D) embeddings of a stream -> (N, k, D): each window with the k - 1 before it (the first repeated at the
    stream's start, as a pipeline that has just started has nothing older)."""
    idx = np.arange(len(emb))[:, None] + np.arange(-k + 1, 1)[None, :]
    return emb[np.clip(idx, 0, None)]


def dataset(dirs: list[str], k: int, instant: str, embed, params: dict, n_images: int = 1,
            min_voiced_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histories (N, k, dim) and targets + care mask (N, R, 4) of the scenes' windows, on ``n_images`` images;
    ``min_voiced_s`` (default: the scoring's 0.15 s) is the voice a talker needs in a window to be labelled."""
    from edge_msl.symmetry import model_cycle
    from edge_msl.truth import load_truth

    cycle = model_cycle(params["array"]["positions_m"], params["regions"])
    xs, ys = [], []
    for stem in stems_of(dirs):
        f = scene_features(stem, embed, params)
        tgt, care = f[f"target_{instant}"], f[f"care_{instant}"]
        if min_voiced_s is not None:
            window_s = int(params["model"]["window_samples"]) / int(params["sample_rate_hz"])
            tgt, care = labels(load_truth(stem.with_suffix(".truth.json"))[0], f["t_s"], window_s, _layout(params),
                               LEAD_S[instant], min_voiced_s)
        xs.append(histories(f["emb"], k).astype(np.float16))
        ys.append(np.concatenate([tgt, care[..., None]], axis=-1))
        if n_images > 1:
            for sym, emb in zip(cycle[1:n_images], image_features(stem, embed, params, n_images)):
                t, c = to_image(sym, tgt, care)
                xs.append(histories(emb, k))
                ys.append(np.concatenate([t, c[..., None]], axis=-1))
    return np.concatenate(xs), np.concatenate(ys)


def static_dataset(data_dir: str, k: int, embed, params: dict, n_images: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``train_tf.simulate`` longer than the model's (1 s: six sub-windows 0.1 s apart), still talkers
    throughout: each sub-window with its history inside the window (the first repeated, as at a stream's start),
    labelled with all the window's sources; on the array's first ``n_images`` symmetric images."""
    from edge_msl.regions import encode_batch
    from edge_msl.symmetry import model_cycle
    from train_tf.evaluate.outputs import POOL_HOP_S, pool_offsets
    from train_tf.simulate import load_windows

    data = load_windows(data_dir)
    audio = data["audio"]
    n = len(audio)
    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    offsets = pool_offsets(audio.shape[1], window, int(round(POOL_HOP_S * fs)))
    cycle = model_cycle(params["array"]["positions_m"], params["regions"])[:n_images]
    cache = Path(data_dir) / f".seqtrain-{n_images}.npz"
    if cache.exists():
        with np.load(cache) as z:
            emb = z["emb"]
    else:
        emb = np.zeros((len(cycle), n, len(offsets), int(embed.output.shape[-1])), np.float16)
        for m, sym in enumerate(cycle):
            for j, o in enumerate(offsets):
                emb[m, :, j] = embeddings(embed, params, audio[:, o:o + window], sym, 32768.0)
        np.savez(cache, emb=emb)
    layout = _layout(params)
    tgt = encode_batch(layout, data["azimuth_deg"], data["distance_m"])
    care = np.ones(tgt.shape[:2], np.float32)
    xs, ys = [], []
    for m, sym in enumerate(cycle):
        t, c = to_image(sym, tgt, care)
        y = np.concatenate([t, c[..., None]], axis=-1)
        for j in range(len(offsets)):
            idx = np.clip(np.arange(j - k + 1, j + 1), 0, None)
            xs.append(emb[m][:, idx])
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def build_head(k: int, dim: int, heads: tuple[np.ndarray, np.ndarray], n_regions: int, hidden: int,
               scale: float, dropout: float = 0.1, proj: int = 0, azimuth: bool = True):
    """The learned stage: the shipped heads on the newest embedding plus a zero-started correction from all k."""
    import keras
    from keras import layers, ops

    from edge_msl.regions import DISTANCE

    inp = keras.Input((k, dim), name="embeddings")
    x = layers.Rescaling(1.0 / scale, name="scale")(inp)
    newest = layers.Lambda(lambda t: t[:, -1], name="newest")(inp)
    base = layers.Dense(3 * n_regions, name="heads", trainable=False)(newest)
    if proj:
        x = layers.Dense(proj, activation="relu", name="proj")(x)  # the same per window
    h = layers.Flatten(name="flat")(x)
    h = layers.Dense(hidden, activation="relu", name="mix")(h)
    if dropout:
        h = layers.Dropout(dropout, name="dropout")(h)
    delta = layers.Dense(3 * n_regions, kernel_initializer="zeros", name="delta")(h)
    keep = np.ones(3 * n_regions, np.float32)
    keep[DISTANCE::3] = 0.0  # the distance stays the shipped heads'
    if not azimuth:  # and, if asked, the azimuth too: the head corrects the activity alone
        from edge_msl.regions import AZIMUTH

        keep[AZIMUTH::3] = 0.0
    delta = layers.Lambda(lambda t: t * ops.convert_to_tensor(keep), name="no_distance")(delta)
    out = layers.Activation("sigmoid", name="act")(layers.Add(name="logits")([base, delta]))
    out = layers.Reshape((n_regions, 3), name="regions")(out)
    model = keras.Model(inp, out, name="seq_head")
    model.get_layer("heads").set_weights(list(heads))
    return model


def seq_loss(azimuth_weight: float = 10.0):
    from keras import ops

    from edge_msl.regions import ACTIVE, AZIMUTH

    def loss(y, p):
        care = y[..., 3]
        t = y[..., ACTIVE]
        q = ops.clip(p[..., ACTIVE], 1e-6, 1 - 1e-6)
        bce = -ops.sum(care * (t * ops.log(q) + (1 - t) * ops.log(1 - q)), axis=-1) / p.shape[1]
        az = ops.sum(t * ops.square(p[..., AZIMUTH] - y[..., AZIMUTH]), axis=-1)
        batch = ops.cast(ops.shape(t)[0], p.dtype)
        return bce + azimuth_weight * az * batch / ops.maximum(ops.sum(t), 1.0)

    return loss


def train(args: argparse.Namespace) -> int:
    import keras

    embed, heads, params = _net(args.model_dir)
    n_regions = int(params["regions"]["n_regions"])
    x, y = dataset(args.train, args.k, args.instant, embed, params, args.images, args.min_voiced_s)
    for d in args.static or []:
        xs, ys = static_dataset(d, args.k, embed, params, args.images)
        print(f"{d}: {len(xs)} static sub-windows")
        x, y = np.concatenate([x, xs]), np.concatenate([y, ys])
    xv, yv = dataset(args.val, args.k, args.instant, embed, params)
    scale = float(np.percentile(x[::7, -1].astype(np.float32), 99))
    model = build_head(args.k, x.shape[-1], heads, n_regions, args.hidden, scale, args.dropout, args.proj,
                       not args.activity_only)
    steps = args.epochs * int(np.ceil(len(x) / args.batch))
    lr = keras.optimizers.schedules.CosineDecay(args.lr, steps)
    model.compile(keras.optimizers.AdamW(lr, weight_decay=args.weight_decay), seq_loss())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"train {len(x)} windows, val {len(xv)}; start val loss {model.evaluate(xv, yv, verbose=0):.4f}")
    t0 = time.perf_counter()
    hist = model.fit(x, y, batch_size=args.batch, epochs=args.epochs, validation_data=(xv, yv), verbose=2,
                     callbacks=[keras.callbacks.ModelCheckpoint(str(out / "best.weights.h5"), save_best_only=True,
                                                                save_weights_only=True)])
    model.save_weights(out / "last.weights.h5")
    cfg = {"k": args.k, "instant": args.instant, "hidden": args.hidden, "dropout": args.dropout, "scale": scale,
           "proj": args.proj, "images": args.images, "weight_decay": args.weight_decay,
           "activity_only": args.activity_only, "min_voiced_s": args.min_voiced_s,
           "dim": int(x.shape[-1]), "n_regions": n_regions, "model_dir": args.model_dir, "train": args.train,
           "static": args.static,
           "val": args.val, "epochs": args.epochs, "lr": args.lr, "batch": args.batch, "n_train": int(len(x)),
           "seconds": round(time.perf_counter() - t0, 1),
           "val_loss": [round(float(v), 5) for v in hist.history["val_loss"]]}
    (out / "head.json").write_text(json.dumps(cfg, indent=1))
    print(json.dumps({k: cfg[k] for k in ("seconds", "val_loss")}))
    return 0


def load_head(run: str | Path, weights: str = "best.weights.h5", net: tuple | None = None):
    """(head model, its head.json, embedding model, heads, params) of a head directory; ``net`` (what :func:`_net`
    returns) spares loading the network of its ``model_dir`` again."""
    cfg = json.loads((Path(run) / "head.json").read_text())
    embed, heads, params = net or _net(cfg["model_dir"])
    model = build_head(cfg["k"], cfg["dim"], heads, cfg["n_regions"], cfg["hidden"], cfg["scale"], cfg["dropout"],
                       cfg.get("proj", 0), not cfg.get("activity_only", False))
    model.load_weights(Path(run) / weights)
    return model, cfg, embed, heads, params


HEAD_DIR = "temporal_head"
"""A model directory's temporal head (head.json + :data:`HEAD_WEIGHTS`), if it has one."""
HEAD_WEIGHTS = "head.weights.h5"


def has_head(model_dir: str | Path) -> bool:
    return (Path(model_dir) / HEAD_DIR / "head.json").exists()


def head_window_outputs(model_dir: str | Path, audio: np.ndarray, weights: str, hop_s: float,
                        batch: int = 64) -> np.ndarray:
    """Outputs (N, k, n_regions, 3) of a model with a temporal head on the sub-windows of N windows (as
    ``train_tf.evaluate.window_outputs``): each sub-window's from its embedding and those of the sub-windows before
    it in its window (the first standing in for missing ones, as at a stream's start); windows as they are."""
    from train_tf.evaluate.outputs import pool_offsets

    net = _net(model_dir, weights)
    head, cfg, embed, _heads, params = load_head(Path(model_dir) / HEAD_DIR, HEAD_WEIGHTS, net)
    fs, window = int(params["sample_rate_hz"]), int(params["model"]["window_samples"])
    offsets = [0] if audio.shape[1] == window else pool_offsets(audio.shape[1], window,
                                                                 max(1, int(round(hop_s * fs))))
    n = len(audio)
    emb = np.zeros((n, len(offsets), int(cfg["dim"])), np.float32)
    for j, o in enumerate(offsets):
        emb[:, j] = embeddings(embed, params, audio[:, o:o + window], full_scale=32768.0, batch=batch)
    hist = np.stack([histories(e, int(cfg["k"])) for e in emb])
    out = np.asarray(head.predict(hist.reshape(-1, *hist.shape[2:]), verbose=0, batch_size=512))
    return out.reshape(n, len(offsets), *out.shape[1:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train_tf.temporal_head", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="cache the network's embeddings and labels next to each scene")
    f.add_argument("sets", nargs="+")
    f.add_argument("--model-dir", default=MODEL_DIR)
    f.add_argument("--images", type=int, default=1, help="also the array's first N symmetric images (training)")
    t = sub.add_parser("train", help="train a temporal head")
    t.add_argument("--train", nargs="+", required=True, help="scene directories (python -m train_tf.scenes)")
    t.add_argument("--static", nargs="*", help="train_tf.simulate sets of 1 s windows (still talkers) to add")
    t.add_argument("--val", nargs="+", required=True, help="scene directories for the validation loss")
    t.add_argument("--model-dir", default=MODEL_DIR)
    t.add_argument("--k", type=int, default=4, help="windows the head sees (default 4)")
    t.add_argument("--instant", choices=sorted(LEAD_S), default="centre")
    t.add_argument("--hidden", type=int, default=128)
    t.add_argument("--proj", type=int, default=64, help="a shared per-window projection to this many values first")
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument("--images", type=int, default=4, help="train on this many of the array's symmetric images")
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch", type=int, default=512)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.004)
    t.add_argument("--min-voiced-s", type=float, help="voice a talker needs in a training window to be labelled "
                   "(default: the scoring's 0.15 s; less lists a starting talker sooner)")
    t.add_argument("--activity-only", action="store_true", help="correct the activity alone (the azimuth stays "
                   "the network's)")
    t.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "features":
        embed, _h, params = _net(args.model_dir)
        stems = stems_of(args.sets)
        t0 = time.perf_counter()
        for i, stem in enumerate(stems):
            scene_features(stem, embed, params)
            if args.images > 1:
                image_features(stem, embed, params, args.images)
            if i % 20 == 0:
                print(f"{i + 1}/{len(stems)} {stem} {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
