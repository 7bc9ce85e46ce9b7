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


PRESENT_VOICED_S = 0.15
"""A talker must be reported in a window holding at least this much of their voice (a third of the
0.5 s window: what the network can see); with less but some, reporting them is neither a hit nor a
false alarm; with none, an output there is a false alarm (a ghost or a stopped talker lingering)."""
MOVING_DEG_S = 5.0
"""A talker whose azimuth changes faster than this counts as moving (error on moving talkers)."""
LINGER_QUIET_S = 1.0
"""Linger is measured after turns followed by at least this much silence of the same talker."""


@dataclass(frozen=True)
class TrueSource:
    """One talker of a recording."""

    name: str
    """Label (e.g. ``talker 1``)."""
    azimuth_deg: float
    """Direction in the array frame, [0, 360) (the start of the path for a moving talker)."""
    distance_m: float
    """Horizontal distance from the array centre."""
    active_s: tuple[tuple[float, float], ...]
    """Turns (start, end) in seconds: the intervals in which the talker has the floor."""
    voice_s: tuple[tuple[float, float], ...] = ()
    """Intervals in which the voice is actually on (pauses inside turns excluded); empty: the turns."""
    path: tuple[tuple[float, float], ...] = ()
    """(t_s, azimuth_deg) samples of a moving talker's direction; empty: still at ``azimuth_deg``."""

    @property
    def voice(self) -> tuple[tuple[float, float], ...]:
        """Voiced intervals (the turns where the truth has no voice activity)."""
        return self.voice_s or self.active_s

    def azimuth_at(self, t_s: float) -> float:
        """Direction at ``t_s`` (interpolated on the unit circle along the path)."""
        if not self.path:
            return self.azimuth_deg
        ts = [p[0] for p in self.path]
        if t_s <= ts[0]:
            return self.path[0][1]
        if t_s >= ts[-1]:
            return self.path[-1][1]
        import bisect

        k = bisect.bisect_right(ts, t_s)
        (t0, a0), (t1, a1) = self.path[k - 1], self.path[k]
        f = (t_s - t0) / (t1 - t0) if t1 > t0 else 0.0
        d = (a1 - a0 + 180.0) % 360.0 - 180.0
        return (a0 + f * d) % 360.0

    def speed_deg_s(self, t_s: float, dt_s: float = 0.1) -> float:
        """Azimuth speed around ``t_s`` (0 for a still talker)."""
        if not self.path:
            return 0.0
        return float(angular_distance_deg(self.azimuth_at(t_s + dt_s), self.azimuth_at(t_s - dt_s))) / (2 * dt_s)

    def voiced_in(self, t0: float, t1: float) -> float:
        """Seconds of voice in [t0, t1]."""
        return sum(_overlap(t0, t1, a, b) for a, b in self.voice)


def load_truth(path: str | os.PathLike[str]) -> tuple[list[TrueSource], dict[str, Any]]:
    """Read a truth JSON file: ``{"format": "edge-msl-truth", "sources": [{"azimuth_deg", "active_s"...}]}``
    (version 2 adds per source ``voice_s`` and, for a moving talker, ``path``)."""
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
            voice = tuple((float(a), float(b)) for a, b in s.get("voice_s", ()))
            p = s.get("path") or {}
            path_ = tuple((float(t), float(a) % 360.0) for t, a in zip(p.get("t_s", ()), p.get("azimuth_deg", ())))
            out.append(TrueSource(str(s.get("name", f"source {i + 1}")), float(s["azimuth_deg"]) % 360.0,
                                  float(s.get("distance_m", float("nan"))), intervals, voice, path_))
        except (KeyError, TypeError, ValueError) as exc:
            raise TruthError(f"{path}: source {i} needs azimuth_deg and active_s [[start, end], ...] ({exc}); "
                             f"{fix}") from None
    return out, raw


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def present(truth: Sequence[TrueSource], t_s: float, window_s: float,
            min_voiced_s: float = PRESENT_VOICED_S) -> list[int]:
    """Talkers with at least ``min_voiced_s`` of voice in the window ending at ``t_s`` (must be reported)."""
    return [i for i, s in enumerate(truth) if s.voiced_in(t_s - window_s, t_s) >= min_voiced_s - 1e-9]


def audible(truth: Sequence[TrueSource], t_s: float, window_s: float) -> list[int]:
    """Talkers with any voice in the window ending at ``t_s`` (may be reported)."""
    return [i for i, s in enumerate(truth) if s.voiced_in(t_s - window_s, t_s) > 0.0]


