"""Real-recording check: two-source mixtures built from the AV16.3 recording in ../shared/data.

The recording has one talker walking around two 8-mic circular arrays (r = 10 cm) and no
ground-truth file. Directions are self-labelled on single-talker windows with SRP-PHAT
(pyroomacoustics, one source), kept only where the talker is clearly active, the SRP peak is
sharp and the direction agrees with both neighbouring windows. Because sound adds linearly,
two such windows from different times and directions (>= ``min_sep_deg`` apart), summed, are a
real two-source mixture with known directions. The first ``calib_fraction`` of the recording is
left alone (reserved for on-device calibration); mixtures come from the rest.

The model is scored as in ``train_tf.evaluate`` (Hungarian matching, hit within 20 deg) on the
single windows and on the mixtures, over a sweep of activity thresholds; the baselines are
given the true count. The data is read from disk and never copied into the project.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

from edge_msl.regions import angular_distance_deg
from train_tf.model_dir import default_weights
from train_tf.evaluate import (BASELINES, baseline_estimates, decode_all, score, score_detections, srp_refine_all,
                               summarize, temporal_decode_all, window_outputs)

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "av16.3-seq11-1p-0100"
AV16_TO_UCA8 = (5, 6, 7, 8, 1, 2, 3, 4)
"""AV16.3 mic numbers in the channel order of the ``uca8-r10`` array (mic k of AV16.3 sits at
180 + 45 (k - 1) deg; ``uca8-r10`` channel i at 45 i deg)."""


def load_array(directory: str | Path, array: str = "array1") -> np.ndarray:
    """(samples, 8) int16 of one AV16.3 array, channels in ``uca8-r10`` order."""
    directory = Path(directory) / array
    chans = []
    for k in AV16_TO_UCA8:
        files = sorted(directory.glob(f"*_mic{k}.wav"))
        if not files:
            raise FileNotFoundError(f"no *_mic{k}.wav in {directory}")
        with wave.open(str(files[0])) as w:
            if w.getframerate() != 16000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"{files[0]}: expected 16 kHz 16-bit mono")
            chans.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
    n = min(len(c) for c in chans)
    return np.stack([c[:n] for c in chans], axis=1)


def srp_single(window: np.ndarray, fs: int = 16000, nfft: int = 512) -> tuple[float, float]:
    """(azimuth deg, peak sharpness) of one source by SRP-PHAT over a 1-degree grid."""
    import pyroomacoustics as pra

    from edge_msl.arrays import SPEED_OF_SOUND_M_S, get_array

    mic_xy = get_array("uca8-r10").positions()[:, :2].T
    spec = pra.transform.stft.analysis(window.astype(np.float64) / 32768.0, nfft, nfft // 2).transpose(2, 1, 0)
    doa = pra.doa.algorithms["SRP"](mic_xy, fs, nfft, c=SPEED_OF_SOUND_M_S, num_src=1,
                                    azimuth=np.radians(np.arange(360.0)))
    doa.locate_sources(spec, num_src=1, freq_range=[300.0, 3500.0])
    values = np.asarray(doa.grid.values, dtype=np.float64)
    sharp = float((values.max() - np.median(values)) / (values.std() + 1e-12))
    return float(np.degrees(doa.azimuth_recon[0]) % 360.0), sharp


def window_levels_db(audio: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts of the windows of ``window`` samples every ``hop`` and their mean power (dB)."""
    starts = np.arange(0, len(audio) - window + 1, hop)
    level = np.array([10 * np.log10(np.mean(audio[s:s + window].astype(np.float64) ** 2) + 1e-9) for s in starts])
    return starts, level


def self_label(audio: np.ndarray, window: int, hop: int, min_level_db: float = 12.0,
               max_jump_deg: float = 8.0, sharp_quantile: float = 0.3) -> dict[str, np.ndarray]:
    """Windows where one talker is clearly active, with their SRP-PHAT directions."""
    starts, level = window_levels_db(audio, window, hop)
    floor = np.percentile(level, 10)
    az = np.zeros(len(starts))
    sharp = np.zeros(len(starts))
    for i, s in enumerate(starts):
        az[i], sharp[i] = srp_single(audio[s:s + window])
    loud = level >= floor + min_level_db
    sharp_ok = sharp >= np.quantile(sharp[loud], sharp_quantile) if loud.any() else np.zeros(len(starts), bool)
    steady = np.zeros(len(starts), dtype=bool)
    steady[1:-1] = (angular_distance_deg(az[1:-1], az[:-2]) <= max_jump_deg) & \
                   (angular_distance_deg(az[1:-1], az[2:]) <= max_jump_deg)
    ok = loud & sharp_ok & steady
    return {"start": starts[ok], "azimuth_deg": az[ok], "level_db": level[ok], "all_start": starts,
            "all_azimuth_deg": az, "ok": ok}


