"""Is the pooled decode leaving detections on the table? A learned decode, measured against it.

The shipped decode reports a region when its latest window reaches the onset threshold or its
mean over the pooled windows reaches the pool threshold (``experiments.decode01.pool_outputs``, formerly ``edge_msl.regions``). This
benchmark trains a small classifier on the same network outputs, with more context per region:
its activity in each pooled window (sorted), the activity of its neighbours one to four regions
away on both sides, its fine azimuth, and the whole window's total, count and strongest region.
It is trained on one simulated set (never the test set) and scored on another at several
thresholds, with the same duplicate suppression and matching as ``train_tf.evaluate``. If it
does not beat the hand-made rule there, the network's outputs, not the rule, limit F1.

    .venv/bin/python -m experiments.learned_decode --model models/uca8-r10 \\
        --train data/dec-train-1s --val data/val2-speech-1s --png out/learned_decode.png
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


NEIGHBOURS = (1, 2, 3, 4)


def region_features(per: np.ndarray) -> np.ndarray:
    """(N, k, R, 3) network outputs of k pooled windows -> (N, R, F) features of each region,
    the same for every region (circular neighbours; left and right folded by max/min, since a
    mirror image of the scene is as likely)."""
    act = per[..., 0]
    n, k, r = act.shape
    mean, peak = act.mean(1), act.max(1)
    feats = [np.sort(act, axis=1).transpose(0, 2, 1), mean[..., None], act[:, -1, :, None], act.std(1)[..., None]]
    for d in NEIGHBOURS:
        left, right = np.roll(mean, d, 1), np.roll(mean, -d, 1)
        feats += [np.maximum(left, right)[..., None], np.minimum(left, right)[..., None],
                  np.maximum(np.roll(peak, d, 1), np.roll(peak, -d, 1))[..., None]]
    w = act + 1e-6
    azimuth = (per[..., 2] * w).sum(1) / w.sum(1)
    feats += [azimuth[..., None], np.minimum(azimuth, 1.0 - azimuth)[..., None],
              np.roll(azimuth, 1, 1)[..., None], np.roll(azimuth, -1, 1)[..., None]]
    top = mean.max(1, keepdims=True)
    whole = [mean.sum(1, keepdims=True), (mean > 0.3).sum(1, keepdims=True).astype(np.float64), top]
    feats += [np.repeat(v, r, 1)[..., None] for v in whole]
    rank = np.argsort(np.argsort(-mean, axis=1), axis=1).astype(np.float64) / r
    feats += [rank[..., None], (mean / (top + 1e-3))[..., None]]
    return np.concatenate(feats, axis=-1).astype(np.float32)


def region_targets(data: dict, params: dict) -> np.ndarray:
    """(N, R) 0/1: which regions of each window hold a talker, in the model's region layout."""
    from edge_msl.regions import RegionLayout, encode_batch

    layout = RegionLayout.from_dict(params["regions"])
    level = np.where(np.isfinite(data["level_db"]), data["level_db"], 0.0)
    return encode_batch(layout, data["azimuth_deg"], data["distance_m"], level)[..., 0]


def fit_predict(x_t: np.ndarray, y_t: np.ndarray, x_v: np.ndarray, hidden: str, epochs: int,
                lr: float) -> np.ndarray:
    """Train a per-region classifier (hidden widths ``hidden``, a comma list) on features
    ``x_t`` (N, R, F) and targets ``y_t`` (N, R), standardized on the training features; its
    activities (M, R) for ``x_v``."""
    import keras

    f = x_t.reshape(-1, x_t.shape[-1])
    mu, sd = f.mean(0), f.std(0) + 1e-6
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((f.shape[1],))]
                           + [keras.layers.Dense(int(h), activation="relu") for h in hidden.split(",")]
                           + [keras.layers.Dense(1, activation="sigmoid")])
    net.compile(keras.optimizers.Adam(lr), "binary_crossentropy")
    net.fit((f - mu) / sd, y_t.reshape(-1), batch_size=512, epochs=epochs, verbose=0)
    g = x_v.reshape(-1, x_v.shape[-1])
    return net.predict((g - mu) / sd, batch_size=4096, verbose=0).reshape(x_v.shape[:2])


