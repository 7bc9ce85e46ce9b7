"""The SampleCNN for region-coded localization (Keras 3; runs on the TensorFlow or JAX backend).

Raw multichannel audio (samples, mics), scaled by ``edge_msl.features.normalize_window``, in;
one tensor ``regions`` (n_regions, 3) = (active, normalized distance, normalized azimuth) out,
all sigmoids, in the column order of ``edge_msl.regions``. Training-only: never imported by
``edge_msl``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
from keras import layers, ops

from edge_msl.regions import ACTIVE, AZIMUTH, DISTANCE
from edge_msl.settings_check import Settings, integer, items, number, setting


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Shape of the network; stored with every trained model (params.json's ``model``, JSON data: :meth:`to_dict`,
    read back by :meth:`from_dict`)."""

    window_samples: int = setting(8000, integer(1))
    """Samples per input window."""
    n_mics: int = setting(8, integer(1, 256))
    """Input channels (microphones, in the array's order)."""
    n_regions: int = setting(8, integer(1, 360))
    """Azimuth sectors (outputs per sector: active, distance, azimuth)."""
    first_filters: int = setting(32, integer(1))
    """Channels of the strided first convolution."""
    first_kernel: int = setting(3, integer(1))
    """Kernel of the first convolution (sample-level frames)."""
    first_stride: int = setting(0, integer(0))
    """Stride of the first convolution; 0 = the kernel (non-overlapping frames). A kernel longer
    than the stride spans the array's largest inter-mic delay, so the first layer can form beams."""
    block_filters: tuple[int, ...] = setting((32, 48, 96, 128, 256, 256, 256), items(integer(1)))
    """Channels of each conv + BN + ReLU + max-pool block."""
    kernel: int = setting(3, integer(1))
    """Kernel of the block convolutions."""
    pool: int = setting(3, integer(1))
    """Max-pool size (and stride) after each block."""
    dense_units: int = setting(256, integer(1))
    """Width of the fully connected layer before the heads."""
    head_frames: int = setting(0, integer(0, 64))
    """0: the dense layer sees the last block's max-pooled, globally averaged channels (the SampleCNN).
    n > 0: it also sees the last block's newest ``n`` frames (before that block's max-pool) side by side,
    in time order, so that it can tell early from late events in the window (issue 27: walkers reported
    where they are at the window's end). Adds ``n`` x the last block's channels inputs to the dense layer."""
    dropout: float = setting(0.2, number(0.0, 1.0, hi_open=True, as_given=True))
    """Dropout before the heads (training only)."""

    KEY = "model.{}"
    TABLE = "model"
    PLAIN_DATA = True


