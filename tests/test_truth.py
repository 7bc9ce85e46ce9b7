"""edge_msl.truth: the one matching rule (exact, checked against brute force) and the scores users
read (per window F1 with voice activity, per turn pick-up, linger and id switches), on hand-made
messages whose right answers are worked out in the comments."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_msl.regions import angular_distance_deg
from edge_msl.truth import TrueSource, match, score, score_parts, summarize


def brute(est, true, radius):
    """Best (hits, -error) over every one-to-one assignment."""
    best = (0, 0.0)
    n = min(len(est), len(true))
    for k in range(n + 1):
        for es in itertools.permutations(range(len(est)), k):
            for ts in itertools.combinations(range(len(true)), k):
                d = [float(angular_distance_deg(est[e], true[t])) for e, t in zip(es, ts)]
                if all(x <= radius for x in d):
                    best = max(best, (k, -sum(d)))
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 359.9), max_size=5), st.lists(st.floats(0, 359.9), max_size=4))
def test_match_makes_the_most_hits_with_the_least_error(est, true):
    pairs = match(est, true, 20.0)
    hits = [p for p in pairs if p[2] <= 20.0]
    want = brute(est, true, 20.0)
    assert len(hits) == want[0]
    assert -sum(p[2] for p in hits) == pytest.approx(want[1], abs=1e-6)
    assert len({p[0] for p in pairs}) == len(pairs) == min(len(est), len(true))


def test_match_does_not_let_a_far_estimate_take_a_near_ones_source():
    hits = [p for p in match([12.0, 203.0, 300.0], [10.0, 100.0, 200.0], 20.0) if p[2] <= 20.0]
    assert sorted((e, t) for e, t, _ in hits) == [(0, 0), (1, 2)]


def msg(t, *azs, ids=None):
    ids = ids or list(range(1, len(azs) + 1))
    return {"t_s": t, "sources": [{"azimuth_deg": a, "id": i, "active": True} for a, i in zip(azs, ids)]}


def test_a_stopped_talker_still_listed_is_a_false_alarm_and_linger():
    """Voice 0-2 s at 90 deg; output at 90 deg until t = 3.0: windows ending at 2.5 s or later hold
    no voice, so 6 outputs (2.5-3.0) are false alarms and the linger beyond the window is 0.5 s."""
    truth = [TrueSource("a", 90.0, 1.0, ((0.0, 2.0),))]
    msgs = [msg(round(0.5 + 0.1 * k, 1), 90.0) for k in range(26)] + \
           [msg(round(3.1 + 0.1 * k, 1)) for k in range(10)]
    s = score(msgs, truth, 0.5)
    assert s["linger_mean_s"] == pytest.approx(0.5)
    # windows ending up to 2.35 s hold >= 0.15 s of voice, 2.4 some (optional), 2.5-3.0 none
    assert s["recall"] == 1.0
    assert s["precision"] == pytest.approx(20 / 26, abs=1e-3)
    assert s["pickup_mean_s"] == 0.0 and s["id_switches_per_turn"] == 0.0


def test_a_talker_gone_within_the_window_lingers_zero():
    truth = [TrueSource("a", 90.0, 1.0, ((0.0, 2.0),))]
    msgs = [msg(round(0.5 + 0.1 * k, 1), 90.0) for k in range(20)] + [msg(round(2.5 + 0.1 * k, 1)) for k in range(15)]
    s = score(msgs, truth, 0.5)
    assert s["linger_mean_s"] == 0.0 and s["precision"] == 1.0


def test_pickup_switches_duplicates_and_a_moving_talker():
    """Talker b starts at 1.0 s: first listed at 1.3 s -> pick-up 0.3 s; its id changes once; a
    second output 5 deg from a is a duplicate; the walker's truth is interpolated on its path."""
    walker = TrueSource("w", 0.0, 1.0, ((0.0, 4.0),), path=((0.0, 0.0), (4.0, 40.0)))
    b = TrueSource("b", 200.0, 1.0, ((1.0, 4.0),))
    msgs = []
    for k in range(36):
        t = round(0.5 + 0.1 * k, 1)
        azs, ids = [walker.azimuth_at(t)], [1]
        if t >= 1.3:
            azs.append(200.0)
            ids.append(2 if t < 2.0 else 3)
        if t == 3.0:
            azs.append(walker.azimuth_at(t) + 5.0)
            ids.append(9)
        msgs.append(msg(t, *azs, ids=ids))
    p = score_parts(msgs, [walker, b], 0.5)
    assert p["duplicates"] == 1 and p["false_alarms"] == 1
    s = summarize([p])
    assert s["doa_error_moving_deg"] == pytest.approx(0.0, abs=1e-6)
    assert s["turns"] == 2 and s["id_switches_per_turn"] == pytest.approx(0.5)
    assert max(p["pickup"]) == pytest.approx(0.3)
    assert walker.speed_deg_s(2.0) == pytest.approx(10.0)


def test_pauses_inside_a_turn_are_not_required():
    """Voice 0-1 s and 2-3 s in one turn 0-3 s: windows ending 1.5-2.0 hold no voice, so an empty
    output there is no miss and a listed talker is a false alarm."""
    truth = [TrueSource("a", 10.0, 1.0, ((0.0, 3.0),), voice_s=((0.0, 1.0), (2.0, 3.0)))]
    msgs = [msg(round(0.5 + 0.1 * k, 1), *([] if 1.5 <= 0.5 + 0.1 * k <= 2.05 else [10.0])) for k in range(26)]
    s = score(msgs, truth, 0.5)
    assert s["recall"] == 1.0 and s["precision"] == 1.0
