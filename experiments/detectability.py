"""How many of a test set's sources does any method find? The ceiling behind the F1 targets.

    python -m experiments.detectability --data data/test-speech --model models/uca8-r10 \
        --model runs/gpu3/U4 --cache out/detectability/baselines.json --out out/detectability

For every true source of every window it records which methods hit it (Hungarian match within
20°): the model(s) at their shipped decode, not told the count, and the pyroomacoustics
baselines given the true count (SRP-PHAT, MUSIC, NormMUSIC, TOPS). It prints, per number of
sources, the share of sources in each direct-path-level band (relative to the window's loudest
source), the recall of each method, and the recall of the *union* of all methods: a source that
no method finds in its window. The F1 of a detector that finds exactly the union and makes no
false detection, ``2R / (1 + R)``, is an optimistic empirical ceiling for these windows: with
K estimates from each of five methods some hits are luck, so the table also gives the union of
the same estimates turned by 97° (the hits luck alone makes).
Writes ``detectability.md`` and ``detectability.png`` to ``--out``. The baselines take ~20 min
on two cores; ``--cache`` keeps their estimates for the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

TURN_DEG = 97.0
LEVELS = (("≥ -3 dB", -3.0, 0.1), ("-10…-3 dB", -10.0, -3.0), ("-20…-10 dB", -20.0, -10.0), ("< -20 dB", -99.0, -20.0))


def hit_mask(est: list[list[float]], true_az: np.ndarray, match_deg: float) -> list[np.ndarray]:
    """Per window, a boolean per true source: matched by an estimate within ``match_deg``
    (``train_tf.evaluate.score``'s Hungarian matching)."""
    from train_tf.evaluate import score

    rows = score(est, None, true_az, np.zeros_like(true_az), match_deg)
    out = []
    for row in rows:
        m = np.zeros(row["n_true"], dtype=bool)
        m[row["hit_true"]] = True
        out.append(m)
    return out


def table(hits: dict[str, list[np.ndarray]], chance: dict[str, list[np.ndarray]], levels: list[np.ndarray],
          n_src: np.ndarray) -> tuple[str, dict]:
    """Markdown rows per source count, and the numbers behind them (``chance``: the same methods'
    hits with every estimate turned by a fixed angle, i.e. hits by luck)."""
    names = list(hits)
    lines = ["| sources | n | " + " | ".join(f"share {lb}" for lb, _, _ in LEVELS) + " | "
             + " | ".join(f"recall {n}" for n in names) + " | recall, union | union by chance | F1 ceiling |",
             "| --- | ---: | " + " | ".join("---:" for _ in LEVELS) + " | " + " | ".join("---:" for _ in names)
             + " | ---: | ---: | ---: |"]
    numbers = {}
    for k in sorted(set(n_src.tolist()) - {0}):
        w = np.flatnonzero(n_src == k)
        lv = np.concatenate([levels[i] for i in w])
        per = {n: np.concatenate([hits[n][i] for i in w]) for n in names}
        union = np.any(np.stack(list(per.values())), axis=0)
        luck = np.any(np.stack([np.concatenate([chance[n][i] for i in w]) for n in names]), axis=0)
        share = [float(np.mean((lv >= lo) & (lv < hi))) for _, lo, hi in LEVELS]
        rec = {n: float(per[n].mean()) for n in names}
        ru = float(union.mean())
        ceiling = 2 * ru / (1 + ru)
        numbers[k] = {"sources": int(len(lv)), "share": share, "recall": rec, "union": ru, "f1_ceiling": ceiling,
                      "union_by_chance": float(luck.mean()),
                      "union_by_level": [float(union[(lv >= lo) & (lv < hi)].mean()) if np.any((lv >= lo) & (lv < hi))
                                         else float("nan") for _, lo, hi in LEVELS]}
        lines.append(f"| {k} | {len(lv)} | " + " | ".join(f"{s:.2f}" for s in share) + " | "
                     + " | ".join(f"{rec[n]:.3f}" for n in names) + f" | {ru:.3f} | {float(luck.mean()):.3f} | {ceiling:.3f} |")
    return "\n".join(lines), numbers


def plot(numbers: dict, png: Path) -> None:
    """Union recall per level band and source count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(len(LEVELS))
    width = 0.8 / max(1, len(numbers))
    for j, (k, v) in enumerate(sorted(numbers.items())):
        ax.bar(x + j * width, v["union_by_level"], width, label=f"{k} source{'s' if k > 1 else ''}")
    ax.set_xticks(x + width * (len(numbers) - 1) / 2, [lb for lb, _, _ in LEVELS])
    ax.set_xlabel("direct-path level relative to the loudest source")
    ax.set_ylabel("found by at least one method")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="window set from train_tf.simulate windows")
    parser.add_argument("--model", action="append", default=[], help="model directory (repeatable)")
    parser.add_argument("--cache", default=None, help="JSON file for the baselines' estimates (evaluate's "
                        "--baseline-cache format, so one file serves both)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--match-deg", type=float, default=20.0)
    parser.add_argument("--threshold", type=float, default=None, help="decode threshold (default: each model's own)")
    parser.add_argument("--min-separation-deg", type=float, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from experiments.decode01 import decode_all, model_outputs
    from train_tf.evaluate import BASELINES, baseline_estimates_cached, default_weights
    from train_tf.simulate import _read_meta, load_windows

    data_dir = Path(args.data)
    meta, data = _read_meta(data_dir), load_windows(data_dir)
    true_az, n_src = data["azimuth_deg"], data["n_sources"].astype(int)
    levels = [data["level_db"][i][np.isfinite(true_az[i])] for i in range(len(n_src))]
    est: dict[str, list[list[float]]] = {}
    for m in args.model:
        outputs, params = model_outputs(m, data["audio"], default_weights(m))
        dets, _, _ = decode_all(outputs, params, args.threshold, args.min_separation_deg)
        est[Path(m).name] = [[d.azimuth_deg for d in w] for w in dets]
    est.update(baseline_estimates_cached(data["audio"], n_src, meta["array"]["name"],
                                         meta["settings"]["sample_rate_hz"], BASELINES, args.workers,
                                         Path(args.cache) if args.cache else None))
    hits = {name: hit_mask(e, true_az, args.match_deg) for name, e in est.items()}
    # the same estimates turned by TURN_DEG: what the union finds by luck with this many guesses
    chance = {name: hit_mask([[(a + TURN_DEG) % 360.0 for a in w] for w in e], true_az, args.match_deg)
              for name, e in est.items()}
    text, numbers = table(hits, chance, levels, n_src)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = (f"{args.data}: {len(n_src)} windows. Hit: Hungarian match within {args.match_deg:g}°. Models at their "
            f"shipped decode (count not given); baselines given the true count. *Union*: found by at least one "
            f"method; *union by chance*: the same estimates turned by {TURN_DEG:g}° (hits by luck, since the "
            f"methods together make up to 5K guesses); *F1 ceiling* = 2R/(1+R) of a detector finding exactly "
            f"the union with no false detection (optimistic: luck included).")
    (out / "detectability.md").write_text(head + "\n\n" + text + "\n")
    (out / "detectability.json").write_text(json.dumps(numbers, indent=1))
    plot(numbers, out / "detectability.png")
    print(head + "\n\n" + text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.exit(main())