def layer_shapes(cfg: ModelConfig) -> list[tuple[str, int, int, int, int]]:
    """(name, output length, kernel, in channels, out channels) of every conv/dense layer."""
    rows = []
    length = (cfg.window_samples - cfg.first_kernel) // first_stride(cfg) + 1
    rows.append(("conv0", length, cfg.first_kernel, cfg.n_mics, cfg.first_filters))
    cin = cfg.first_filters
    for i, cout in enumerate(cfg.block_filters):
        rows.append((f"conv{i + 1}", length, cfg.kernel, cin, cout))  # 'same' padding keeps the length
        length = max(1, length // cfg.pool)
        cin = cout
    rows.append(("dense", 1, 1, cin * (1 + cfg.head_frames), cfg.dense_units))
    rows.append(("heads", 1, 1, cfg.dense_units, 3 * cfg.n_regions))
    return rows


def first_stride(cfg: ModelConfig) -> int:
    """Effective stride of the first convolution."""
    return cfg.first_stride or cfg.first_kernel


def count_macs(cfg: ModelConfig) -> int:
    """Multiply-accumulates per window (convolutions and dense layers; BN folds into the convs)."""
    return int(sum(length * k * cin * cout for _, length, k, cin, cout in layer_shapes(cfg)))


def build_model(cfg: ModelConfig) -> keras.Model:
    """The SampleCNN with one sigmoid output tensor ``regions`` of shape (n_regions, 3)."""
    inp = keras.Input((cfg.window_samples, cfg.n_mics), name="audio")
    x = layers.Conv1D(cfg.first_filters, cfg.first_kernel, strides=first_stride(cfg), use_bias=False, name="conv0")(inp)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.ReLU(name="relu0")(x)
    for i, filters in enumerate(cfg.block_filters):
        x = layers.Conv1D(filters, cfg.kernel, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        last = x
        if x.shape[1] >= cfg.pool:
            x = layers.MaxPooling1D(cfg.pool, name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    if cfg.head_frames:
        x = layers.Concatenate(name="head_in")([x, _newest_frames(last, cfg.head_frames)])
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    if cfg.dropout > 0:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    x = layers.Dense(3 * cfg.n_regions, activation="sigmoid", name="heads")(x)
    out = layers.Reshape((cfg.n_regions, 3), name="regions")(x)
    return keras.Model(inp, out, name="samplecnn_msl")


def _newest_frames(x, n: int):
    """The newest ``n`` frames of ``x`` (batch, frames, channels), flattened in time order."""
    length = x.shape[1]
    if n > length:
        raise ValueError(f"head_frames {n} > the last block's {length} frames")
    if n < length:
        x = layers.Cropping1D((length - n, 0), name="newest")(x)
    return layers.Flatten(name="frames")(x)


_weight = number(0.0, 1000.0, as_given=True)
"""A loss term's weight (0 = the term is off), kept as given."""


@dataclass(frozen=True)
class LossWeights(Settings):
    """Weights of the three loss terms (the prototype's: 1, 10, 2); stored as params.json's ``loss_weights``."""

    activity: float = setting(1.0, _weight)
    """Binary cross-entropy on every region's activity."""
    azimuth: float = setting(10.0, _weight)
    """Squared error of the normalized azimuth, active regions only."""
    distance: float = setting(2.0, _weight)
    """Squared error of the normalized distance, active regions only."""
    positive: float = setting(1.0, number(0.0, 1000.0, lo_open=True, as_given=True))
    """Weight of the active regions' half of the cross-entropy (1 = plain BCE; above 1 a missed
    talker costs more than a false detection)."""

    KEY = "loss_weights.{}"
    TABLE = "loss_weights"
    PLAIN_DATA = True


def region_loss(weights: LossWeights = LossWeights()):
    """Loss over (batch, n_regions, 3) targets and predictions.

    BCE over all regions' activity (mean over regions), plus squared errors of the fine outputs
    masked to the regions that hold a source, averaged over active regions in the batch (a
    batch of silent windows adds no fine loss). A sector's azimuth range does not wrap (0 and 1
    are its two borders, which belong to different sectors), so the squared error in
    normalized units is proportional to the angular error in degrees.
    """

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        eps = 1e-6
        p = ops.clip(y_pred[..., ACTIVE], eps, 1.0 - eps)
        t = y_true[..., ACTIVE]
        bce = -ops.mean(weights.positive * t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p), axis=-1)
        n_active = ops.maximum(ops.sum(t), 1.0)
        az = ops.sum(t * ops.square(y_pred[..., AZIMUTH] - y_true[..., AZIMUTH]), axis=-1)
        dist = ops.sum(t * ops.square(y_pred[..., DISTANCE] - y_true[..., DISTANCE]), axis=-1)
        batch = ops.cast(ops.shape(t)[0], y_pred.dtype)
        # per-sample fine terms scaled so that their batch mean is the mean over active regions
        fine = (weights.azimuth * az + weights.distance * dist) * batch / n_active
        return weights.activity * bce + fine

    return loss


def frame_ratio(src: ModelConfig, dst: ModelConfig) -> int:
    """How many times longer ``dst``'s first-convolution frames are than ``src``'s, when the two
    networks differ only there (and in window length); raises ``ValueError`` otherwise."""
    same = {f.name for f in dataclasses.fields(ModelConfig)} - {"window_samples", "first_kernel", "first_stride",
                                                                "head_frames"}
    diff = sorted(k for k in same if getattr(src, k) != getattr(dst, k))
    if diff:
        raise ValueError(f"the networks differ in {', '.join(diff)}, not only in the first convolution")
    r, rest = divmod(dst.first_kernel, src.first_kernel)
    if rest or r < 1 or first_stride(dst) != r * first_stride(src):
        raise ValueError(f"first convolution kernel/stride {dst.first_kernel}/{first_stride(dst)} is not an integer "
                         f"multiple of {src.first_kernel}/{first_stride(src)}")
    return r


def transfer_weights(src: keras.Model, src_cfg: ModelConfig, dst: keras.Model, dst_cfg: ModelConfig) -> int:
    """Copy a trained network into one whose first convolution takes ``r`` times longer frames
    (e.g. kernel 3 stride 3 at 0.5 s -> kernel 6 stride 6 at 1 s, the same MACs per window),
    and/or whose dense layer sees more of the last block's frames (``head_frames``).

    Each tap of the source kernel becomes ``r`` equal taps of weight 1/r, so the new first layer
    sees the mean of ``r`` neighbouring samples where the old one saw one: the trained network
    runs on the audio at 1/r of the rate, over r times the time, and every later layer keeps its
    weights. Fine-tuning then learns the full-rate taps. The dense layer's new inputs (the frames
    side by side) start with zero weights, so the new network starts as the trained one. Returns ``r``."""
    import numpy as np

    r = frame_ratio(src_cfg, dst_cfg)
    if dst_cfg.head_frames < src_cfg.head_frames:
        raise ValueError(f"head_frames {dst_cfg.head_frames} < the trained network's {src_cfg.head_frames}")
    for layer in src.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name == "conv0":
            weights = [np.repeat(weights[0], r, axis=0) / r] + weights[1:]
        target = dst.get_layer(layer.name)
        if layer.name == "dense":
            kernel = np.zeros(target.get_weights()[0].shape, weights[0].dtype)
            kernel[:len(weights[0])] = weights[0]
            weights = [kernel] + weights[1:]
        target.set_weights(weights)
    return r
