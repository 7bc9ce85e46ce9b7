"""Ground truth of a recording (who talks from where, when) and scores of located sources against it.

Used by ``edge-msl locate --truth``, the bundled example and ``benchmarks/locate_bench.py``.
Pure Python; reads JSON, never audio.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .regions import angular_distance_deg

TRUTH_FORMAT = "edge-msl-truth"
"""Value of a truth file's ``format`` key."""
HIT_DEG = 20.0
"""An output within this azimuth distance of a true source counts as that source (as in train_tf.evaluate)."""


class TruthError(ValueError):
    """A truth file is unreadable; one line naming the file, the problem and the fix."""


@dataclass(frozen=True)
class TrueSource:
    """One talker of a recording."""

    name: str
    """Label (e.g. ``talker 1``)."""
    azimuth_deg: float
    """Direction in the array frame, [0, 360)."""
    distance_m: float
    """Horizontal distance from the array centre."""
    active_s: tuple[tuple[float, float], ...]
    """Intervals (start, end) in seconds in which the source plays."""


def load_truth(path: str | os.PathLike[str]) -> tuple[list[TrueSource], dict[str, Any]]:
    """Read a truth JSON file: ``{"format": "edge-msl-truth", "sources": [{"azimuth_deg", "active_s"...}]}``."""
    fix = "give the truth JSON written next to the recording (edge_msl/examples/*.truth.json shows the format)"
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise TruthError(f"{path}: no such file; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruthError(f"{path}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(raw, dict) or raw.get("format") != TRUTH_FORMAT or not isinstance(raw.get("sources"), list):
        raise TruthError(f"{path}: not an {TRUTH_FORMAT} file (format key and sources list); {fix}")
    out = []
    for i, s in enumerate(raw["sources"]):
        try:
            intervals = tuple((float(a), float(b)) for a, b in s["active_s"])
            out.append(TrueSource(str(s.get("name", f"source {i + 1}")), float(s["azimuth_deg"]) % 360.0,
                                  float(s.get("distance_m", float("nan"))), intervals))
        except (KeyError, TypeError, ValueError) as exc:
            raise TruthError(f"{path}: source {i} needs azimuth_deg and active_s [[start, end], ...] ({exc}); "
                             f"{fix}") from None
    return out, raw


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def present(truth: Sequence[TrueSource], t_s: float, window_s: float) -> list[int]:
    """Sources that play during at least half of the window ending at ``t_s`` (what a window can show)."""
    return [i for i, s in enumerate(truth)
            if sum(_overlap(t_s - window_s, t_s, a, b) for a, b in s.active_s) >= 0.5 * window_s - 1e-9]


def nearby(truth: Sequence[TrueSource], t_s: float, window_s: float, hold_s: float) -> list[int]:
    """Sources that play at any time in [t_s - window_s - hold_s, t_s] (a held track may still show them)."""
    return [i for i, s in enumerate(truth)
            if any(_overlap(t_s - window_s - hold_s, t_s, a, b) > 0 for a, b in s.active_s)]


def match(azimuths_deg: Sequence[float], truth_az_deg: Sequence[float], max_deg: float = HIT_DEG) -> list[tuple[int, int, float]]:
    """Greedy nearest-first one-to-one pairs (output index, truth index, error) within ``max_deg``."""
    pairs = sorted((float(angular_distance_deg(a, t)), i, j)
                   for i, a in enumerate(azimuths_deg) for j, t in enumerate(truth_az_deg))
    used_i: set[int] = set()
    used_j: set[int] = set()
    out = []
    for d, i, j in pairs:
        if d > max_deg or i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        out.append((i, j, d))
    return out


def score(messages: Iterable[dict[str, Any]], truth: Sequence[TrueSource], window_s: float,
          hold_s: float = 1.0) -> dict[str, Any]:
    """DOA error, recall, precision, pick-up latency and id switches of located sources.

    * recall: of (window, source) pairs where the source plays during half the window, the
      share matched by an output within 20 degrees; DOA error over those matches.
    * precision: outputs within 20 degrees of a source that played in the window or ``hold_s``
      before it, over all outputs.
    * a *turn* is one interval of one source; pick-up latency = t_s of the first window whose
      detected (``active``) output matches the source, minus the turn's start; id switches =
      changes of the matched id among the turn's detected outputs. Latency counts from the turn's start, or from the end of the first
      window for a turn that starts with the stream.
    """
    msgs = list(messages)
    errors: list[float] = []
    expected = hit = n_out = n_true_out = 0
    per_source_ids: list[list[tuple[float, int | None]]] = [[] for _ in truth]
    for m in msgs:
        t = float(m["t_s"])
        srcs = m["sources"]
        az = [s["azimuth_deg"] for s in srcs]
        pres = present(truth, t, window_s)
        expected += len(pres)
        for i, j, d in match(az, [truth[k].azimuth_deg for k in pres]):
            hit += 1
            errors.append(d)
        near = nearby(truth, t, window_s, hold_s)
        n_out += len(srcs)
        n_true_out += len(match(az, [truth[k].azimuth_deg for k in near]))
        # for turns: which detected output (and id) stands for each source at this instant; a track
        # held through silence (active false) says nothing about the turn that is starting
        live = [s for s in srcs if s.get("active", True)]
        for i, j, _ in match([s["azimuth_deg"] for s in live], [s.azimuth_deg for s in truth]):
            per_source_ids[j].append((t, live[i]["id"]))
    latencies: list[float] = []
    second_latencies: list[float] = []
    switches: list[int] = []
    missed = 0
    turns = [(k, a, b) for k, s in enumerate(truth) for a, b in s.active_s]
    for k, a, b in turns:
        seen = [(t, i) for t, i in per_source_ids[k] if a <= t <= b + 0.5 * window_s]
        others_talking = any(a > a2 + 0.3 and a < b2 for k2, a2, b2 in turns if k2 != k)
        if not seen:
            missed += 1
            continue
        # no window can end before window_s: a turn that starts with the stream is timed from there
        lat = seen[0][0] - max(a, window_s)
        latencies.append(lat)
        if others_talking:
            second_latencies.append(lat)
        ids = [i for _, i in seen]
        switches.append(sum(1 for p, q in zip(ids, ids[1:]) if p != q))
    errors.sort()

    def mean(v: Sequence[float]) -> float | None:
        return round(sum(v) / len(v), 3) if v else None

    return {
        "windows": len(msgs),
        "recall": round(hit / expected, 3) if expected else None,
        "precision": round(n_true_out / n_out, 3) if n_out else None,
        "doa_error_mean_deg": mean(errors),
        "doa_error_median_deg": round(errors[len(errors) // 2], 2) if errors else None,
        "turns": len(turns),
        "turns_missed": missed,
        "pickup_mean_s": mean(latencies),
        "pickup_max_s": round(max(latencies), 3) if latencies else None,
        "pickup_second_talker_mean_s": mean(second_latencies),
        "id_switches_per_turn": round(sum(switches) / len(turns), 3) if turns else None,
    }


def plot(messages: Sequence[dict[str, Any]], out_png: str | os.PathLike[str], truth: Sequence[TrueSource] = (),
         title: str = "") -> None:
    """Azimuth over time per track id (raw detections in grey without tracking), over the truth."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TruthError("--plot needs matplotlib; pip install matplotlib (or edge-msl[train])") from None
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, s in enumerate(truth):
        for n, (a, b) in enumerate(s.active_s):
            ax.plot([a, b], [s.azimuth_deg] * 2, color="0.75", lw=9, solid_capstyle="butt",
                    label="truth" if k == 0 and n == 0 else None, zorder=1)
            ax.text(a, s.azimuth_deg + 8, s.name, fontsize=8, color="0.35")
    by_id: dict[Any, list[tuple[float, float, bool]]] = {}
    for m in messages:
        for s in m["sources"]:
            by_id.setdefault(s["id"], []).append((m["t_s"], s["azimuth_deg"], bool(s.get("active", True))))
    cmap = plt.get_cmap("tab10")
    for n, (tid, pts) in enumerate(sorted(by_id.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))):
        color = "k" if tid is None else cmap(n % 10)
        label = "detections" if tid is None else f"id {tid}"
        on = [(t, a) for t, a, act in pts if act]
        held = [(t, a) for t, a, act in pts if not act]
        if on:
            ax.scatter(*zip(*on), s=10, color=color, label=label, zorder=2)
        if held:  # held through a dropout: hollow
            ax.scatter(*zip(*held), s=10, facecolors="none", edgecolors=color, linewidths=0.8, zorder=2,
                       label=None if on else label)
    ax.set_ylim(0, 360)
    ax.set_yticks(range(0, 361, 45))
    ax.set_xlabel("time (s, end of window)")
    ax.set_ylabel("azimuth (deg)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


__all__ = ["TRUTH_FORMAT", "HIT_DEG", "TruthError", "TrueSource", "load_truth", "present", "nearby", "match",
           "score", "plot"]
