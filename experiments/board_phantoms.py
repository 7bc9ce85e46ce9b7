"""Phantom talkers on a board's streamed windows: what they are, and decode variants against them
(docs/experiments/board-phantoms.md, issue 28).

    python -m experiments.board_phantoms outputs --set val-3s [--boards B,...]   # network outputs, cached
    python -m experiments.board_phantoms anatomy --set val-3s                     # what the false talkers are
    python -m experiments.board_phantoms sweep --set val-3s --variant "NAME:key=value,key=value" ...
    python -m experiments.board_phantoms choose [--grid hold|confirm] [--boards B,...]   # the rule, on validation
    python -m experiments.board_phantoms test --set test-3s --boards B --variant "NAME:..."   # once, after

A set is ``data/<set>-<board>`` (``train_tf.simulate windows --array B --set window_s=3.0``). ``outputs`` keeps the
float network's outputs on every 0.5 s sub-window (0.1 s apart, as ``train_tf.evaluate`` runs longer windows) in
``out/phantoms/<set>-<board>.npy``. The others replay the board's shipped temporal decode over them with
``train_tf.evaluate``'s own code (:func:`train_tf.evaluate.device_decode.temporal_decode_all`: the sidecar's
``decode.temporal``, SRP-PHAT refinement and newest-hop peaks),
and score the talkers listed after the last sub-window against the window's talkers (the project's one matching
rule, 20°), as ``train_tf.evaluate`` does. A variant's keys override the sidecar's; ``shipped`` is the sidecar as it
is.
"""

from __future__ import annotations

import argparse
import json
import sys
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

