"""What the temporal decode's false talkers are, and whether a floor on the published confidence removes them
(issue 27; docs/experiments/published-confidence.md). Runs on today's decode and the packaged ``uca8-r10`` model.

    .venv/bin/python -m experiments.false_alarms kinds data/scenes/val-turns data/scenes/val-walk
    .venv/bin/python -m experiments.false_alarms floor 0.2,0.25,0.3 --static data/val-speech-1s --static data/val-speech-3s

``kinds`` sorts every output that matches no talker (the scoring's rule, ``edge_msl.truth.message_matches``) by the
nearest talker: one who stopped within the second before the window, one about to start, one with voice in the
window (a duplicate, or too little voice to be required), one 20-45° off a talker with voice, and the rest; then the
share of hits and of false alarms below each published confidence. ``floor`` scores the validation scenes (turns and
both walk sets) and static window sets with every published talker below a confidence dropped from the output
(the tracks themselves unchanged): what a setting "publish only at this confidence" would give.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from edge_msl.regions import angular_distance_deg
from edge_msl.temporal import DecodeSettings
from edge_msl.truth import load_truth, message_matches, score_parts, summarize

WINDOW_S = 0.5
FLOORS_SEEN = (0.2, 0.25, 0.3, 0.35, 0.4)


def _decoded(set_dir: str) -> list[tuple[list, list[dict]]]:
    """(truth, messages of the shipped decode) of every scene of a set."""
    from experiments.newest_audio import Scenes

    sc = Scenes(set_dir, set_dir)
    out = []
    for stem in sc.sets["turns"]:
        out.append((load_truth(stem.with_suffix(".truth.json"))[0], sc.decode(stem, sc.base)))
    return out


def kind_of(src_az: float, truth: list, t_s: float) -> str:
    """Why an output that matches no talker is there, from the nearest talker's voice around the window."""
    d = [float(angular_distance_deg(src_az, tr.azimuth_at(t_s))) for tr in truth]
    k = int(np.argmin(d))
    tr = truth[k]
    now = tr.voiced_in(t_s - WINDOW_S, t_s)
    if d[k] <= 20 and now == 0 and tr.voiced_in(t_s - WINDOW_S - 1.0, t_s - WINDOW_S) > 0:
        return "a talker who stopped (≤ 20°, voice in the second before the window, none in it)"
    if d[k] <= 20 and now == 0 and tr.voiced_in(t_s, t_s + 0.5) > 0:
        return "a talker about to start (≤ 20°)"
    if d[k] <= 20 and now > 0:
        return "a talker with voice in the window (a duplicate, or too little voice to be required)"
    if d[k] <= 45 and now > 0:
        return "20-45° off a talker with voice"
    if d[k] <= 20:
        return "a talker silent for over a second (≤ 20°)"
    return "elsewhere"


def kinds(sets: list[str]) -> None:
    """Print the false alarms of each set by kind, and the share of hits and false alarms under each floor."""
    for d in sets:
        counts: collections.Counter = collections.Counter()
        conf: dict[str, list[float]] = collections.defaultdict(list)
        hits, false = [], []
        for truth, msgs in _decoded(d):
            for m in msgs:
                az = [s["azimuth_deg"] for s in m["sources"]]
                _, pairs = message_matches(az, truth, m["t_s"], WINDOW_S)
                required = {p[0] for p in pairs if p[3]}
                matched = {p[0] for p in pairs}
                for i, s in enumerate(m["sources"]):
                    if i in required:
                        hits.append(s["confidence"])
                    elif i not in matched:
                        k = kind_of(s["azimuth_deg"], truth, m["t_s"])
                        counts[k] += 1
                        conf[k].append(s["confidence"])
                        false.append(s["confidence"])
        total = sum(counts.values())
        print(f"\n{d}: {len(hits)} hits, {total} false alarms\n")
        print("| false alarm: nearest talker | count | share | mean confidence |\n| --- | ---: | ---: | ---: |")
        for k, v in counts.most_common():
            print(f"| {k} | {v} | {v / total:.0%} | {np.mean(conf[k]):.2f} |")
        h, f = np.array(hits), np.array(false)
        print("\n| published confidence below | hits | false alarms |\n| ---: | ---: | ---: |")
        for th in FLOORS_SEEN:
            print(f"| {th:g} | {np.sum(h < th)} ({np.mean(h < th):.1%}) | {np.sum(f < th)} ({np.mean(f < th):.0%}) |")


def floor(floors: list[float], static_dirs: list[str], turns: str, walks: list[str], cache_dir: Path) -> None:
    """Print the validation table of each floor (0 = the shipped output)."""
    from experiments.newest_audio import static_outputs
    from train_tf.evaluate.device_decode import temporal_decode_all
    from train_tf.evaluate.scoring import score_detections
    from train_tf.evaluate.scoring import summarize as summarize_windows

    sets = {"turns": _decoded(turns), **{Path(w).name: _decoded(w) for w in walks}}
    static = []
    for d in static_dirs:
        data, per, params = static_outputs(d, cache_dir / f"{Path(d).name}-outputs.npz")
        shipped = DecodeSettings.from_dict(params.get("decode", {}).get("temporal", {}))
        dets, _, _ = temporal_decode_all(per, data["audio"], params, settings=shipped)
        static.append((Path(d).name, data, dets))
    head = ["floor"] + [f"{n} F1 / P / R" for n in sets] + [f"{n} F1 / error°" for n, _, _ in static]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for fl in [0.0, *floors]:
        cells = []
        for runs in sets.values():
            parts = [score_parts([dict(m, sources=[s for s in m["sources"] if s["confidence"] >= fl]) for m in msgs],
                                 truth, WINDOW_S) for truth, msgs in runs]
            r = summarize(parts)
            cells.append(f"{r['f1']:.4f} / {r['precision']:.3f} / {r['recall']:.3f}")
        for _, data, dets in static:
            kept = [[x for x in w if x.confidence >= fl] for w in dets]
            s = summarize_windows(score_detections(kept, data["azimuth_deg"], data["distance_m"], 20.0))
            cells.append(f"{s['f1']:.4f} / {s['err_mean']:.3f}")
        print(f"| {'shipped' if fl == 0 else f'{fl:g}'} | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``kinds`` or ``floor``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", choices=("kinds", "floor"))
    ap.add_argument("args", nargs="*", help="kinds: scene set directories; floor: comma list of floors")
    ap.add_argument("--turns", default="data/scenes/val-turns")
    ap.add_argument("--walk", action="append", help="walk sets (default data/scenes/val-walk, data/scenes/val2-walk)")
    ap.add_argument("--static", action="append", default=[], help="static window sets (floor)")
    ap.add_argument("--cache-dir", default="out/newest-audio", help="where the static sets' network outputs are kept")
    a = ap.parse_args(argv)
    if a.report == "kinds":
        kinds(a.args or [a.turns, "data/scenes/val-walk"])
    else:
        floor([float(x) for x in (a.args[0] if a.args else "0.2,0.25,0.3").split(",")], a.static, a.turns,
              a.walk or ["data/scenes/val-walk", "data/scenes/val2-walk"], Path(a.cache_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
