"""Round 6 pick (rounds 2-5's step 1) for one board: candidates N (this round's export) and H (N averaged with the
shipped weights), each with the shipped decode section, its threshold by the README rule (the highest threshold whose
val2 F1 is within 0.01 of the best, sweep 0.25-0.5, suppression 20) and its fine_stretch by --fit-stretch
(1, 1.05, ..., 1.5) on data/val2-<b>; then a plain val2 evaluation. Winner: the higher val2 F1; within 0.005 the lower
mean error. The train_tf.evaluate CLI's own main() in one process, the network's outputs cached per weights and set.
It writes only under runs/br6/cand/BOARD/ and ships nothing; the rule itself is benchmarks/board_choice.py.
Checked on the shipped respeaker-4mic model as N (H then equals it): threshold 0.3, fine_stretch 1.3 (the shipped
ones), val2 F1 0.8260, mean error 4.08 deg, the figures board_choice gives for it.

    python experiments/boards_round6/pick.py BOARD RUN    # RUN exported to runs/br6/exp/RUN; shipped copy in runs/br6/old/BOARD
"""
import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
from pathlib import Path

import train_tf.evaluate.run as R
from train_tf.evaluate import cli

_orig = R.window_outputs
_cache = {}


def cached(run_dir, audio, weights, batch=64, hop_s=0.1, symmetry=None):
    w = Path(run_dir) / weights
    key = (hashlib.sha1(w.read_bytes()).hexdigest(), hashlib.sha1(audio.tobytes()).hexdigest(), symmetry)
    if key not in _cache:
        _cache[key] = _orig(run_dir, audio, weights, batch, hop_s, symmetry)[0]
    from train_tf.evaluate.outputs import params_of
    return _cache[key], params_of(run_dir)


R.window_outputs = cached


def run_cli(args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli.main(args)
    return buf.getvalue()


def prep(cdir: Path, shipped: dict, threshold=None, stretch=None):
    p = json.loads((cdir / "params.json").read_text())
    dec = dict(shipped["decode"])
    if threshold is not None:
        dec["threshold"] = threshold
    p["decode"] = dec
    p["input_scaling"] = shipped["input_scaling"]
    p["regions"] = {**p["regions"], "min_separation_deg": dec["min_separation_deg"]}
    if stretch is not None:
        p["regions"]["fine_stretch"] = stretch
    (cdir / "params.json").write_text(json.dumps(p, indent=1))


def main():
    board, run = sys.argv[1], sys.argv[2]
    base = Path("runs/br6/cand") / board
    old = Path("runs/br6/old") / board
    shipped = json.loads((old / "params.json").read_text())
    val2 = f"data/val2-{board}"
    n = base / "N"
    if not n.exists():
        shutil.copytree(Path("runs/br6/exp") / run, n)
    prep(n, shipped)
    h = base / "H"
    if not h.exists():
        from train_tf.average import average
        average(h, [n, old])
    prep(h, shipped)
    res = {}
    for name, cdir in (("N", n), ("H", h)):
        out = run_cli(["--model", str(cdir), "--data", val2, "--out", "/tmp/br6x", "--sweep",
                       "0.25,0.3,0.35,0.4,0.45,0.5/20"])
        rows = [(float(m[0]), float(m[1])) for m in re.findall(r"^\| ([0-9.]+) \| model's \| 20 \| [0-9.]+ \| [0-9.]+ \| "
                                                                r"([0-9.]+) \|", out, re.M)]
        best = max(f for _, f in rows)
        thr = max(t for t, f in rows if f >= best - 0.01)
        prep(cdir, shipped, threshold=thr)
        out2 = run_cli(["--model", str(cdir), "--data", val2, "--out", "/tmp/br6x", "--fit-stretch",
                        "1,1.05,1.1,1.15,1.2,1.25,1.3,1.35,1.4,1.45,1.5"])
        st = float(re.search(r"at fine_stretch ([0-9.]+)", out2).group(1))
        prep(cdir, shipped, threshold=thr, stretch=st)
        run_cli(["--model", str(cdir), "--data", val2, "--out", str(cdir / "val2"), "--baselines", "none"])
        a = json.loads((cdir / "val2" / "results.json").read_text())["cells"]["model"]["all"]
        res[name] = {"threshold": thr, "fine_stretch": st, "f1": a["f1"], "err_mean": a["err_mean"],
                     "sweep": rows}
        print(f"{board} {name}: sweep {rows}; threshold {thr}, fine_stretch {st}: val2 F1 {a['f1']:.4f}, "
              f"mean error {a['err_mean']:.2f}", flush=True)
    fn, fh = res["N"]["f1"], res["H"]["f1"]
    if abs(fn - fh) <= 0.005:
        win = "N" if res["N"]["err_mean"] <= res["H"]["err_mean"] else "H"
    else:
        win = "N" if fn > fh else "H"
    res["winner"] = win
    (base / "pick.json").write_text(json.dumps(res, indent=1))
    print(f"{board}: winner {win}")


if __name__ == "__main__":
    main()