def scorer(params: dict, val: dict, match_deg: float = 20.0):
    """``score(outputs, threshold)`` -> (summary, F1 for 1..4 talkers) of pooled outputs on the
    windows ``val``, with the model's suppression and ``train_tf.evaluate``'s matching."""
    from experiments.decode01 import decode_all
    from train_tf.evaluate import score_detections, summarize

    n_src = val["n_sources"].astype(int)

    def score(outputs: np.ndarray, threshold: float) -> tuple[dict, list[float]]:
        dets, _, _ = decode_all(outputs, params, threshold, pooled=True)
        rows = score_detections(dets, val["azimuth_deg"], val["distance_m"], match_deg)
        per_k = [summarize([rows[i] for i in np.flatnonzero(n_src == k)])["f1"] for k in (1, 2, 3, 4)]
        return summarize(rows), per_k

    return score


def plot_curves(curves: dict[str, list[tuple[float, float]]], png: str, figsize: tuple[float, float] = (5, 4),
                legend_fontsize: float | None = None) -> None:
    """Precision over recall of each decode (a line for several thresholds, a square for one)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for name, pts in curves.items():
        r, p = zip(*pts)
        ax.plot(r, p, "o-" if len(pts) > 1 else "s", label=name)
    ax.set_xlabel("recall @20°")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_fontsize)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nwrote {png}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from experiments.decode01 import pool_gain, pool_gate, pooled, pooled_thresholds
    from train_tf.evaluate import window_outputs
    from train_tf.simulate import load_windows

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/uca8-r10")
    ap.add_argument("--weights", default="model.weights.h5")
    ap.add_argument("--train", required=True, help="simulated 1 s window set to train the decode on")
    ap.add_argument("--val", required=True, help="simulated 1 s window set to score it on (not the test set)")
    ap.add_argument("--thresholds", default="0.2,0.3,0.4,0.5,0.6")
    ap.add_argument("--hidden", default="32", help="comma list of hidden layer widths")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--png", default=None, help="write recall/precision of both decodes here")
    args = ap.parse_args(argv)

    def load(path: str):
        data = load_windows(path)
        per, params = window_outputs(args.model, data["audio"], args.weights)
        if per.shape[1] < 2:
            raise SystemExit(f"{path}: windows of the model's own length; the learned decode needs longer ones (pooled)")
        return per, region_targets(data, params), data, params

    per_t, y_t, _, _ = load(args.train)
    per_v, _, val, params = load(args.val)
    x_t = region_features(per_t)
    p_v = fit_predict(x_t, y_t, region_features(per_v), args.hidden, args.epochs, 3e-3)

    shipped = pooled(per_v, pool_gain(params), pool_gate(params))
    learned = shipped.copy()
    learned[..., 0] = p_v
    score = scorer(params, val)

    print(f"{args.model}: decode trained on {args.train} ({len(per_t)} windows, {x_t.shape[-1]} features per region, "
          f"hidden {args.hidden}), scored on {args.val} ({len(per_v)} windows)\n")
    print("| decode | threshold | recall | precision | F1 | F1 1 / 2 / 3 / 4 src |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    curves: dict[str, list[tuple[float, float]]] = {"shipped rule": [], "learned": []}
    onset, _ = pooled_thresholds(params.get("decode", {}))
    for name, outputs, thresholds in (("shipped rule", shipped, [float(onset)]),
                                      ("learned", learned, [float(t) for t in args.thresholds.split(",")])):
        for t in thresholds:
            s, per_k = score(outputs, t)
            curves[name].append((s["recall"], s["precision"]))
            print(f"| {name} | {t:g} | {s['recall']:.3f} | {s['precision']:.3f} | {s['f1']:.4f} | "
                  + " / ".join(f"{f:.3f}" for f in per_k) + " |")
    if args.png:
        plot_curves(curves, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