BOARDS = ("respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "matrix-creator", "minidsp-uma8")
OUT = Path("out/phantoms")
HIT_DEG = 20.0


def cache_path(set_name: str, board: str) -> Path:
    return OUT / f"{set_name}-{board}.npy"


def load_set(set_name: str, board: str) -> dict[str, np.ndarray]:
    from train_tf.simulate import load_windows

    return load_windows(Path("data") / f"{set_name}-{board}")


def make_outputs(set_name: str, board: str) -> None:
    from train_tf.evaluate.outputs import window_outputs

    path = cache_path(set_name, board)
    if path.exists():
        return
    data = load_set(set_name, board)
    per, _ = window_outputs(Path("models") / board, data["audio"], "model.weights.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, per.astype(np.float32))
    print(f"{board}: {per.shape} -> {path}", file=sys.stderr)


# --- replay ------------------------------------------------------------------------------------------------------

_EVIDENCE: dict[int, list[tuple[int, float]]] = {}  # id(track) -> [(sub-window, confidence of its evidence)]
_STEP = [0]


def _instrument() -> None:
    """Log every track's evidence per sub-window (``_Track.update`` wrapped; experiments only)."""
    from edge_msl import temporal

    if getattr(temporal._Track.update, "_logged", False):
        return
    plain = temporal._Track.update

    def update(self, det, t_s, s, lag_s=None):  # noqa: ANN001
        _EVIDENCE.setdefault(id(self), []).append((_STEP[0], float(det.confidence)))
        return plain(self, det, t_s, s, lag_s)

    update._logged = True  # type: ignore[attr-defined]
    temporal._Track.update = update


def _replay_chunk(job: tuple[str, str, dict[str, Any], list[int], bool]) -> list[dict[str, Any]]:
    """Decode windows ``rows`` of a set as ``train_tf.evaluate`` does (:func:`temporal_decode_all`); per window the
    scores of the listed talkers and (``anatomy``) their tracks' story."""
    from edge_msl.temporal import DecodeSettings
    from edge_msl.truth import match
    from train_tf.evaluate.device_decode import temporal_decode_all, temporal_settings
    from train_tf.evaluate.scoring import score

    set_name, board, overrides, rows, anatomy = job
    if anatomy:
        _instrument()
    params = json.loads((Path("models") / board / "params.json").read_text())
    st = DecodeSettings.from_dict(overrides, base=temporal_settings(params))
    data = load_set(set_name, board)
    per = np.load(cache_path(set_name, board), mmap_mode="r")
    n_sub = per.shape[1]
    stories: dict[int, dict[str, Any]] = {}

    def on_step(i: int, j: int, dec: Any, talkers: list[Any]) -> None:
        story = stories.setdefault(i, {"born": {}})
        _STEP[0] = j + 1  # the next sub-window's updates
        for t in talkers:
            story["born"].setdefault(t.id, j)
        if j == n_sub - 1:  # the listed talkers' tracks, then a clean log for the next window's decoder
            tracks = {tr.number: tr for tr in dec._tracks if tr.number is not None}
            story["tracks"] = [(t, list(_EVIDENCE.get(id(tracks.get(t.id)), [])), tracks.get(t.id)) for t in talkers]
            _EVIDENCE.clear()
            _STEP[0] = 0

    _EVIDENCE.clear()
    _STEP[0] = 0
    dets, _, _ = temporal_decode_all(np.asarray(per[rows]), data["audio"][rows], params, settings=st,
                                     on_step=on_step)
    scored = score([[d.azimuth_deg for d in ds] for ds in dets], None, data["azimuth_deg"][rows],
                   data["distance_m"][rows], HIT_DEG)
    out = []
    for k, (i, r) in enumerate(zip(rows, scored)):
        rec: dict[str, Any] = {"n_true": r["n_true"], "n_est": r["n_est"], "tp": r["tp"], "err": r["err"],
                               "rt60": float(data["rt60_s"][i])}
        if anatomy:
            az = data["azimuth_deg"][i]
            ok = np.isfinite(az)
            true_az, level = az[ok], data["level_db"][i][ok]
            born = stories[k]["born"]
            hit = {e for e, _, err in match([d.azimuth_deg for d in dets[k]], list(true_az), HIT_DEG) if err <= HIT_DEG}
            rec["story"] = []
            for e, (t, ev, tr) in enumerate(stories[k]["tracks"]):
                conf = [c for _, c in ev]
                last = [c for j, c in ev if j >= n_sub - 10]
                near = float(np.min(np.abs((t.azimuth_deg - true_az + 180.0) % 360.0 - 180.0))) if len(true_az) else None
                rec["story"].append({
                    "hit": e in hit, "offset_deg": near, "listed_for": n_sub - born[t.id],
                    "first_sub": born[t.id], "evidence_windows": len(conf), "max_conf": max(conf, default=0.0),
                    "mean_conf": float(np.mean(conf)) if conf else 0.0,
                    "first_evidence": ev[0][0] if ev else None,
                    "mean_life": float(np.sum(conf)) / (n_sub - ev[0][0]) if ev else 0.0,
                    "last10_windows": len(last), "last10_mean": float(np.mean(last)) if last else 0.0,
                    "hits_birth": int(sum(c >= st.birth_threshold for c in conf)), "active": t.active,
                    "confidence": t.confidence, "walking": bool(tr.is_walking) if tr is not None else None,
                    "true_level_db": [float(v) for v in level],
                })
        out.append(rec)
    return out


def replay(set_name: str, board: str, overrides: dict[str, Any], anatomy: bool = False,
           workers: int = 2) -> list[dict[str, Any]]:
    n = len(np.load(cache_path(set_name, board), mmap_mode="r"))
    chunks = [list(range(k, n, workers * 4)) for k in range(workers * 4)]
    with get_context("fork").Pool(workers) as pool:
        parts = pool.map(_replay_chunk, [(set_name, board, overrides, c, anatomy) for c in chunks])
    rows: list[dict[str, Any] | None] = [None] * n
    for c, part in zip(chunks, parts):
        for i, r in zip(c, part):
            rows[i] = r
    return rows  # type: ignore[return-value]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    def cell(sel: list[dict[str, Any]]) -> tuple[int, int, int, list[float]]:
        return (sum(r["tp"] for r in sel), sum(r["n_true"] for r in sel), sum(r["n_est"] for r in sel),
                [e for r in sel for e in r["err"]])

    res: dict[str, float] = {}
    tp, nt, ne, err = cell([r for r in rows if 1 <= r["n_true"] <= 3])
    res["f1_13"] = 2 * tp / max(1, nt + ne)
    tp, nt, ne, err4 = cell(rows)
    res["f1_14"] = 2 * tp / max(1, nt + ne)
    res["err"] = float(np.mean(err4)) if err4 else float("nan")
    for k in (1, 2, 3):
        tp, nt, ne, _ = cell([r for r in rows if r["n_true"] == k])
        res[f"p{k}"] = tp / max(1, ne)
        res[f"r{k}"] = tp / max(1, nt)
    return res


# --- commands ----------------------------------------------------------------------------------------------------

def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, body = text.partition(":")
    keys: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        k, _, v = item.partition("=")
        keys[k.strip()] = json.loads(v) if v.strip() not in ("true", "false") else v.strip() == "true"
    return name, keys


def cmd_anatomy(set_name: str, boards: list[str], workers: int) -> None:
    print("| board | single-talker windows | listed | false | false: offset from the talker (median, p10-p90) | "
          "listed for (sub-windows, median) | evidence windows / of them at birth level (median) | "
          "mean evidence: false / true (median) | last 10 sub-windows' evidence: false / true (median) |")
    print("| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |")
    for b in boards:
        rows = replay(set_name, b, {}, anatomy=True, workers=workers)
        single = [r for r in rows if r["n_true"] == 1]
        st = [s for r in single for s in r["story"]]
        false = [s for s in st if not s["hit"]]
        true = [s for s in st if s["hit"]]

        def med(v: list[float]) -> str:
            return f"{np.median(v):.2f}" if v else "-"

        offs = [s["offset_deg"] for s in false]
        print(f"| `{b}` | {len(single)} | {len(st)} | {len(false)} | "
              f"{med(offs)} ({np.percentile(offs, 10):.0f}-{np.percentile(offs, 90):.0f}) | "
              f"{med([s['listed_for'] for s in false])} / {med([s['listed_for'] for s in true])} | "
              f"{med([s['evidence_windows'] for s in false])} / {med([s['hits_birth'] for s in false])} vs "
              f"{med([s['evidence_windows'] for s in true])} / {med([s['hits_birth'] for s in true])} | "
              f"{med([s['mean_conf'] for s in false])} / {med([s['mean_conf'] for s in true])} | "
              f"{med([s['last10_mean'] for s in false])} / {med([s['last10_mean'] for s in true])} |"
              if false else f"| `{b}` | {len(single)} | {len(st)} | 0 | | | | | |")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"anatomy-{set_name}-{b}.json").write_text(json.dumps(rows))


def cmd_sweep(set_name: str, boards: list[str], variants: list[str], workers: int) -> None:
    print("| board | variant | F1 1-3 | F1 1-4 | single-talker precision | 2-talker P / R | 3-talker recall | error° |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for b in boards:
        for text in ["shipped:", *variants]:
            name, keys = parse_variant(text)
            r = summary(replay(set_name, b, keys, workers=workers))
            print(f"| `{b}` | {name} | {r['f1_13']:.3f} | {r['f1_14']:.3f} | {r['p1']:.3f} | {r['p2']:.3f} / "
                  f"{r['r2']:.3f} | {r['r3']:.3f} | {r['err']:.2f} |", flush=True)


GRIDS = {
    "hold": [("shipped", {})] + [(f"hold {h:g}{', keep 0.1' if k else ''}",
                                  {"hold_mean": h, **({"keep_threshold": 0.1} if k else {})})
                                 for h in (0.2, 0.25, 0.3) for k in (False, True)],
    "confirm": [("shipped", {})] + [(f"confirm_mean {c:g}", {"confirm_mean": c}) for c in (0.35, 0.4, 0.45)] +
               [("confirm_mean 0.4, hold 0.25", {"confirm_mean": 0.4, "hold_mean": 0.25})],
}
"""The candidates of the rule: the shipped sidecar; ``hold``: with ``hold_mean`` 0.2 / 0.25 / 0.3 (``hold_alpha`` 0.2),
each with the sidecar's keep threshold and with 0.1; ``confirm``: with a higher ``confirm_mean`` (the mean evidence
a quiet new talker needs over ``confirm_mean_windows``; every board has 0.3 over 3 windows, ``uca8-r10`` 0.4 over 2)."""
MARGIN, WORST = 0.003, 0.005
"""The rule: a candidate replaces the shipped decode where the mean of its three validation F1s is at least MARGIN
higher and none of the three is more than WORST lower."""


def dynamic_scores(board: str, grid: list[tuple[str, dict[str, Any]]]) -> list[tuple[dict, dict]]:
    """Turn-taking and walking validation scenes of the board (``benchmarks.board_decode``'s sets and scoring)."""
    import dataclasses as dc

    from benchmarks.board_decode import set_scorer

    _, base, scored = set_scorer(board, [f"data/scenes/val-turns-{board}", f"data/scenes/val-walk-{board}"])
    return [tuple(scored(dc.replace(base, **keys))) for _, keys in grid]


def cmd_choose(set_name: str, boards: list[str], workers: int, grid_name: str) -> None:
    grid = GRIDS[grid_name]
    print("| board | candidate | mean of the three F1 | streamed 3 s: F1 1-3 / single-talker P / 3-talker R | "
          "turns: F1 / P / linger s / pick-up p90 s | walk: F1 / P / moving error° / id sw. | chosen |")
    print("| --- | --- | ---: | --- | --- | --- | --- |")
    for b in boards:
        dyn = dynamic_scores(b, grid)
        rows = []
        for (name, keys), (turns, walk) in zip(grid, dyn):
            r = summary(replay(set_name, b, keys, workers=workers))
            f1s = (r["f1_13"], turns["f1"], walk["f1"])
            rows.append((name, keys, f1s, r, turns, walk))
        ship = rows[0][2]
        ok = [x for x in rows[1:] if np.mean(x[2]) >= np.mean(ship) + MARGIN - 1e-9 and
              all(a >= c - WORST - 1e-9 for a, c in zip(x[2], ship))]
        best = max(ok, key=lambda x: np.mean(x[2]))[0] if ok else "shipped"
        for name, keys, f1s, r, turns, walk in rows:
            print(f"| `{b}` | {name} | {np.mean(f1s):.4f} | {r['f1_13']:.3f} / {r['p1']:.3f} / {r['r3']:.3f} | "
                  f"{turns['f1']:.3f} / {turns['precision']:.3f} / {turns['linger_mean_s']} / {turns['pickup_p90_s']} | "
                  f"{walk['f1']:.3f} / {walk['precision']:.3f} / {walk['doa_error_moving_deg']} / "
                  f"{walk['id_switches_per_turn']} | {'**chosen**' if name == best else ''} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("outputs", "anatomy", "sweep", "choose", "test"))
    ap.add_argument("--set", default="val-3s", help="data/<set>-<board> (default val-3s)")
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--variant", action="append", default=[], help='"NAME:key=value,..." (decode.temporal keys)')
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="hold", help="choose: the candidates (default hold)")
    args = ap.parse_args(argv)
    boards = [b for b in args.boards.split(",") if b]
    if args.command == "outputs":
        for b in boards:
            make_outputs(args.set, b)
    elif args.command == "anatomy":
        cmd_anatomy(args.set, boards, args.workers)
    elif args.command == "choose":
        cmd_choose(args.set, boards, args.workers, args.grid)
    else:  # sweep, and test (the same table on a held-out set, run once after the choice)
        cmd_sweep(args.set, boards, args.variant, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
