"""Held-out dynamic scenes per board: each board's packaged int8 model and shipped decode (and each window alone)
on its own turn-taking and walking scenes of test-split voices, printed as the tables of
docs/experiments/board-scenes.md. Scores only; nothing is chosen on these scenes.

    .venv/bin/python -m benchmarks.board_scenes                  # score every board (scenes_bench), print the tables
    .venv/bin/python -m benchmarks.board_scenes --tables-only    # the tables from out/board-scenes-*.json

Scenes: ``data/scenes/test2-{turns,walk}-BOARD`` (``train_tf.scenes``, the seeds in the report); the reference
``uca8-r10`` on ``data/scenes/test-{turns,walk}`` (shipped decode only). Scoring is ``benchmarks.scenes_bench``
itself, one call per board (``--variants shipped,no-track --json out/board-scenes-BOARD.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

BOARDS = ("respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "minidsp-uma8", "matrix-creator")
REFERENCE = "uca8-r10"
KINDS = ("turns", "walk")
SHIPPED = "shipped (locate)"
ALONE = "each window alone, no tracking"


def scene_sets(board: str) -> list[str]:
    """The board's held-out turns and walk scene directories."""
    if board == REFERENCE:
        return [f"data/scenes/test-{k}" for k in KINDS]
    return [f"data/scenes/test2-{k}-{board}" for k in KINDS]


def json_path(board: str, out_dir: str) -> Path:
    return Path(out_dir) / f"board-scenes-{board}.json"


def score(board: str, out_dir: str) -> None:
    """``benchmarks.scenes_bench`` on the board's two sets; its table goes to stderr, its rows to the JSON."""
    from benchmarks import scenes_bench

    variants = "shipped" if board == REFERENCE else "shipped,no-track"
    with contextlib.redirect_stdout(sys.stderr):
        scenes_bench.main([*scene_sets(board), "--array", board, "--variants", variants,
                           "--json", str(json_path(board, out_dir))])


def fmt(v: Any, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def table(kind: str, rows_by_board: dict[str, list[dict[str, Any]]]) -> str:
    """One markdown table of a set kind: a row per board and decode (shipped, each window alone)."""
    walk = kind == "walk"
    head = ["board", "decode", "F1", "recall", "precision", "error°"] + (["error moving°"] if walk else []) + \
        ["pick-up p90 s", "linger mean / p90 s", "id sw./turn"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- | " + " | ".join("---:" for _ in head[2:]) + " |"]
    for board, rows in rows_by_board.items():
        for r in rows:
            if r["set"].split("-")[1] != kind:  # test-turns, test2-walk-BOARD
                continue
            alone = r["decode"] == ALONE
            name = "each window alone" if alone else "shipped" if r["decode"] == SHIPPED else r["decode"]
            cells = [f"`{board}`", name, fmt(r["f1"], 3), fmt(r["recall"], 3), fmt(r["precision"], 3),
                     fmt(r["doa_error_mean_deg"], 2)] + ([fmt(r["doa_error_moving_deg"], 2)] if walk else []) + \
                [fmt(r["pickup_p90_s"], 2), f"{fmt(r['linger_mean_s'], 2)} / {fmt(r['linger_p90_s'], 2)}",
                 "—" if alone else fmt(r["id_switches_per_turn"], 3)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default=",".join(BOARDS + (REFERENCE,)), help="comma list (default: all six "
                        f"boards and {REFERENCE})")
    parser.add_argument("--tables-only", action="store_true", help="print the tables from the JSONs, score nothing")
    parser.add_argument("--out-dir", default="out", help="where the per-board JSONs are (default out)")
    args = parser.parse_args(argv)
    boards = args.boards.split(",")
    if not args.tables_only:
        for b in boards:
            score(b, args.out_dir)
    rows = {}
    for b in boards:
        p = json_path(b, args.out_dir)
        if not p.exists():
            raise SystemExit(f"{p}: missing; run python -m benchmarks.board_scenes --boards {b}")
        rows[b] = json.loads(p.read_text())
    for kind in KINDS:
        print(f"### {kind}\n\n{table(kind, rows)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