def build_mixtures(audio: np.ndarray, labels: dict[str, np.ndarray], window: int, n: int, min_sep_deg: float,
                   min_gap_s: float, first_sample: int, seed: int, fs: int = 16000) -> dict[str, np.ndarray]:
    """Sums of two labelled windows (both starting at or after ``first_sample``)."""
    rng = np.random.default_rng(seed)
    keep = labels["start"] >= first_sample
    starts, az = labels["start"][keep], labels["azimuth_deg"][keep]
    mixes, truth, used = [], [], set()
    for _ in range(n * 50):
        if len(mixes) == n or len(starts) < 2:
            break
        i, j = rng.choice(len(starts), size=2, replace=False)
        if (min(i, j), max(i, j)) in used:
            continue
        if angular_distance_deg(az[i], az[j]) < min_sep_deg or abs(int(starts[i]) - int(starts[j])) < min_gap_s * fs:
            continue
        used.add((min(i, j), max(i, j)))
        a = audio[starts[i]:starts[i] + window].astype(np.float64)
        b = audio[starts[j]:starts[j] + window].astype(np.float64)
        mixes.append(np.clip(np.round(a + b), -32768, 32767).astype(np.int16))
        truth.append([az[i], az[j]])
    singles = np.stack([audio[s:s + window] for s in starts]) if len(starts) else np.zeros((0, window, 8), np.int16)
    return {"mix_audio": np.stack(mixes), "mix_az": np.array(truth), "single_audio": singles,
            "single_az": az[:, None]}


