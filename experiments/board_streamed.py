"""What a board's user gets: its held-out 1 s windows through the shipped temporal decode, against the same board's
single 0.5 s test windows (docs/experiments/board-streamed.md).

Reads ``out/eval-1s/<board>/results.json`` (``python -m train_tf.evaluate --model models/<board> --data
data/test-1s-<board> --out out/eval-1s/<board> --baselines SRP,NormMUSIC``) and ``models/<board>/eval/results.json``
(the board's test set, each 0.5 s window decoded alone), and prints one table: F1 over 1-4 and over 1-3 talkers,
single-talker precision, 3-talker recall, mean error, the count-given best baseline's F1 over 1-3 talkers, and the 2-
and 3-talker F1 of the model against that baseline.

    .venv/bin/python -m experiments.board_streamed [--eval-dir out/eval-1s]   # out/eval-3s: the 3 s set
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BOARDS = ("respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "matrix-creator", "minidsp-uma8")


def f1_1to3(cells: dict) -> float:
    """F1 over the windows of 1-3 talkers (hits, talkers and estimates summed over the three rows)."""
    hits = sum(cells[f"{k} src, all"]["hits"] for k in (1, 2, 3))
    both = sum(cells[f"{k} src, all"]["sources"] + cells[f"{k} src, all"]["estimates"] for k in (1, 2, 3))
    return 2 * hits / both


def row(board: str, label: str, cells: dict) -> str:
    m = cells["model"]
    best = max(("SRP", "NormMUSIC"), key=lambda k: f1_1to3(cells[k]))
    b = cells[best]
    return (f"| `{board}` | {label} | {m['all']['f1']:.3f} / {f1_1to3(m):.3f} | {m['1 src, all']['precision']:.3f} | "
            f"{m['3 src, all']['recall']:.3f} | {m['all']['err_mean']:.2f} | {best} {f1_1to3(b):.3f} | "
            f"{m['2 src, all']['f1']:.3f} vs {b['2 src, all']['f1']:.3f}; {m['3 src, all']['f1']:.3f} vs "
            f"{b['3 src, all']['f1']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", default="out/eval-1s")
    args = ap.parse_args(argv)
    print("| board | windows | F1 1-4 / 1-3 talkers | single-talker precision | 3-talker recall | mean error° | "
          "best baseline (count given), F1 1-3 | 2 / 3 talkers F1 vs that baseline |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- | --- |")
    for b in BOARDS:
        for path in (Path(args.eval_dir) / b / "results.json", Path("models") / b / "eval" / "results.json"):
            if path.exists():
                res = json.loads(path.read_text())
                a = res["analysis"]
                label = (f"{a['window_s']:g} s, temporal decode" if a.get("pooled_windows", 1) > 1
                         else f"{a['window_s']:g} s alone (test)")
                print(row(b, label, res["cells"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
