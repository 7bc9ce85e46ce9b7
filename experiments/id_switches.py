"""Where do id switches on walking talkers come from? (docs/experiments/walker-hand-over.md)

Decodes a walk scene set with the packaged model (cached network outputs of
``benchmarks.scenes_bench``), matches outputs to talkers as ``edge_msl.truth.score_parts`` does, and
sorts every change of the matched id within a turn into:

- ``swap``: the new id had been another talker's (two talkers passing each other);
- ``newborn, old listed``: the new id was born then, while the old one was still listed elsewhere
  (a walker outrunning the windows: their track stays behind, a new one is born where they are);
- ``newborn, old gone``: born then, the old id no longer listed;
- ``existing``: an id already listed before, no other talker's.

    .venv/bin/python -m experiments.id_switches data/scenes/val-walk [--decode '{"hand_over_deg": 0}'] [--list]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from edge_msl.regions import wrap180
from edge_msl.truth import message_matches, voiced_turns
from experiments.newest_audio import Scenes, velocity

KINDS = ("swap", "newborn, old listed", "newborn, old gone", "existing")


def matched_ids(truth, msgs, window_s):
    """Per talker: (t_s, id, azimuth) of every output matched to them, as ``score_parts`` matches."""
    matched = [[] for _ in truth]
    for m in msgs:
        az = [s["azimuth_deg"] for s in m["sources"]]
        for i, k, _, _ in message_matches(az, truth, m["t_s"], window_s)[1]:
            matched[k].append((m["t_s"], m["sources"][i]["id"], az[i]))
    return matched


def switches(truth, msgs, window_s):
    """(number of turns, [(kind, row), ...]) for one scene."""
    matched = matched_ids(truth, msgs, window_s)
    at = {m["t_s"]: m for m in msgs}
    first: dict = {}
    for m in msgs:
        for s in m["sources"]:
            first.setdefault(s["id"], m["t_s"])
    turns, out = 0, []
    for k, src in enumerate(truth):
        for _, on, off in voiced_turns(src):
            turns += 1
            seen = [x for x in matched[k] if on <= x[0] <= off + window_s]
            for (t0, i0, a0), (t1, i1, a1) in zip(seen, seen[1:]):
                if i0 == i1:
                    continue
                old_listed = [x["azimuth_deg"] for x in at[t1]["sources"] if x["id"] == i0]
                if any(i1 == x[1] for q in range(len(truth)) if q != k for x in matched[q] if x[0] < t1):
                    kind = "swap"
                elif first[i1] >= t0 - 1e-6:
                    kind = "newborn, old listed" if old_listed else "newborn, old gone"
                else:
                    kind = "existing"
                others = [abs(wrap180(truth[q].azimuth_at(t1) - src.azimuth_at(t1)))
                          for q in range(len(truth)) if q != k]
                out.append((kind, dict(t_s=round(t1, 2), talker=k, old=i0, new=i1,
                                       speed_deg_s=round(velocity(src, t1), 1), truth=round(src.azimuth_at(t1), 1),
                                       old_at=[round(v, 1) for v in old_listed], new_at=round(a1, 1),
                                       nearest_other_deg=round(min(others), 1) if others else None)))
    return turns, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("walk", help="a walk scene set (python -m train_tf.scenes --kind walk)")
    ap.add_argument("--decode", default="{}", help="JSON overrides of the model's decode.temporal")
    ap.add_argument("--list", action="store_true", help="print every switch")
    args = ap.parse_args(argv)
    sc = Scenes("data/scenes/val-turns", args.walk)
    st = dataclasses.replace(sc.base, **json.loads(args.decode))
    turns, rows = 0, []
    for stem, truth, _ in sc.walkers():
        n, out = switches(truth, sc.decode(stem, st), sc.info.window_s)
        turns += n
        rows += [(stem.name, kind, row) for kind, row in out]
    print(f"{args.walk}: {turns} turns, {len(rows)} id switches ({len(rows) / max(turns, 1):.3f} per turn)")
    for kind in KINDS:
        print(f"  {kind}: {sum(1 for _, k, _ in rows if k == kind)}")
    if args.list:
        for name, kind, row in rows:
            print(name, kind, json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
