"""finetune: the Keras model fine-tuned on a session's set, and the decode threshold chosen on its validation windows.

Needs TensorFlow; it must not touch the installed model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_msl.regions import DISTANCE, RegionLayout, encode_batch

from .session import CalibrationError, Session
from .validate import _summary


def default_keras_model(array_name: str) -> Path:
    """``models/<array>/`` of the source checkout this module runs from, else the float16 copy packaged
    with it (``train_tf/float_models/<array>/``, written by ``python -m train_tf.pack_weights``)."""
    from train_tf.pack_weights import CHECKOUT, PACKAGED

    checkout = CHECKOUT / array_name
    return checkout if (checkout / "params.json").exists() else PACKAGED / array_name


def _keras_dir(session: Session, keras_model: str | Path | None) -> Path:
    d = Path(keras_model or session.data.get("keras_model") or default_keras_model(session.array.name))
    if not (d / "params.json").exists():
        from train_tf.pack_weights import PACKAGED

        have = ", ".join(sorted(p.name for p in PACKAGED.glob("*") if (p / "params.json").exists())) or "none"
        raise CalibrationError(f"{d}: no params.json, so no float Keras model to fine-tune (packaged: {have}); pass "
                               "--keras-model DIR (a directory with params.json + model.weights.h5, e.g. "
                               "models/<array> of a source checkout)")
    return d


def _targets(layout: RegionLayout, az: np.ndarray, dist: np.ndarray, level: np.ndarray | None = None) -> np.ndarray:
    d = np.where(np.isfinite(dist), dist, 1.0)
    w = None if level is None else np.where(np.isfinite(level), level, 0.0)
    return encode_batch(layout, az, d, w)


def finetune(session: Session, keras_model: str | Path | None = None, progress: Callable[[str], None] | None = None,
             ) -> dict[str, Any]:
    """Fine-tune the float model on set.npz; writes ``model/`` (params.json + model.weights.h5)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from edge_msl.features import model_scaling, normalize_window
    from train_tf.model_dir import PARAMS, WEIGHTS, default_weights, load_model
    from train_tf.model import LossWeights, region_loss

    s = session.settings
    src = _keras_dir(session, keras_model)
    path = session.dir / "set.npz"
    if not path.exists():
        raise CalibrationError(f"{path} not found; run 'edge-msl calibrate build --session {session.dir}' first")
    keras.utils.set_random_seed(s.seed)
    model, params = load_model(src, default_weights(src))
    cfg = params["model"]
    if (cfg["window_samples"], cfg["n_mics"]) != (session.window_samples, session.array.n_mics):
        raise CalibrationError(f"{src}: model takes ({cfg['window_samples']}, {cfg['n_mics']}) windows, the session "
                               f"has ({session.window_samples}, {session.array.n_mics}); use the array's model")
    layout = RegionLayout.from_dict(params["regions"])
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    x_real = data["train_audio"]
    y_real = _targets(layout, data["train_azimuth_deg"], data["train_distance_m"])
    x_sim = data["sim_audio"]
    y_sim = _targets(layout, data["sim_azimuth_deg"], data["sim_distance_m"], data["sim_level_db"])
    x = normalize_window(np.concatenate([x_real, x_sim]).astype(np.float32), **model_scaling(params))
    y = np.concatenate([y_real, y_sim])
    # a self-labelled direction comes without a distance: keep the model's own distance there, so the
    # distance head is neither trained nor disturbed by a made-up value
    unknown = np.concatenate([np.any(~np.isfinite(data["train_distance_m"]) & np.isfinite(data["train_azimuth_deg"]),
                                     axis=1), np.zeros(len(x_sim), bool)])
    if unknown.any():
        pred = np.concatenate([np.asarray(model(x[i:i + 64], training=False)) for i in range(0, len(x), 64)])
        y[unknown, :, DISTANCE] = pred[unknown, :, DISTANCE]
    trained = set(s.train_layers)
    names = {layer.name for layer in model.layers}
    missing = sorted(trained - names)
    if missing:
        raise CalibrationError(f"layers {missing} are not in the model (it has {sorted(names)}); fix train_layers")
    for layer in model.layers:
        # batch-norm layers stay frozen (trainable=False also runs them in inference mode): a few hundred
        # windows of one room would otherwise overwrite statistics learned from millions
        layer.trainable = layer.name in trained
    lw = LossWeights(**params.get("loss_weights", {}))
    model.compile(optimizer=keras.optimizers.Adam(s.learning_rate), loss=region_loss(lw), jit_compile=False)
    n_trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    base_recall = None
    if s.tune_threshold and "tune_audio" in data and len(data["tune_audio"]):
        # the uncalibrated model's recall there: the threshold is chosen not to lose any of it
        xt = normalize_window(data["tune_audio"].astype(np.float32), **model_scaling(params))
        pred0 = np.concatenate([np.asarray(model(xt[i:i + 64], training=False)) for i in range(0, len(xt), 64)])
        from edge_msl.regions import decode
        from train_tf.evaluate import score_detections

        thr0 = float(params.get("decode", {}).get("threshold", 0.5))
        base_recall = _summary(score_detections([decode(layout, o, thr0) for o in pred0], data["tune_azimuth_deg"],
                                                np.zeros(data["tune_azimuth_deg"].shape), 20.0))["recall"]
    original = [v.numpy() for v in model.weights]
    anchors = [(v, v.numpy()) for v in model.trainable_weights] if s.anchor_decay > 0 else []
    rng = np.random.default_rng(s.seed)
    t0 = time.perf_counter()
    history = []
    swa = None
    steps_per_epoch = -(-len(x) // s.batch_size)
    for epoch in range(s.epochs):
        order = rng.permutation(len(x))
        losses = []
        for b in range(0, len(order), s.batch_size):
            if s.final_learning_rate != 1.0:
                model.optimizer.learning_rate.assign(learning_rate_at(
                    epoch * steps_per_epoch + b // s.batch_size, s.epochs * steps_per_epoch, s.learning_rate,
                    s.final_learning_rate))
            i = np.sort(order[b:b + s.batch_size])
            losses.append(float(model.train_on_batch(x[i], y[i])))
            for v, w0 in anchors:
                v.assign(v - s.anchor_decay * (v - w0))
        history.append(float(np.mean(losses)))
        if epoch >= s.epochs - s.average_last_epochs and s.average_last_epochs > 1:
            snap = [v.numpy() for v in model.weights]
            swa = snap if swa is None else [a + b for a, b in zip(swa, snap)]
        if progress:
            progress(f"epoch {epoch + 1}/{s.epochs}: loss {history[-1]:.4f}")
    if swa is not None:
        n_avg = min(s.average_last_epochs, s.epochs)
        for v, w in zip(model.weights, swa):
            v.assign(w / n_avg)
    if s.weight_interpolation != 1.0:
        interpolate_weights(model, original, s.weight_interpolation)
    seconds = time.perf_counter() - t0
    out = session.dir / "model"
    out.mkdir(exist_ok=True)
    model.save_weights(out / WEIGHTS)
    new_params = dict(params)
    tuned = None
    if s.tune_threshold and "tune_audio" in data and len(data["tune_audio"]):
        pred = np.concatenate([np.asarray(model(xt[i:i + 64], training=False)) for i in range(0, len(xt), 64)])
        tuned = choose_threshold(layout, pred, data["tune_azimuth_deg"],
                                 float(params.get("decode", {}).get("threshold", 0.5)),
                                 base_recall=None if base_recall is None else base_recall - s.recall_tolerance)
        new_params["decode"] = {**params.get("decode", {}), "threshold": tuned["threshold"]}
    elif s.decode_threshold is not None:  # in (0, 1): CalibrationSettings checks it
        new_params["decode"] = {**params.get("decode", {}), "threshold": float(s.decode_threshold)}
    new_params["calibrated"] = {
        "from": str(src), "session": str(session.dir), "train_layers": list(s.train_layers),
        "trainable_parameters": n_trainable, "epochs": s.epochs, "learning_rate": s.learning_rate,
        "final_learning_rate": s.final_learning_rate,
        "average_last_epochs": s.average_last_epochs, "weight_interpolation": s.weight_interpolation, "anchor_decay": s.anchor_decay,
        "windows": {"real": int(len(x_real)), "simulated": int(len(x_sim))}, "loss": history,
        "threshold": tuned}
    (out / PARAMS).write_text(json.dumps(new_params, indent=2))
    return {"seconds": seconds, "windows": int(len(x)), "trainable_parameters": n_trainable, "loss": history,
            "threshold": tuned}


def learning_rate_at(step: int, steps: int, rate: float, final_fraction: float) -> float:
    """The learning rate at ``step`` of ``steps``: a half cosine from ``rate`` (first step) down to
    ``final_fraction * rate`` (last step)."""
    t = step / max(1, steps - 1)
    return float(rate * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + np.cos(np.pi * min(1.0, t)))))


