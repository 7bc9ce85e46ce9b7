"""A learned post-filter for per-talker audio: a small network, the same for every STFT bin, that turns the
separator's own evidence at that bin (spatial posterior, beam powers, noise floor, the frames before) into a
track's gain. Trained by ``train_tf.separate_postfilter`` on simulated scenes (docs/separation.md).

numpy only; it reads its weights (an ``.npz`` beside the models) and touches no other file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .settings_check import SettingError

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "models" / "separate-postfilter.npz"

FEATURES = (
    "mask_logit", "gain_logit", "beam_to_mic_db", "beam_to_others_db", "beam_to_floor_db", "beam_to_peak_db",
    "beam_change_db", "beam_to_recent_db", "mask_logit_prev", "beam_to_mic_db_prev", "mask_logit_below",
    "mask_logit_above", "noise_posterior", "others_max_mask", "freq_lin", "freq_log", "n_tracks",
    "direct_match", "direct_match_prev", "mask_logit_prev2", "mask_logit_below2", "mask_logit_above2",
    "beam_to_others_below", "beam_to_others_above",
)
"""What ``features`` computes at each bin of each track's frame, in this order; a network reads the ones its weights
name (round 9's the first 17)."""
N_FEATURES = len(FEATURES)
RECENT_FORGET = 0.7
"""Per frame, the weight of the past in a track's recent beam power (``beam_to_recent_db``: how far this
frame stands above the last few, the shape of an onset or a reverberant tail)."""


@dataclass
class TrackState:
    """What a track's features carry from one block of frames to the next (per bin)."""

    lp_y: np.ndarray | None = None  # log10 beam power of the last frame
    recent: np.ndarray | None = None  # its recursive average
    mask_logit: np.ndarray | None = None
    mask_logit2: np.ndarray | None = None  # two frames back
    beam_to_mic: np.ndarray | None = None
    match: np.ndarray | None = None


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p)).astype(np.float32)


def features(y: np.ndarray, masks: np.ndarray, gains: np.ndarray, x0: np.ndarray, floor: np.ndarray | None,
             freqs_hz: np.ndarray, states: list[TrackState], match: np.ndarray | None = None) -> np.ndarray:
    """(K, T, F, N_FEATURES) float32 for the beams ``y`` (K, T, F) of a block, the spatial posteriors ``masks``
    and the separator's own gains (K, T, F), mic 0's frames ``x0`` (T, F), the mic noise floor (F,), each
    track's state, which is updated to the block's last frame, and ``match`` (K, T, F): how much of each bin's
    power across the mics arrives from the track's direction, |a^H x|^2 / (M |x|^2) with ``a`` the track's steering
    vector (a plane wave, or with ``near_field`` a spherical one), about [0, 1] (None: 0)."""
    k_n, t_n, f_n = y.shape
    tiny = 1e-12
    py = (y.real ** 2 + y.imag ** 2).astype(np.float32)
    lp_y = np.log10(py + tiny)
    lp_x = np.log10((x0.real ** 2 + x0.imag ** 2).astype(np.float32) + tiny)
    others = py.sum(axis=0, keepdims=True) - py
    out = np.empty((k_n, t_n, f_n, N_FEATURES), dtype=np.float32)
    ml = _logit(masks)
    out[..., 0] = ml
    out[..., 1] = _logit(gains)
    b2m = np.clip(lp_y - lp_x[None], -4.0, 2.0)
    out[..., 2] = b2m
    out[..., 3] = np.clip(lp_y - np.log10(others + tiny), -4.0, 4.0) if k_n > 1 else 4.0
    lf = np.log10(floor.astype(np.float32) + tiny) if floor is not None else np.full(f_n, -12.0, np.float32)
    out[..., 4] = np.clip(lp_y - lf, -2.0, 8.0)
    out[..., 5] = np.clip(lp_y - lp_y.max(axis=2, keepdims=True), -8.0, 0.0)
    mt = np.zeros((k_n, t_n, f_n), np.float32) if match is None else match.astype(np.float32)
    out[..., 17] = mt
    for ki, st in enumerate(states):
        prev_lp = st.lp_y if st.lp_y is not None else lp_y[ki, 0]
        rec = st.recent if st.recent is not None else lp_y[ki, 0]
        prev_ml = st.mask_logit if st.mask_logit is not None else ml[ki, 0]
        prev_ml2 = st.mask_logit2 if st.mask_logit2 is not None else prev_ml
        prev_b2m = st.beam_to_mic if st.beam_to_mic is not None else b2m[ki, 0]
        prev_mt = st.match if st.match is not None else mt[ki, 0]
        for t in range(t_n):
            out[ki, t, :, 6] = np.clip(lp_y[ki, t] - prev_lp, -4.0, 4.0)
            out[ki, t, :, 7] = np.clip(lp_y[ki, t] - rec, -4.0, 4.0)
            out[ki, t, :, 8] = prev_ml
            out[ki, t, :, 9] = prev_b2m
            out[ki, t, :, 18] = prev_mt
            out[ki, t, :, 19] = prev_ml2
            rec = RECENT_FORGET * rec + (1 - RECENT_FORGET) * lp_y[ki, t]
            prev_lp, prev_ml2, prev_ml, prev_b2m, prev_mt = lp_y[ki, t], prev_ml, ml[ki, t], b2m[ki, t], mt[ki, t]
        st.lp_y, st.recent, st.mask_logit, st.mask_logit2 = prev_lp, rec, prev_ml, prev_ml2
        st.beam_to_mic, st.match = prev_b2m, prev_mt
    out[:, :, 1:, 10] = ml[:, :, :-1]
    out[:, :, 0, 10] = ml[:, :, 0]
    out[:, :, :-1, 11] = ml[:, :, 1:]
    out[:, :, -1, 11] = ml[:, :, -1]
    out[:, :, 2:, 20] = ml[:, :, :-2]
    out[:, :, :2, 20] = ml[:, :, :1]
    out[:, :, :-2, 21] = ml[:, :, 2:]
    out[:, :, -2:, 21] = ml[:, :, -1:]
    b2o = out[..., 3]
    out[:, :, 1:, 22] = b2o[:, :, :-1]
    out[:, :, 0, 22] = b2o[:, :, 0]
    out[:, :, :-1, 23] = b2o[:, :, 1:]
    out[:, :, -1, 23] = b2o[:, :, -1]
    msum = masks.sum(axis=0)
    out[..., 12] = np.clip(1.0 - msum, 0.0, 1.0)[None]
    out[..., 13] = np.clip(msum[None] - masks, 0.0, 1.0) if k_n > 1 else 0.0
    nyq = max(float(freqs_hz[-1]), 1.0)
    out[..., 14] = (freqs_hz / nyq).astype(np.float32)
    out[..., 15] = (np.log2(np.maximum(freqs_hz, 50.0) / 1000.0) / 3.0).astype(np.float32)
    out[..., 16] = (k_n - 1) / 3.0
    return out