def match(est_deg: Sequence[float], true_deg: Sequence[float],
          max_deg: float | None = HIT_DEG) -> list[tuple[int, int, float]]:
    """The project's one matching rule: (estimate index, true index, error deg) pairs.

    First as many pairs within ``max_deg`` as can be made, and among those the least total error
    (exact, by dynamic programming over the true sources); then the leftovers paired nearest
    first, with their errors beyond the radius (callers count a hit only within the radius).
    ``max_deg`` None: every pair is a candidate (as many pairs as can be made, least error)."""
    est = [float(v) for v in est_deg]
    tru = [float(v) for v in true_deg]
    if not est or not tru:
        return []
    d = [[float(angular_distance_deg(a, b)) for b in tru] for a in est]
    radius = math.inf if max_deg is None else float(max_deg)
    if len(tru) <= 12:
        # best[mask] = (hits, -error, pairs) over the estimates seen so far
        best: dict[int, tuple[int, float, tuple[tuple[int, int], ...]]] = {0: (0, 0.0, ())}
        for i in range(len(est)):
            nxt = dict(best)
            for mask, (h, e, pairs) in best.items():
                for j in range(len(tru)):
                    if not mask >> j & 1 and d[i][j] <= radius:
                        cand = (h + 1, e - d[i][j], pairs + ((i, j),))
                        cur = nxt.get(mask | 1 << j)
                        if cur is None or cand[:2] > cur[:2]:
                            nxt[mask | 1 << j] = cand
            best = nxt
        chosen = list(max(best.values(), key=lambda v: v[:2])[2])
    else:  # not met in practice (13+ simultaneous talkers): nearest first within the radius
        chosen = []
    used_e = {i for i, _ in chosen}
    used_t = {j for _, j in chosen}
    for _, i, j in sorted((d[i][j], i, j) for i in range(len(est)) for j in range(len(tru))):
        if i not in used_e and j not in used_t:
            chosen.append((i, j))
            used_e.add(i)
            used_t.add(j)
    return sorted(((i, j, d[i][j]) for i, j in chosen), key=lambda p: p[0])


def _hits(est: Sequence[float], true: Sequence[float], max_deg: float) -> list[tuple[int, int, float]]:
    return [p for p in match(est, true, max_deg) if p[2] <= max_deg]


def message_matches(az: Sequence[float], truth: Sequence[TrueSource], t_s: float, window_s: float,
                    max_deg: float = HIT_DEG) -> tuple[list[int], list[tuple[int, int, float, bool]]]:
    """One message's outputs (azimuths ``az``, window ending at ``t_s``) matched to the talkers:
    the talkers who must be listed (:func:`present`), and ``(output, talker, error, required)`` for
    every match, first to those talkers (:func:`match` within ``max_deg``), then of the outputs
    left to the other talkers with any voice in the window (:func:`audible`, not required)."""
    req = present(truth, t_s, window_s)
    opt = [k for k in audible(truth, t_s, window_s) if k not in req]
    pairs = [(i, req[j], err, True) for i, j, err in _hits(az, [truth[k].azimuth_at(t_s) for k in req], max_deg)]
    used = {i for i, _, _, _ in pairs}
    rest = [i for i in range(len(az)) if i not in used]
    pairs += [(rest[i], opt[j], err, False)
              for i, j, err in _hits([az[i] for i in rest], [truth[k].azimuth_at(t_s) for k in opt], max_deg)]
    return req, pairs


def voiced_turns(src: TrueSource) -> list[tuple[int, float, float]]:
    """``(n, voice on, voice off)`` of each of the talker's turns (``active_s``, in order; ``n`` its
    index there) that holds any voice."""
    out = []
    for n, (a, b) in enumerate(sorted(src.active_s)):
        voiced = [(max(a, va), min(b, vb)) for va, vb in src.voice if min(b, vb) > max(a, va)]
        if voiced:
            out.append((n, voiced[0][0], voiced[-1][1]))
    return out