def run(model_dir: str | Path, data_dir: str | Path, out_dir: str | Path, weights: str, n_mix: int = 300,
        calib_fraction: float = 0.4, min_sep_deg: float = 30.0, workers: int = 1, seed: int = 0,
        thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
        window_s: float | None = None, array: str = "array1") -> dict[str, Any]:
    """Self-label, build mixtures, score the model (threshold sweep) and the baselines.

    ``array`` picks one of the recording's two arrays: ``array1`` (the reference check; its first
    ``calib_fraction`` is the calibration benchmark's) or ``array2`` (0.8 m away, so other
    directions and other reflections of the same talker: a second, independent check).

    ``window_s`` (default 1 s) is the length of the labelled windows and mixtures; longer than the
    model's window, the shipped decode is the device's temporal decode run over its sub-windows
    (:func:`train_tf.evaluate.temporal_decode_all`); the threshold sweep decodes the last one alone."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    audio = load_array(data_dir, array)
    params = json.loads((Path(model_dir) / "params.json").read_text())
    fs = 16000
    model_window = int(params["model"]["window_samples"])
    if window_s is None:
        window_s = 1.0
    window, hop = max(model_window, int(round(window_s * fs))), 4000
    labels = self_label(audio, window, hop)
    first = int(calib_fraction * len(audio))
    sets = build_mixtures(audio, labels, window, n_mix, min_sep_deg, 2.0, first, seed)
    results: dict[str, Any] = {
        "data": str(data_dir), "array": array, "model": str(model_dir), "window_s": window / fs,
        "windows_labelled": int(labels["ok"].sum()),
        "windows_total": int(len(labels["ok"])), "calib_fraction": calib_fraction,
        "n_single": int(len(sets["single_audio"])), "n_mix": int(len(sets["mix_audio"])), "min_sep_deg": min_sep_deg,
        "sweep": {}, "baselines": {}}
    for name in ("single", "mix"):
        x, az = sets[f"{name}_audio"], sets[f"{name}_az"]
        no_dist = np.zeros(az.shape)  # the recording gives no distances; distance errors are not reported
        per, params = window_outputs(model_dir, x, weights)
        rows = []
        for t in thresholds:
            dets, _, sep = decode_all(per[:, -1], params, t)
            s = summarize(score_detections(dets, az, no_dist, 20.0))
            rows.append({"threshold": t, **{k: s[k] for k in ("recall", "precision", "f1", "err_mean")}})
        if window > model_window:
            dets, t_ship, sep = temporal_decode_all(per, x, params)
        else:
            dets, t_ship, sep = decode_all(per[:, -1], params)
            dets = srp_refine_all(dets, x, params)
        shipped = summarize(score_detections(dets, az, no_dist, 20.0))
        results["sweep"][name] = rows
        results[f"shipped_{name}"] = {"threshold": t_ship, "min_separation_deg": sep,
                                      **{k: shipped[k] for k in ("recall", "precision", "f1", "err_mean")}}
        if name == "mix":
            est = baseline_estimates(x, np.full(len(x), 2), "uca8-r10", fs, BASELINES, workers)
            for m in BASELINES:
                s = summarize(score(est[m], None, az, no_dist, 20.0))
                results["baselines"][m] = {k: s[k] for k in ("recall", "precision", "f1", "err_mean")}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table(results))
    _plot(results, out / "real.png")
    return results


def table(r: dict[str, Any]) -> str:
    """Markdown summary of ``run``'s results."""
    lines = [f"AV16.3 seq11-1p-0100 {r.get('array', 'array1')}: {r['windows_labelled']} of {r['windows_total']} windows "
             f"({r.get('window_s', 0.5):g} s) self-labelled; "
             f"{r['n_single']} single-talker windows and {r['n_mix']} two-talker mixtures (>= {r['min_sep_deg']:g}° "
             f"apart) from the last {1 - r['calib_fraction']:.0%} of the recording. Hit: within 20°.", "",
             "| set | threshold | recall | precision | F1 | DOA err (°) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("single", "mix"):
        s = r[f"shipped_{name}"]
        lines.append(f"| {name} (shipped decode) | {s['threshold']:g} | {s['recall']:.3f} | {s['precision']:.3f} | "
                     f"{s['f1']:.3f} | {s['err_mean']:.2f} |")
        for row in r["sweep"][name]:
            lines.append(f"| {name} | {row['threshold']:g} | {row['recall']:.3f} | {row['precision']:.3f} | "
                         f"{row['f1']:.3f} | {row['err_mean']:.2f} |")
    lines += ["", "| baseline on mixtures (given 2 sources) | recall = precision | F1 | DOA err (°) |",
              "| --- | ---: | ---: | ---: |"]
    for m, s in r["baselines"].items():
        lines.append(f"| {m} | {s['recall']:.3f} | {s['f1']:.3f} | {s['err_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def _plot(r: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, style in (("single", "o-"), ("mix", "s-")):
        rows = r["sweep"][name]
        ax.plot([x["recall"] for x in rows], [x["precision"] for x in rows], style, label=f"model, {name}")
        for x in rows:
            ax.annotate(f"{x['threshold']:g}", (x["recall"], x["precision"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    for m, s in r["baselines"].items():
        ax.plot([s["recall"]], [s["precision"]], "x", label=f"{m} (mix, count given)")
    ax.axhline(0.9, color="grey", ls=":", lw=1)
    ax.axvline(0.95, color="grey", ls=":", lw=1)
    ax.set_xlabel("recall @ 20°")
    ax.set_ylabel("precision @ 20°")
    ax.set_title("AV16.3 real recording: threshold sweep")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train_tf.real_av16", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory (params.json + weights)")
    parser.add_argument("--weights", default=None, help="default: model.weights.h5 if present, else best.weights.h5")
    parser.add_argument("--data", default=str(DEFAULT_DIR), help=f"AV16.3 sequence directory (default {DEFAULT_DIR})")
    parser.add_argument("--out", required=True)
    parser.add_argument("--mixtures", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--window-s", type=float, default=None,
                        help="labelled window and mixture length (default 1 s: the temporal decode over its 0.5 s windows)")
    parser.add_argument("--array", choices=("array1", "array2"), default="array1",
                        help="which of the two arrays (default array1; array2 is a second, independent check)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        raise SystemExit(f"AV16.3 data not found at {args.data}; pass --data DIR (see ../shared/data/README)")
    weights = args.weights or default_weights(args.model)
    results = run(args.model, args.data, args.out, weights, args.mixtures, workers=args.workers,
                  window_s=args.window_s, array=args.array)
    print(table(results))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main())
