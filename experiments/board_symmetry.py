"""A board's temporal decode on its scenes with the windows as they are and on their cycled symmetric images
(docs/experiments/board-symmetry.md).

    .venv/bin/python -m experiments.board_symmetry val respeaker-4mic matrix-creator    # data/scenes/val-{turns,walk}-B
    .venv/bin/python -m experiments.board_symmetry val val2 respeaker-4mic               # val and val2 scenes pooled

Prints one table row per board and image mode: the mean F1 of the turns and walk sets; turns F1 / precision / error;
walk F1 / precision / error / moving error; the mean of the two errors; the walk set's id switches per turn. The
board's packaged model and its shipped ``decode.temporal``; the scenes' cached network outputs
(``benchmarks.scenes_bench.cached_outputs``, which computes both the plain and the cycled outputs).
"""

from __future__ import annotations

import sys

from benchmarks.scenes_bench import DecodeSettings, cached_outputs, decode_cached, load_model, scenes, score_set
from edge_msl.arrays import get_array

KINDS = ("val", "val2", "test")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sets = [a for a in args if a in KINDS]
    boards = [a for a in args if a not in KINDS]
    if not sets or not boards:
        raise SystemExit(f"usage: python -m experiments.board_symmetry {{{','.join(KINDS)}}}... BOARD...")
    print("| board | images | mean F1 | turns | walk | mean error° | walk id sw./turn |")
    print("| --- | --- | ---: | --- | --- | ---: | ---: |")
    for b in boards:
        model = load_model(array=get_array(b))
        st = DecodeSettings.from_dict(model.info.raw["decode"]["temporal"])
        stems = {d: scenes([f"data/scenes/{k}-{d}-{b}" for k in sets]) for d in ("turns", "walk")}
        cached = {s: cached_outputs(model, s) for d in stems for s in stems[d]}  # read once for both image modes
        for images, name in (("plain", "as they are"), ("cycle", "cycled")):
            r = {d: score_set(stems[d], lambda s: decode_cached(model, cached[s], st, images), model.info.window_s)
                 for d in stems}
            t, w = r["turns"], r["walk"]
            print(f"| `{b}` | {name} | {(t['f1'] + w['f1']) / 2:.4f} | {t['f1']:.3f} / {t['precision']:.3f} / "
                  f"{t['doa_error_mean_deg']:.2f} | {w['f1']:.3f} / {w['precision']:.3f} / {w['doa_error_mean_deg']:.2f} / "
                  f"{w['doa_error_moving_deg']:.2f} | {(t['doa_error_mean_deg'] + w['doa_error_mean_deg']) / 2:.3f} | "
                  f"{w['id_switches_per_turn']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