def score_parts(messages: Iterable[dict[str, Any]], truth: Sequence[TrueSource], window_s: float,
                max_deg: float = HIT_DEG) -> dict[str, Any]:
    """Raw counts and lists of one recording, to be summed over recordings by :func:`summarize`.

    Per message (window ending at ``t_s``): the talkers with at least :data:`PRESENT_VOICED_S` of
    voice in the window must be listed (recall); an output within ``max_deg`` of such a talker's
    direction at ``t_s`` is a hit (one output per talker, :func:`match`); an output matching none
    of them nor a talker with any voice in the window is a false alarm (precision); an extra
    output within ``max_deg`` of a listed talker is a duplicate (one talker reported as two).
    Per turn (``active_s``): pick-up = first window with the talker matched, minus the voice's
    start (or the first window's end); linger = last window, before the talker speaks again, with
    an output within ``max_deg`` of where the talker was that no other talker explains, minus
    the end of the voice and minus ``window_s`` (0 when gone within the window; turns followed by
    :data:`LINGER_QUIET_S` of silence); id switches = changes of the matched id within the turn."""
    msgs = list(messages)
    p: dict[str, Any] = {"windows": len(msgs), "required": 0, "hits": 0, "outputs": 0, "false_alarms": 0,
                         "duplicates": 0, "err": [], "err_moving": [], "pickup": [], "linger": [], "switches": 0,
                         "turns": 0, "turns_missed": 0}
    t_end = max((float(m["t_s"]) for m in msgs), default=0.0)
    matched: list[list[tuple[float, Any]]] = [[] for _ in truth]  # (t_s, id) per talker
    unexplained: list[tuple[float, list[float]]] = []  # per message: outputs that no voiced talker explains
    for m in msgs:
        t = float(m["t_s"])
        srcs = m["sources"]
        az = [float(s["azimuth_deg"]) for s in srcs]
        req, pairs = message_matches(az, truth, t, window_s, max_deg)
        p["required"] += len(req)
        p["outputs"] += len(srcs)
        for i, k, err, required in pairs:
            if required:
                p["hits"] += 1
                p["err"].append(err)
                if truth[k].speed_deg_s(t) >= MOVING_DEG_S:
                    p["err_moving"].append(err)
            matched[k].append((t, srcs[i].get("id")))
        used = {i for i, _, _, _ in pairs}
        left = [i for i in range(len(srcs)) if i not in used]
        near_req = [i for i in left if any(angular_distance_deg(az[i], truth[k].azimuth_at(t)) <= max_deg
                                           for k in req)]
        p["duplicates"] += len(near_req)
        p["false_alarms"] += len(left)
        unexplained.append((t, [az[i] for i in left]))
    for k, s in enumerate(truth):
        turns = sorted(s.active_s)
        for n, on, off in voiced_turns(s):
            p["turns"] += 1
            seen = [(t, i) for t, i in matched[k] if on <= t <= off + window_s]
            if not seen:
                p["turns_missed"] += 1
            else:
                p["pickup"].append(seen[0][0] - max(on, window_s))
                ids = [i for _, i in seen]
                p["switches"] += sum(1 for x, y in zip(ids, ids[1:]) if x != y)
            nxt = turns[n + 1][0] if n + 1 < len(turns) else math.inf
            if min(nxt, t_end) - off < LINGER_QUIET_S:
                continue
            last = off
            for t, outs in unexplained:
                if off < t < nxt and any(angular_distance_deg(v, s.azimuth_at(off)) <= max_deg for v in outs):
                    last = t
            # a window that still holds some of the voice explains the output (matched above)
            p["linger"].append(max(0.0, last - off - window_s))
    return p