def interpolate_weights(model: Any, original: Sequence[np.ndarray], alpha: float) -> None:
    """Set every weight of ``model`` to ``alpha * w + (1 - alpha) * w_0``, ``original`` being its weights
    before fine-tuning in ``model.weights`` order (WiSE-FT; frozen weights are equal, so stay as they are)."""
    if len(original) != len(model.weights):
        raise ValueError(f"{len(original)} original weights for a model of {len(model.weights)}")
    for v, w0 in zip(model.weights, original):
        v.assign(alpha * v.numpy() + (1.0 - alpha) * w0)


def choose_threshold(layout: RegionLayout, outputs: np.ndarray, az: np.ndarray, default: float,
                     grid: Sequence[float] = (0.25, 0.3, 0.35, 0.4),
                     base_recall: float | None = None) -> dict[str, Any]:
    """The decode threshold with the best F1 on ``outputs`` (N, regions, 3) of windows with true azimuths
    ``az`` (N, k; NaN = none), the lower on a tie; ``grid`` stays near the shipped 0.4 because the recorded
    tails are a small set (wider grids picked 0.15 there and lost F1 at fresh positions); with
    ``base_recall`` (the uncalibrated model's recall there, less the install rule's tolerance), only
    thresholds that keep that recall compete. Returns it with its F1/recall and those of
    ``default``."""
    from edge_msl.regions import decode
    from train_tf.evaluate import score_detections

    def at(t: float) -> dict[str, Any]:
        return _summary(score_detections([decode(layout, o, t) for o in outputs], az, np.zeros(az.shape), 20.0))

    base = at(default)
    scores = {t: at(t) for t in sorted(set(grid) | {default})}
    if base_recall is not None:  # keep the recall the model had before calibration, if any threshold does
        kept = {t: r for t, r in scores.items() if (r["recall"] or 0.0) >= base_recall - 1e-9}
        scores = kept or {min(scores): scores[min(scores)]}
    top = max(r["f1"] or 0.0 for r in scores.values())
    best_t = min(t for t, r in scores.items() if (r["f1"] or 0.0) >= top - 1e-9)  # a tie: the lower (recall)
    best = scores[best_t]
    return {"threshold": float(best_t), "f1": best["f1"], "recall": best["recall"], "default": float(default),
            "base_recall": base_recall,
            "default_f1": base["f1"], "default_recall": base["recall"]}
