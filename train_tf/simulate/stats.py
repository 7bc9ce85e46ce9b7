"""Label statistics of a window dataset (sources per window, azimuth, distance, RT60), as tables and a plot."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from train_tf.simulate.shards import load_windows


def label_stats(directory: str | Path, png: str | Path | None = None) -> dict[str, Any]:
    """Label statistics of a window dataset: sources per window, azimuth/distance histograms, RT60."""
    data = load_windows(directory)
    n = data["n_sources"].astype(int)
    az = data["azimuth_deg"][np.isfinite(data["azimuth_deg"])]
    dist = data["distance_m"][np.isfinite(data["distance_m"])]
    el = data["elevation_deg"][np.isfinite(data["elevation_deg"])]
    rt60 = data["rt60_s"]
    counts = {int(k): int(np.sum(n == k)) for k in range(0, int(n.max()) + 1)}
    az_hist, az_edges = np.histogram(az, bins=8, range=(0, 360))
    d_hist, d_edges = np.histogram(dist, bins=8, range=(0, 4))
    rt_hist, rt_edges = np.histogram(rt60, bins=[0, 1e-6, 0.3, 0.6, 10])
    stats = {
        "windows": int(len(n)),
        "sources_per_window": counts,
        "azimuth_hist": {f"{az_edges[i]:.0f}-{az_edges[i + 1]:.0f}": int(c) for i, c in enumerate(az_hist)},
        "distance_hist_m": {f"{d_edges[i]:.1f}-{d_edges[i + 1]:.1f}": int(c) for i, c in enumerate(d_hist)},
        "rt60_bands": dict(zip(["anechoic", "<0.3", "0.3-0.6", ">0.6"], map(int, rt_hist))),
        "elevation_deg": {"min": float(el.min()) if el.size else None, "max": float(el.max()) if el.size else None},
        "level_dbfs": {"min": float(data["level_dbfs"].min()), "max": float(data["level_dbfs"].max())},
        "clipped_fraction": float(np.mean(np.abs(data["audio"]).max(axis=(1, 2)) >= 32767)),
    }
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(2, 2, figsize=(10, 7))
        ax[0, 0].bar(list(counts), list(counts.values()))
        ax[0, 0].set(title="sources per window", xlabel="sources", ylabel="windows")
        ax[0, 1].hist(az, bins=36, range=(0, 360))
        ax[0, 1].set(title="source azimuth (array frame)", xlabel="azimuth (deg)")
        ax[1, 0].hist(dist, bins=40, range=(0, 4))
        ax[1, 0].set(title="source horizontal distance", xlabel="distance (m)")
        ax[1, 1].hist(rt60[rt60 > 0], bins=30, range=(0, 1.0))
        ax[1, 1].set(title=f"RT60 of reverberant rooms ({int(np.sum(rt60 == 0))} anechoic windows)",
                     xlabel="RT60 (s)")
        fig.suptitle(f"{directory}: {len(n)} windows")
        fig.tight_layout()
        fig.savefig(png, dpi=90)
        plt.close(fig)
    return stats


def print_stats(stats: dict[str, Any], stream=None) -> None:
    """Human-readable tables of :func:`label_stats` (stdout by default)."""
    stream = stream or sys.stdout
    print(f"windows: {stats['windows']}   clipped windows: {stats['clipped_fraction']:.3f}   "
          f"level {stats['level_dbfs']['min']:.1f}..{stats['level_dbfs']['max']:.1f} dBFS", file=stream)
    for title, key in (("sources per window", "sources_per_window"), ("azimuth (deg)", "azimuth_hist"),
                       ("horizontal distance (m)", "distance_hist_m"), ("RT60 band (s)", "rt60_bands")):
        print(f"\n{title}", file=stream)
        total = max(1, sum(stats[key].values()))
        for k, v in stats[key].items():
            print(f"  {str(k):>10s} {v:6d}  {'#' * int(round(40 * v / total))}", file=stream)
