"""Choose a board model's temporal decode on that board's own validation scenes: a small grid of
birth / keep thresholds and one-window confirmation, scored by the mean F1 of the turn-taking and
walking sets (``benchmarks/scenes_bench.py``'s scoring), the best printed as a sidecar table.

    .venv/bin/python -m train_tf.scenes --kind turns --n 12 --seed 8200 --array respeaker-4mic \
        --bank data/dry/bank-train.npz --out data/scenes/val-turns-respeaker-4mic   (walk: seed 8250)
    .venv/bin/python -m benchmarks.board_decode respeaker-4mic
    .venv/bin/python -m benchmarks.board_decode respeaker-4mic --newest   # the newest audio, on vs off
    .venv/bin/python -m benchmarks.board_decode respeaker-4mic --try '{"hand_over_deg": 45}'   # any keys

``--try JSON`` (repeatable) scores the board's decode as shipped and with each set of overrides.
``--newest`` keeps the board's own decode and adds the second-round keys of ``uca8-r10``'s sidecar
(``ROUND2``), then all of its newest-audio keys (``now_*``, ``resume_by_birth``:
docs/experiments/newest-audio.md) at two measurement noises.

Seeds per board: 8200 + 100 i (turns) and 8250 + 100 i (walk), i the board's index in BOARDS.
"""

import dataclasses as dc
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Callable

from benchmarks.scenes_bench import DecodeSettings, cached_outputs, decode_cached, load_model, scenes, score_set
from edge_msl.arrays import get_array

BOARDS = ("respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "matrix-creator", "minidsp-uma8")
GRID = {"birth_threshold": (0.35, 0.45), "keep_threshold": (0.15, 0.2), "confirm_confidence": (0.5, 0.6)}
NEWEST = ("now_hops", "now_lag_s", "now_half_deg", "now_min_rate_deg_s", "now_min_strength", "now_sd_deg")
ROUND2 = ("now_confirm_strength", "now_confirm_min", "now_sd_strength", "resume_by_birth")
"""The keys of the newest audio's second round (docs/experiments/newest-audio.md)."""


def newest_variants(board_settings: DecodeSettings) -> dict[str, DecodeSettings]:
    """The board's decode as shipped; with ``uca8-r10``'s second-round keys alone; and with all of
    ``uca8-r10``'s newest-audio keys (its ``now_sd_deg``, and 10)."""
    ref = load_model(array=get_array("uca8-r10")).info.raw["decode"]["temporal"]
    round2 = dc.replace(board_settings, **{k: ref[k] for k in ROUND2 if k in ref})
    on = dc.replace(round2, **{k: ref[k] for k in NEWEST})
    return {"shipped": board_settings, "+ round 2 keys": round2, f"newest audio, sd {on.now_sd_deg:g}": on,
            "newest audio, sd 10": dc.replace(on, now_sd_deg=10.0)}


def set_scorer(board: str, dirs: list[str]) -> tuple[Any, DecodeSettings, Callable[[DecodeSettings], list[dict]]]:
    """The board's packaged model info, its sidecar's decode settings, and a function scoring decode settings on
    each of the scene sets ``dirs`` (``scenes_bench``'s scoring; the network's outputs cached next to the scenes)."""
    model = load_model(array=get_array(board))
    info = model.info
    stems = {d: scenes([str(d)]) for d in dirs}
    cached = {st: cached_outputs(model, st) for d in dirs for st in stems[d]}
    images = "cycle" if info.symmetry == "cycle" else "plain"

    def scored(st: DecodeSettings) -> list[dict]:
        return [score_set(stems[d], lambda s: decode_cached(model, cached[s], st, images), info.window_s)
                for d in dirs]

    return info, DecodeSettings.from_dict(info.raw["decode"].get("temporal", {})), scored


def scorer(board: str) -> tuple[Any, Callable[[DecodeSettings], tuple[float, dict, dict]]]:
    """The board's packaged model info, and a function scoring decode settings on its validation scenes: the mean
    F1 of the turn-taking and walking sets, and each set's scores (the network's outputs cached next to the scenes)."""
    info, _, scored_sets = set_scorer(board, [f"data/scenes/val-turns-{board}", f"data/scenes/val-walk-{board}"])

    def scored(st: DecodeSettings) -> tuple[float, dict, dict]:
        turns, walk = scored_sets(st)
        return round((turns["f1"] + walk["f1"]) / 2, 4), turns, walk

    return info, scored


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    newest = "--newest" in args
    args = [a for a in args if a != "--newest"]
    tries = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--try"]
    args = [a for i, a in enumerate(args) if a != "--try" and (i == 0 or args[i - 1] != "--try")]
    if len(args) != 1 or args[0] not in BOARDS:
        raise SystemExit("usage: python -m benchmarks.board_decode BOARD [--newest | --try JSON ...] "
                         f"(BOARD one of {', '.join(BOARDS)})")
    board = args[0]
    info, scored = scorer(board)
    if tries:
        base = DecodeSettings.from_dict(info.raw["decode"].get("temporal", {}))
        print(f"| {board} | mean F1 | turns F1 / precision / pick-up p90 s | walk F1 / precision / moving error ° | "
              "walk id sw./turn |\n| --- | ---: | --- | --- | ---: |")
        for text in ["{}", *tries]:
            mean, turns, walk = scored(dc.replace(base, **json.loads(text)))
            print(f"| {'shipped' if text == '{}' else '`' + text + '`'} | {mean} | {turns['f1']} / "
                  f"{turns['precision']} / {turns['pickup_p90_s']} | {walk['f1']} / {walk['precision']} / "
                  f"{walk['doa_error_moving_deg']} | {walk['id_switches_per_turn']} |", flush=True)
        return 0
    if newest:
        print(f"| {board} | mean F1 | turns F1 / precision / linger s | walk F1 / precision / error ° / moving error ° |\n"
              "| --- | ---: | --- | --- |")
        for name, st in newest_variants(DecodeSettings.from_dict(info.raw["decode"].get("temporal", {}))).items():
            mean, turns, walk = scored(st)
            print(f"| {name} | {mean} | {turns['f1']} / {turns['precision']} / "
                  f"{turns['linger_mean_s']} | {walk['f1']} / {walk['precision']} / {walk['doa_error_mean_deg']} / "
                  f"{walk['doa_error_moving_deg']} |", flush=True)
        return 0
    print(f"| {board}: birth / keep / one-window confirm | mean F1 | turns F1 / precision / linger s | "
          f"walk F1 / precision / moving error ° |\n| --- | ---: | --- | --- |")
    best = None
    for birth, keep, cc in itertools.product(*GRID.values()):
        st = dc.replace(DecodeSettings(), birth_threshold=birth, keep_threshold=keep,
                        seed_threshold=min(DecodeSettings().seed_threshold, keep), confirm_confidence=cc)
        mean, turns, walk = scored(st)
        print(f"| {birth} / {keep} / {cc} | {mean} | {turns['f1']} / {turns['precision']} / {turns['linger_mean_s']} | "
              f"{walk['f1']} / {walk['precision']} / {walk['doa_error_moving_deg']} |", flush=True)
        if best is None or mean > best[0]:
            best = (mean, st)
    chosen = {k: getattr(best[1], k) for k in ("birth_threshold", "seed_threshold", "keep_threshold",
                                                "confirm_confidence")}
    print(f"\nchosen for {board} (decode.temporal): {json.dumps(chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
