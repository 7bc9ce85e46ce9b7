"""benchmarks.board_choice: the boards' ship rule and the paired bootstrap, on a few made-up windows."""

import numpy as np

from benchmarks.board_choice import bootstrap, decide, stats


def diff(**ci):
    d = {m: {"mean": 0.0, "ci95": [-0.01, 0.01]} for m in ("f1", "p1", "r3", "err")}
    for m, v in ci.items():
        d[m] = {"mean": sum(v) / 2, "ci95": list(v)}
    return d


def test_rule():
    assert decide(diff(f1=(0.001, 0.02)))["ship"]
    assert decide(diff(err=(-0.2, -0.01)))["ship"]
    assert not decide(diff())["ship"]  # better beyond the interval on nothing
    assert not decide(diff(f1=(0.001, 0.02), r3=(-0.03, -0.001)))["ship"]
    assert decide(diff(err=(-0.2, -0.01), p1=(-0.03, -0.001)))["worse_beyond_interval"] == ["p1"]
    assert not decide(diff(f1=(0.001, 0.02), err=(0.01, 0.2)))["ship"]  # a higher error is worse


def windows(rng, n=60):
    ns = rng.integers(1, 5, n)
    tp = rng.integers(0, ns + 1)
    ne = tp + rng.integers(0, 2, n)
    es = rng.uniform(0, 5, n) * tp
    return (tp, ns.copy(), ne, es, tp.copy()), ns


def test_bootstrap():
    rng = np.random.default_rng(1)
    a, ns = windows(rng)
    same = bootstrap(a, a, ns, 200, 0)
    assert all(v["mean"] == 0 and v["ci95"] == [0.0, 0.0] for v in same.values())
    tp = np.minimum(a[0] + 1, a[1])  # one more talker found in each window where one was missed
    b = (tp, a[1], np.maximum(a[2], tp), a[3], a[4])
    up = bootstrap(a, b, ns, 200, 0)
    assert up["f1"]["ci95"][0] > 0 and up["r3"]["ci95"][0] >= 0
    assert np.isclose(up["f1"]["mean"], stats(*b, ns)["f1"] - stats(*a, ns)["f1"])
    assert bootstrap(a, b, ns, 200, 0) == up  # the seed fixes the draws