def summarize(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores over recordings from :func:`score_parts`: recall, precision, F1, DOA error (all and
    moving talkers), pick-up and linger (mean and 90th percentile), id switches per turn."""
    tot: dict[str, Any] = {k: (sum(p[k] for p in parts) if not isinstance(parts[0][k], list) else
                               [v for p in parts for v in p[k]]) for k in parts[0]} if parts else {}
    if not tot:
        return {}

    def mean(v: Sequence[float]) -> float | None:
        return round(sum(v) / len(v), 3) if v else None

    def p90(v: Sequence[float]) -> float | None:
        if not v:
            return None
        w = sorted(v)
        return round(w[min(len(w) - 1, int(math.ceil(0.9 * len(w))) - 1)], 3)

    recall = tot["hits"] / tot["required"] if tot["required"] else None
    precision = (tot["outputs"] - tot["false_alarms"]) / tot["outputs"] if tot["outputs"] else None
    f1 = 2 * recall * precision / (recall + precision) if recall and precision else (0.0 if tot["required"] else None)
    err = sorted(tot["err"])
    return {
        "windows": tot["windows"],
        "recall": round(recall, 3) if recall is not None else None,
        "precision": round(precision, 3) if precision is not None else None,
        "f1": round(f1, 3) if f1 is not None else None,
        "doa_error_mean_deg": mean(err),
        "doa_error_median_deg": round(err[len(err) // 2], 2) if err else None,
        "doa_error_moving_deg": mean(tot["err_moving"]),
        "duplicates": tot["duplicates"],
        "turns": tot["turns"],
        "turns_missed": tot["turns_missed"],
        "pickup_mean_s": mean(tot["pickup"]),
        "pickup_p90_s": p90(tot["pickup"]),
        "linger_mean_s": mean(tot["linger"]),
        "linger_p90_s": p90(tot["linger"]),
        "id_switches_per_turn": round(tot["switches"] / tot["turns"], 3) if tot["turns"] else None,
    }


def score(messages: Iterable[dict[str, Any]], truth: Sequence[TrueSource], window_s: float,
          max_deg: float = HIT_DEG) -> dict[str, Any]:
    """:func:`summarize` of one recording's :func:`score_parts`."""
    return summarize([score_parts(messages, truth, window_s, max_deg)])


def plot(messages: Sequence[dict[str, Any]], out_png: str | os.PathLike[str], truth: Sequence[TrueSource] = (),
         title: str = "") -> None:
    """A polar view of where each track id was (radius: distance) beside a strip of azimuth over time per track
    id (raw detections in black without tracking), both over the truth."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TruthError('--plot needs matplotlib; pip install "edge-msl[plot]"') from None
    fig = plt.figure(figsize=(13, 4.6))
    grid = fig.add_gridspec(1, 2, width_ratios=[1, 2.5], wspace=0.18)
    polar = fig.add_subplot(grid[0, 0], projection="polar")
    ax = fig.add_subplot(grid[0, 1])
    for k, s in enumerate(truth):
        for n, (a, b) in enumerate(s.voice):
            ts = [a + (b - a) * i / 20 for i in range(21)]
            az = [s.azimuth_at(t) for t in ts]
            # split where the path wraps through 0/360 so the band does not cross the plot
            segs, cur = [], [(ts[0], az[0])]
            for t, v in zip(ts[1:], az[1:]):
                if abs(v - cur[-1][1]) > 180:
                    segs.append(cur)
                    cur = []
                cur.append((t, v))
            segs.append(cur)
            for m, seg in enumerate(segs):
                ax.plot(*zip(*seg) if len(seg) > 1 else ([seg[0][0]] * 2, [seg[0][1]] * 2), color="0.75", lw=9,
                        solid_capstyle="butt", label="truth (voice)" if k == 0 and n == 0 and m == 0 else None,
                        zorder=1)
        if s.voice:
            ax.text(s.voice[0][0], s.azimuth_at(s.voice[0][0]) + 8, s.name, fontsize=8, color="0.35")
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
    _polar_view(polar, by_id, truth, messages, cmap)
    ax.set_ylim(0, 360)
    ax.set_yticks(range(0, 361, 45))
    ax.set_xlabel("time (s, end of window)")
    ax.set_ylabel("azimuth (deg)")
    if title:
        fig.suptitle(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.subplots_adjust(left=0.03, right=0.98, top=0.9, bottom=0.12)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _polar_view(polar: Any, by_id: dict[Any, list[tuple[float, float, bool]]], truth: Sequence[TrueSource],
                messages: Sequence[dict[str, Any]], cmap: Any) -> None:
    """Each id's positions (azimuth, distance) fading in with time, its last one large and labelled; the truth's
    talkers as grey rings at their distance along their paths. Azimuth 0 to the right, counter-clockwise."""
    import math

    dist: dict[Any, list[tuple[float, float, float]]] = {}
    for m in messages:
        for s in m["sources"]:
            dist.setdefault(s["id"], []).append((m["t_s"], s["azimuth_deg"], s.get("distance_m") or 0.0))
    t_end = max((m["t_s"] for m in messages), default=1.0) or 1.0
    r_max = 1.0
    for s in truth:
        ts = [t for a, b in s.voice for t in (a + (b - a) * i / 20 for i in range(21))]
        if ts:
            polar.plot([math.radians(s.azimuth_at(t)) for t in ts], [s.distance_m] * len(ts), "o", color="0.8",
                       ms=9, zorder=1, label="truth (voice)" if s is truth[0] else None)
            r_max = max(r_max, s.distance_m)
    for n, (tid, pts) in enumerate(sorted(dist.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))):
        color = "k" if tid is None else cmap(n % 10)
        th = [math.radians(a) for _, a, _ in pts]
        r = [d for _, _, d in pts]
        alpha = [0.15 + 0.6 * t / t_end for t, _, _ in pts]
        polar.scatter(th, r, s=8, color=color, alpha=alpha, zorder=2)
        if tid is not None:
            polar.scatter(th[-1:], r[-1:], s=60, color=color, edgecolors="k", linewidths=0.5, zorder=3)
            polar.annotate(f"id {tid}", (th[-1], r[-1]), textcoords="offset points", xytext=(6, 4), fontsize=7)
        r_max = max([r_max, *r])
    polar.set_theta_zero_location("E")
    polar.set_theta_direction(1)
    polar.set_rlim(0, math.ceil(r_max))
    polar.set_rlabel_position(100)
    polar.tick_params(labelsize=7)
    polar.set_title("where (radius: distance, m)", fontsize=8)


__all__ = ["TRUTH_FORMAT", "HIT_DEG", "PRESENT_VOICED_S", "TruthError", "TrueSource", "load_truth", "present",
           "audible", "match", "message_matches", "voiced_turns", "score_parts", "summarize", "score", "plot"]