@dataclass
class PostfilterNet:
    """The per-bin network: dense layers (ReLU between), a sigmoid at the end; the input's standardization is
    folded into the first layer."""

    layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    target: str = ""
    """What it was trained to give (the reference it approximates), for the record."""
    names: tuple[str, ...] = FEATURES[:17]
    """The features it reads, in its input's order (a subset of ``FEATURES``)."""

    @property
    def needs_match(self) -> bool:
        return any(n.startswith("direct_match") for n in self.names)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS) -> "PostfilterNet":
        with np.load(path) as z:
            n = int(z["n_layers"])
            names = [str(s) for s in z["features"]]
            unknown = [f for f in names if f not in FEATURES]
            if unknown:
                raise ValueError(f"{path}: trained on features this edge-msl does not compute ({', '.join(unknown)}); "
                                 "retrain it (python -m train_tf.separate_postfilter train)")
            layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(n)]
            target = str(z["target"]) if "target" in z else ""
        return cls(layers, target, tuple(names))

    @classmethod
    def load_setting(cls, path: str | Path, shown: str, where: str = "") -> "PostfilterNet":
        """:meth:`load` for the ``[separate] learned_weights`` setting (``shown``: its value as the user wrote it,
        ``where``: what a relative path is relative to); a file that cannot be loaded is one :class:`SettingError`
        naming the key, the value and the fix."""
        try:
            return cls.load(path)
        except (OSError, ValueError, KeyError) as e:
            raise SettingError(f"[separate] learned_weights = {shown!r}: cannot load it ({e}); give a .npz written by "
                               f"`python -m train_tf.separate_postfilter train`{where}, or '' for the bundled network"
                               ) from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(..., N_FEATURES) -> (...) in (0, 1)."""
        shape = x.shape[:-1]
        if self.names != FEATURES:
            x = x[..., [FEATURES.index(n) for n in self.names]]
        h = x.reshape(-1, x.shape[-1])
        for i, (w, b) in enumerate(self.layers):
            h = h @ w
            h += b
            if i < len(self.layers) - 1:
                np.maximum(h, 0.0, out=h)
        z = np.clip(h[:, 0], -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-z))).reshape(shape)


__all__ = ["features", "PostfilterNet", "TrackState", "FEATURES", "N_FEATURES", "DEFAULT_WEIGHTS"]
