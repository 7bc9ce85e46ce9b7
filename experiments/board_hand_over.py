"""The boards' walker hand-over keys chosen again on larger validation walks (issues 27 and 28;
docs/experiments/board-hand-over.md).

    python -m experiments.board_hand_over choose [--boards B,...]     # the rule, on validation
    python -m experiments.board_hand_over test --boards B --variant '{"hand_over_deg": 45}'   # once, after

Each board's id switches on walking talkers were chosen on 12 validation walks (``data/scenes/val-walk-B``), too few
to rank the decodes (docs/experiments/board-scenes.md). ``choose`` adds 24 more (``data/scenes/val2-walk-B``,
training voices) and scores every combination of ``hand_over_deg`` (0, 45) and ``hand_over_side_deg`` (0, 30) on the
turn-taking scenes, both walk sets and the streamed 3 s windows (``experiments.board_phantoms``' replay of
``data/val-3s-B``). The rule (``ship``) is in the report. ``test`` scores the board's held-out scenes
(``data/scenes/test2-{turns,walk}-B``, docs/experiments/board-scenes.md) and 3 s windows (``data/test-3s-B``) with the
shipped decode and a variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from benchmarks.board_decode import set_scorer
from experiments.board_phantoms import BOARDS, replay, summary

GRID = [{"hand_over_deg": h, "hand_over_side_deg": s} for h in (0.0, 45.0) for s in (0.0, 30.0)]
REL, ABS, F1_TOL = 0.10, 2, 0.002
"""The rule: the fewest id switches over both walk sets, at least REL (relative) and ABS switches fewer than the
shipped decode; no F1 (turns, each walk set, streamed 3 s) more than F1_TOL lower; turns' id switches not more."""


def switches(r: dict[str, Any]) -> int:
    """Id switches in a scored set (per turn x turns)."""
    return round(r["id_switches_per_turn"] * r["turns"])


def ship(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The candidate the rule ships, or None (rows[0] is the shipped decode)."""
    base = rows[0]
    ok = [r for r in rows[1:] if r["walk_sw"] <= base["walk_sw"] * (1 - REL) + 1e-9 and
          r["walk_sw"] <= base["walk_sw"] - ABS and r["turns_sw"] <= base["turns_sw"] and
          all(r[k] >= base[k] - F1_TOL - 1e-9 for k in ("turns_f1", "walk_f1", "walk2_f1", "static_f1"))]
    return min(ok, key=lambda r: (r["walk_sw"], -r["walk_f1"] - r["walk2_f1"])) if ok else None


def cmd_choose(boards: list[str], workers: int) -> None:
    print("| board | hand_over_deg / side | turns F1 / P / id sw. | val-walk F1 / moving° / id sw. | "
          "val2-walk F1 / moving° / id sw. | walk id sw. (both) | 3 s F1 1-3 / P1 / R3 | chosen |")
    print("| --- | --- | --- | --- | --- | ---: | --- | --- |")
    for b in boards:
        dirs = [f"data/scenes/val-turns-{b}", f"data/scenes/val-walk-{b}", f"data/scenes/val2-walk-{b}"]
        _, base, scored = set_scorer(b, dirs)
        shipped = {k: getattr(base, k) for k in GRID[0]}
        grid = [shipped] + [g for g in GRID if g != shipped]
        rows = []
        for keys in grid:
            t, w, w2 = scored(dataclasses.replace(base, **keys))
            s = summary(replay("val-3s", b, keys, workers=workers))
            rows.append({"keys": keys, "turns_f1": t["f1"], "turns_p": t["precision"], "turns_sw": switches(t),
                         "walk_f1": w["f1"], "walk_mov": w["doa_error_moving_deg"], "walk2_f1": w2["f1"],
                         "walk2_mov": w2["doa_error_moving_deg"], "sw1": switches(w), "sw2": switches(w2),
                         "walk_sw": switches(w) + switches(w2), "walk_turns": w["turns"] + w2["turns"],
                         "static_f1": s["f1_13"], "static_p1": s["p1"], "static_r3": s["r3"]})
        chosen = ship(rows)
        for i, r in enumerate(rows):
            mark = "shipped" if i == 0 else ("**chosen**" if r is chosen else "")
            print(f"| `{b}` | {r['keys']['hand_over_deg']:g} / {r['keys']['hand_over_side_deg']:g} | "
                  f"{r['turns_f1']:.3f} / {r['turns_p']:.3f} / {r['turns_sw']} | "
                  f"{r['walk_f1']:.3f} / {r['walk_mov']:.2f} / {r['sw1']} | "
                  f"{r['walk2_f1']:.3f} / {r['walk2_mov']:.2f} / {r['sw2']} | "
                  f"{r['walk_sw']} of {r['walk_turns']} turns ({r['walk_sw'] / r['walk_turns']:.3f}) | "
                  f"{r['static_f1']:.3f} / {r['static_p1']:.3f} / {r['static_r3']:.3f} | {mark} |", flush=True)


def cmd_test(boards: list[str], variants: list[str], workers: int) -> None:
    print("| board | decode | turns F1 / P / pick-up p90 s / id sw. | walk F1 / P / moving° / id sw. per turn | "
          "3 s F1 1-3 / P1 / R3 / error° |")
    print("| --- | --- | --- | --- | --- |")
    for b in boards:
        dirs = [f"data/scenes/test2-turns-{b}", f"data/scenes/test2-walk-{b}"]
        _, base, scored = set_scorer(b, dirs)
        for text in ["{}", *variants]:
            keys = json.loads(text)
            t, w = scored(dataclasses.replace(base, **keys))
            s = summary(replay("test-3s", b, keys, workers=workers))
            print(f"| `{b}` | {'shipped' if not keys else text} | {t['f1']:.3f} / {t['precision']:.3f} / "
                  f"{t['pickup_p90_s']} / {t['id_switches_per_turn']} | {w['f1']:.3f} / {w['precision']:.3f} / "
                  f"{w['doa_error_moving_deg']} / {w['id_switches_per_turn']} | {s['f1_13']:.3f} / {s['p1']:.3f} / "
                  f"{s['r3']:.3f} / {s['err']:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``choose`` or ``test``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("choose", "test"))
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--variant", action="append", default=[], help="test: JSON object of decode.temporal keys")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    boards = a.boards.split(",")
    if a.command == "choose":
        cmd_choose(boards, a.workers)
    else:
        cmd_test(boards, a.variant, a.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
