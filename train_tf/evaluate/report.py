"""Tables and plots of a results dict (table.md, eval.png). It must not compute a score."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from train_tf.evaluate.scoring import MODEL

def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _pooling_note(results: dict[str, Any]) -> str:
    a = results.get("analysis")
    if not a or a["pooled_windows"] <= 1:
        return ""
    return (f" ({a['window_s']:g} s each; the model's {a['model_window_s']:g} s windows every {a['hop_s']:g} s, "
            f"{a['pooled_windows']} per window, run through the device's temporal decode as a stream; the talkers it "
            f"lists after the last one are the window's detections; "
            + ("each sub-window on the next of the array's symmetric images (decode.symmetry cycle); "
               if results.get("symmetry") == "cycle" else "")
            + f"the baselines see the whole {a['window_s']:g} s)")


def tables(results: dict[str, Any]) -> str:
    """Markdown tables of a results dict."""
    methods = results["methods"]
    lines = [f"Model `{results['model']}` ({results['model_macs'] / 1e6:.1f} M MACs, {results['n_regions']} regions, "
             f"threshold {results['threshold']}, duplicates within {results['min_separation_deg']:g}° suppressed"
             + (f", fine azimuth stretched ×{results['fine_stretch']:g}" if results.get("fine_stretch", 1.0) != 1.0
                else "")
             + (", azimuths refined by a local SRP-PHAT search (±{half_deg:g}°, weight {weight:g}, up to "
                "{fmax_hz:g} Hz)".format(**results["srp_refine"]) if results.get("srp_refine") else "") + "), "
             f"{results['n_windows']} windows of `{results['data']}`{_pooling_note(results)}. "
             f"Hit: one-to-one match within {results['match_deg']}° (edge_msl.truth.match). Baselines are given the true number of sources.",
             "", "**Model** (not told the number of sources)", "",
             "| windows | n | DOA err mean / median (°) | recall | precision | F1 | dist err (m) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, s in results["cells"][MODEL].items():
        lines.append(f"| {label} | {s['windows']} | {_fmt(s['err_mean'], '.2f')} / {_fmt(s['err_median'], '.2f')} | "
                     f"{_fmt(s['recall'], '.3f')} | {_fmt(s['precision'], '.3f')} | {_fmt(s['f1'], '.3f')} | "
                     f"{_fmt(s['dist_err_mean'], '.2f')} |")
    lines += ["", "**F1@{:g}° / mean DOA error of hits (°)**, model vs baselines given the true count".format(
        results["match_deg"]), "", "| windows | " + " | ".join(methods) + " |",
        "| --- | " + " | ".join("---:" for _ in methods) + " |"]
    for label in results["cells"][MODEL]:
        row = [f"{_fmt(results['cells'][m][label]['f1'], '.3f')} / {_fmt(results['cells'][m][label]['err_mean'], '.1f')}"
               for m in methods]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += ["", "**Recall per true distance** (all windows)", "",
              "| method | " + " | ".join(results["recall_by_distance"][MODEL]) + " |",
              "| --- | " + " | ".join("---:" for _ in results["recall_by_distance"][MODEL]) + " |"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_fmt(v, ".3f") for v in results["recall_by_distance"][m].values()) + " |")
    if "recall_by_level" in results:
        lv = results["recall_by_level"][MODEL]
        lines += ["", "**Recall per direct-path level relative to the loudest source** (all windows)", "",
                  "| method | " + " | ".join(lv) + " |", "| --- | " + " | ".join("---:" for _ in lv) + " |"]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_fmt(v, ".3f") for v in results["recall_by_level"][m].values()) + " |")
    if results.get("cells_audible"):
        aud = results["cells_audible"]
        lines += ["", f"**F1@{results['match_deg']:g}° counting the talkers within {-results['audible_db']:g} dB of the "
                  "window's loudest** (supplementary: quieter talkers are neither hits nor misses, a detection of one "
                  "is not a false alarm; the table above counts every talker)", "",
                  "| windows | quiet talkers not counted | " + " | ".join(methods) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in methods) + " |"]
        for label, s in aud[MODEL].items():
            lines.append(f"| {label} | {s['quiet']} / {s['quiet'] + s['sources']} | "
                         + " | ".join(_fmt(aud[m][label]["f1"], ".3f") for m in methods) + " |")
    if results.get("error_by_border", {}).get(MODEL):
        bd = results["error_by_border"][MODEL]
        lines += ["", "**Mean DOA error of hits (°) per angle from the true azimuth to the model's nearest sector "
                  "border** (all windows; the baselines have no sectors: their columns are the control)", "",
                  "| method | " + " | ".join(bd) + " |", "| --- | " + " | ".join("---:" for _ in bd) + " |"]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_fmt(v, ".2f") for v in results["error_by_border"][m].values())
                         + " |")
    kinds = results.get("by_kind", {}).get(MODEL, {})
    if len(kinds) > 1:  # a table only where the sources play different kinds of signal
        lines += ["", "**Recall / mean DOA error of hits (°) per kind of source signal** (all windows)", "",
                  "| method | " + " | ".join(f"{k} ({v['sources']})" for k, v in kinds.items()) + " |",
                  "| --- | " + " | ".join("---:" for _ in kinds) + " |"]
        for m in methods:
            row = results["by_kind"][m]
            lines.append(f"| {m} | " + " | ".join(f"{_fmt(row[k]['recall'], '.3f')} / {_fmt(row[k]['err_mean'], '.2f')}"
                                                for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], per_window: dict[str, list[dict[str, Any]]], png: Path) -> None:
    """Error CDF per method (all Hungarian pairs) and F1 per number of sources."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in results["methods"]:
        err = np.sort(np.concatenate([r["all_err"] for r in per_window[m]]))
        if len(err):
            a.plot(err, np.arange(1, len(err) + 1) / len(err), label=m, lw=2 if m == MODEL else 1.2)
    a.axvline(results["match_deg"], color="grey", ls=":", lw=1)
    a.set_xscale("symlog", linthresh=1.0)
    a.set_xlim(0, 180)
    a.set_xlabel("azimuth error of Hungarian-matched pairs (deg)")
    a.set_ylabel("fraction of pairs")
    a.set_title("error CDF")
    a.grid(alpha=0.3)
    a.legend()
    ks = sorted({int(lbl.split()[0]) for lbl in results["cells"][MODEL] if lbl.endswith(", all")} - {0})
    width = 0.8 / len(results["methods"])
    for j, m in enumerate(results["methods"]):
        f1 = [results["cells"][m][f"{k} src, all"]["f1"] for k in ks]
        b.bar(np.array(ks) + (j - (len(results["methods"]) - 1) / 2) * width, f1, width, label=m)
    b.set_xticks(ks)
    b.set_xlabel("number of sources")
    b.set_ylabel(f"F1 @ {results['match_deg']:g} deg")
    b.set_ylim(0, 1)
    b.set_title("F1 per number of sources (baselines know the count)")
    b.grid(alpha=0.3, axis="y")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
