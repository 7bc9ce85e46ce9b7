"""Does the microphones' phase find the talkers the network misses? A decode with SRP-PHAT evidence.

The learned decode (``experiments/learned_decode.py``) showed that the network's own outputs hold
no more detections than the pooled rule finds. This benchmark adds evidence the network does not
output: the SRP-PHAT map of the pooled second of audio (the cross-spectra the daemon already
keeps for ``decode.srp_refine``) and, per 32 ms frame, which sector the strongest and the second
strongest steered response fall in - speech is sparse in time, so a quiet talker owns some frames
even when a louder one owns the second. A small classifier per region, on the network's features
alone and on network + SRP features, is trained on one simulated set and scored on another at
several thresholds with the shipped suppression and matching (``train_tf.evaluate``).

    .venv/bin/python -m experiments.hybrid_decode --model models/uca8-r10 \\
        --train data/dec-train-1s --val data/val2-speech-1s --cache out/hybrid --png out/hybrid_decode.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


FRAME = 512
"""Samples per STFT frame (32 ms at 16 kHz)."""
UPSAMPLE = 4
"""GCC lag upsampling for the frame maps."""
GRID_DEG = 2.0
"""Largest azimuth step of the SRP maps (made to divide a sector evenly)."""
FMIN_HZ, FMAX_HZ = 300.0, 8000.0
SECOND_PEAK_DEG = 20.0
"""The second strongest response of a frame is sought this far from its strongest."""


class SrpMaps:
    """Full-circle SRP-PHAT maps of one array: of a whole window and of each of its frames."""

    def __init__(self, positions_m: np.ndarray, fs: int, step_deg: float = GRID_DEG):
        from edge_msl.srp import pair_lags

        xy = np.asarray(positions_m, dtype=np.float64)[:, :2]
        self.i, self.j = np.triu_indices(len(xy), k=1)
        f = np.fft.rfftfreq(FRAME, 1.0 / fs)
        self.band = (f >= FMIN_HZ) & (f <= FMAX_HZ)
        self.hann = np.hanning(FRAME).astype(np.float32)
        self.az = np.arange(int(round(360.0 / step_deg))) * step_deg
        self.lo, self.hi, frac = pair_lags(xy[self.i] - xy[self.j], self.az, float(fs) * UPSAMPLE, FRAME * UPSAMPLE)
        self.frac = frac.astype(np.float32)
        self.rows = np.arange(len(self.i))[:, None]

    def maps(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n_samples, n_mics) float audio -> (whole-window map (A,), frame maps (T, A)), each the
        sum over mic pairs of GCC-PHAT at the pair's delay for each azimuth."""
        frames = sliding_window_view(x.T, FRAME, axis=1)[:, ::FRAME // 2] * self.hann
        spec = np.fft.rfft(frames, axis=-1)
        spec[..., ~self.band] = 0
        spec /= np.abs(spec) + 1e-12
        spec = spec.astype(np.complex64)
        cross = spec[self.i] * np.conj(spec[self.j])                     # (P, T, F)
        gcc = np.fft.irfft(cross, n=FRAME * UPSAMPLE, axis=-1)           # (P, T, L)
        g = gcc.transpose(1, 0, 2)                                       # (T, P, L)
        vals = g[:, self.rows, self.lo] * (1 - self.frac) + g[:, self.rows, self.hi] * self.frac
        frame_maps = vals.sum(axis=1)                                    # (T, A)
        return frame_maps.mean(axis=0), frame_maps


class NormMusic:
    """Count-free broadband NormMUSIC map: the noise subspace is taken as the ``n_noise`` weakest
    eigenvectors of each bin's spatial covariance (at most ``n_mics - n_noise`` talkers), each
    bin's pseudo-spectrum is scaled to a peak of 1, and the bins are averaged."""

    def __init__(self, positions_m: np.ndarray, fs: int, az_deg: np.ndarray, n_noise: int = 4):
        from edge_msl.arrays import SPEED_OF_SOUND_M_S

        xy = np.asarray(positions_m, dtype=np.float64)[:, :2]
        f = np.fft.rfftfreq(FRAME, 1.0 / fs)
        self.band = np.flatnonzero((f >= FMIN_HZ) & (f <= 4000.0))
        th = np.radians(az_deg)
        delay = -(xy @ np.stack([np.cos(th), np.sin(th)])) / SPEED_OF_SOUND_M_S   # (M, A) s
        self.steer = np.exp(-2j * np.pi * f[self.band][:, None, None] * delay[None])  # (F, M, A)
        self.hann = np.hanning(FRAME)
        self.n_noise = n_noise

    def map(self, x: np.ndarray) -> np.ndarray:
        frames = sliding_window_view(x.T, FRAME, axis=1)[:, ::FRAME // 2] * self.hann
        spec = np.fft.rfft(frames, axis=-1)[:, :, self.band]             # (M, T, F)
        cov = np.einsum("mtf,ntf->fmn", spec, np.conj(spec)) / spec.shape[1]
        _, vec = np.linalg.eigh(cov)                                     # ascending eigenvalues
        en = vec[:, :, :self.n_noise]                                    # (F, M, n)
        proj = np.einsum("fmn,fma->fna", np.conj(en), self.steer)
        p = 1.0 / (np.sum(np.abs(proj) ** 2, axis=1) + 1e-12)            # (F, A)
        return (p / p.max(axis=1, keepdims=True)).mean(axis=0)


def _map_features(m: np.ndarray, n_regions: int, per_region: int) -> list[np.ndarray]:
    g_max, g_mean, g_std = m.max(), m.mean(), m.std() + 1e-9
    sec = m.reshape(n_regions, per_region)
    peak = (m > np.roll(m, 1)) & (m >= np.roll(m, -1))
    peak_val = np.where(peak, m, -np.inf).reshape(n_regions, per_region).max(1)
    has_peak = np.isfinite(peak_val)
    # rank of the region's peak among the map's peaks (0 = strongest), capped
    vals = np.sort(m[peak])[::-1]
    rank = np.array([np.searchsorted(-vals, -v) if h else len(vals) for v, h in zip(peak_val, has_peak)])
    return [sec.max(1) / g_max, (sec.max(1) - g_mean) / g_std, has_peak.astype(np.float32),
            np.where(has_peak, peak_val / g_max, 0.0), np.minimum(rank, 6) / 6.0]


def spatial_features(audio: np.ndarray, positions_m: np.ndarray, fs: int, n_regions: int) -> np.ndarray:
    """(N, n_samples, n_mics) int16 windows -> (N, n_regions, F) SRP features of each region."""
    per_region = int(np.ceil(360.0 / n_regions / GRID_DEG))
    srp = SrpMaps(positions_m, fs, 360.0 / n_regions / per_region)
    a = len(srp.az)
    region = (np.arange(a) // per_region).astype(np.int64)
    music = NormMusic(positions_m, fs, srp.az)
    out = []
    for x in audio:
        xf = x.astype(np.float32) / 32768.0
        whole, frames = srp.maps(xf)
        t = len(frames)
        feats = _map_features(whole, n_regions, per_region) + _map_features(music.map(xf), n_regions, per_region)
        # frame votes: where each frame's strongest and second strongest responses lie
        best = frames.argmax(1)
        strength = frames.max(1)
        w = strength / (strength.sum() + 1e-9)
        far = np.abs(((srp.az[None, :] - srp.az[best][:, None]) + 180.0) % 360.0 - 180.0) >= SECOND_PEAK_DEG
        second = np.where(far, frames, -np.inf).argmax(1)
        v1 = np.bincount(region[best], minlength=n_regions) / t
        v1w = np.bincount(region[best], weights=w, minlength=n_regions)
        v2 = np.bincount(region[second], minlength=n_regions) / t
        fsec = frames.reshape(t, n_regions, per_region).max(2) / (strength[:, None] + 1e-9)
        feats += [v1, v1w, v2, fsec.mean(0), np.quantile(fsec, 0.9, axis=0)]
        f = np.stack(feats, axis=-1)
        nb = [np.maximum(np.roll(f, d, 0), np.roll(f, -d, 0)) for d in (1, 2)]
        out.append(np.concatenate([f] + nb, axis=-1))
    return np.asarray(out, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from experiments.decode01 import pool_gain, pool_gate, pooled, pooled_thresholds
    from experiments.learned_decode import fit_predict, plot_curves, region_features, region_targets, scorer
    from train_tf.model_dir import PARAMS
    from train_tf.evaluate import window_outputs
    from train_tf.simulate import load_windows

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/uca8-r10")
    ap.add_argument("--weights", default="model.weights.h5")
    ap.add_argument("--train", required=True, help="simulated 1 s window set to train the decode on")
    ap.add_argument("--val", required=True, help="simulated 1 s window set to score it on (not the test set)")
    ap.add_argument("--cache", default=None, help="keep network outputs and SRP features here")
    ap.add_argument("--thresholds", default="0.3,0.4,0.5,0.6")
    ap.add_argument("--hidden", default="64,32", help="comma list of hidden layer widths")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--png", default=None)
    args = ap.parse_args(argv)

    def load(path: str):
        data = load_windows(path)
        key = Path(args.cache) / (Path(path).name + ".npz") if args.cache else None
        if key is not None and key.exists():
            z = np.load(key)
            per, spat = z["per"], z["spat"]
            params = json.loads((Path(args.model) / PARAMS).read_text())
        else:
            per, params = window_outputs(args.model, data["audio"], args.weights)
            spat = spatial_features(data["audio"], np.asarray(params["array"]["positions_m"]),
                                    int(params["sample_rate_hz"]), int(params["regions"]["n_regions"]))
            if key is not None:
                key.parent.mkdir(parents=True, exist_ok=True)
                np.savez(key, per=per, spat=spat)
        return per, spat, region_targets(data, params), data, params

    per_t, spat_t, y_t, _, _ = load(args.train)
    per_v, spat_v, _, val, params = load(args.val)
    shipped = pooled(per_v, pool_gain(params), pool_gate(params))
    score = scorer(params, val)

    net_t, net_v = region_features(per_t), region_features(per_v)
    decodes = {"shipped rule": (shipped, None)}
    for name, xt, xv in (("learned, network", net_t, net_v),
                         ("learned, network + SRP/MUSIC", np.concatenate([net_t, spat_t], -1),
                          np.concatenate([net_v, spat_v], -1)),
                         ("learned, SRP/MUSIC only", spat_t, spat_v)):
        out = shipped.copy()
        out[..., 0] = fit_predict(xt, y_t, xv, args.hidden, args.epochs, 2e-3)
        decodes[name] = (out, xt.shape[-1])

    print(f"{args.model}: decodes trained on {args.train} ({len(per_t)} windows), scored on {args.val} "
          f"({len(per_v)} windows)\n")
    print("| decode | features | threshold | recall | precision | F1 | F1 1 / 2 / 3 / 4 src |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    onset, _ = pooled_thresholds(params.get("decode", {}))
    curves: dict[str, list[tuple[float, float]]] = {}
    for name, (outputs, nf) in decodes.items():
        ts = [float(onset)] if nf is None else [float(t) for t in args.thresholds.split(",")]
        for t in ts:
            s, per_k = score(outputs, t)
            curves.setdefault(name, []).append((s["recall"], s["precision"]))
            print(f"| {name} | {nf or '-'} | {t:g} | {s['recall']:.3f} | {s['precision']:.3f} | {s['f1']:.4f} | "
                  + " / ".join(f"{f:.3f}" for f in per_k) + " |", flush=True)
    if args.png:
        plot_curves(curves, args.png, figsize=(5.5, 4), legend_fontsize=8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
