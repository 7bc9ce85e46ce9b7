"""The per-board table of the README: one row per packaged model, from its held-out evaluation.

    python -m benchmarks.boards_table [--models models] [--package edge_msl/models]

Reads ``models/<array>/eval/results.json`` (written by ``python -m train_tf.evaluate``) and the
packaged ``edge_msl/models/<array>.tflite`` + ``.json``; prints two markdown tables: the summary
(channels, size, MACs, decode, DOA error and F1 against the best baseline given the true count)
and F1 per number of sources. Reads files only; runs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_msl.arrays import get_array

ORDER = ["uca8-r10", "respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "matrix-creator",
         "minidsp-uma8"]


def _decode(res: dict, side: dict) -> str:
    """The decode the test used: threshold (pooled: latest-window / mean bars and the pooled
    audio) and the fine-azimuth stretch, when there is one."""
    how = res.get("analysis", {})
    if how.get("pooled_windows", 1) > 1:
        text = f"{res['threshold']:g} or mean {res['pool_threshold']:g}, {how['window_s']:g} s pooled"
        if res.get("symmetry") == "cycle":
            text += " over symmetric images"
    else:
        text = f"{side['decode']['threshold']:g}"
    stretch = side["regions"].get("fine_stretch", 1.0)
    text += f", ×{stretch:g}" if stretch != 1.0 else ""
    return text + (", mics equalized" if "equalize=1" in str(side.get("input_scaling", "")) else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--package", default="edge_msl/models")
    args = parser.parse_args(argv)
    rows, per_count = [], []
    for name in ORDER:
        res_path = Path(args.models) / name / "eval" / "results.json"
        tfl = Path(args.package) / f"{name}.tflite"
        if not res_path.exists() or not tfl.exists():
            continue
        res = json.loads(res_path.read_text())
        side = json.loads(tfl.with_suffix(".json").read_text())
        arr = get_array(name)
        cells = res["cells"]
        model_all = cells["model"]["all"]
        base = {m: cells[m]["all"] for m in res["methods"] if m != "model"}
        best = max(base, key=lambda m: base[m]["f1"]) if base else None
        rows.append(
            f"| `{name}` | {arr.n_mics} of {arr.n_channels} ({', '.join(str(c) for c in arr.channel_map)}) | "
            f"{arr.aperture_m() * 100:.1f} cm | {tfl.stat().st_size / 1e6:.2f} MB | {res['model_macs'] / 1e6:.1f} M | "
            f"{res['n_regions']} / {_decode(res, side)} | {res['n_windows']} | "
            f"{model_all['err_mean']:.1f} / {model_all['err_median']:.1f} | {model_all['f1']:.3f} | "
            + (f"{best} {base[best]['f1']:.3f} / {base[best]['err_mean']:.1f}° |" if best else "– |"))
        per_count.append(f"| `{name}` | " + " | ".join(
            f"{cells['model'][f'{k} src, all']['f1']:.3f} / {cells[best][f'{k} src, all']['f1']:.3f}"
            if best else f"{cells['model'][f'{k} src, all']['f1']:.3f}" for k in range(1, 5)) + " |")
    print("| array | mics used of channels (channel map) | aperture | int8 model | MACs | regions / decode | "
          "test windows | DOA err mean / median (°) | F1@20° | best baseline (told the count): F1 / DOA err |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(rows))
    print()
    print("F1@20° per number of sources, model / best baseline given the true count:")
    print()
    print("| array | 1 source | 2 sources | 3 sources | 4 sources |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(per_count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
