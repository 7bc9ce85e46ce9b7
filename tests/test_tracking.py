"""edge_msl.tracking: stable ids through jitter and dropouts, quick pick-up, tracks that end,
ids that never repeat, wrap-around at 0/360 degrees, settings validated by name."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_msl.regions import Detection, angular_distance_deg
from edge_msl.tracking import Tracker, TrackerConfigError, TrackerSettings

HOP_S = 0.1


def det(az, conf=0.9, dist=1.5, region=0):
    return Detection(az % 360.0, dist, conf, region)


def run(tracker, frames, t0=0.5):
    """Feed a list of per-window detection lists; return the published tracks of each window."""
    return [tracker.update(d, t0 + k * HOP_S) for k, d in enumerate(frames)]


@settings(max_examples=60, deadline=None)
@given(az=st.floats(0, 359.99), jitter=st.lists(st.floats(-8, 8), min_size=40, max_size=40),
       drops=st.lists(st.booleans(), min_size=40, max_size=40))
def test_one_talker_keeps_one_id_through_jitter_and_short_dropouts(az, jitter, drops):
    s = TrackerSettings()
    # dropouts no longer than the silence timeout allows (at most 3 windows in a row here)
    frames, run_len = [], 0
    for k in range(40):
        drop = drops[k] and run_len < 3 and 2 <= k
        run_len = run_len + 1 if drop else 0
        frames.append([] if drop else [det(az + jitter[k])])
    out = run(Tracker(s), frames)
    ids = {src.id for window in out for src in window}
    assert ids == {1}
    for window in out[s.confirm_hits:]:
        assert len(window) == 1
        assert float(angular_distance_deg(window[0].azimuth_deg, az)) <= 8.0 + 1e-6
        assert 0.0 <= window[0].azimuth_deg < 360.0


@settings(max_examples=40, deadline=None)
@given(az=st.floats(0, 359.99), offset=st.floats(-10, 10))
def test_wrap_around_zero_keeps_the_id(az, offset):
    """A talker at 359 deg seen at 1 deg is the same talker (circular distance, not |a - b|)."""
    frames = [[det(-2.0 + offset)], [det(2.0 + offset)]] * 10
    out = run(Tracker(), frames)
    assert {src.id for w in out for src in w} == {1}
    mean_dir = out[-1][0].azimuth_deg
    assert float(angular_distance_deg(mean_dir, offset % 360.0)) < 3.0


@settings(max_examples=40, deadline=None)
@given(rotation=st.floats(0, 360), seed=st.integers(0, 1000))
def test_rotating_every_detection_rotates_the_tracks_and_keeps_the_ids(rotation, seed):
    import random

    rnd = random.Random(seed)
    base = [[det(rnd.choice([30, 150, 270]) + rnd.uniform(-5, 5)) for _ in range(rnd.randint(0, 3))]
            for _ in range(30)]
    rotated = [[det(d.azimuth_deg + rotation, d.confidence) for d in w] for w in base]
    a, b = run(Tracker(), base), run(Tracker(), rotated)
    for wa, wb in zip(a, b):
        assert [s.id for s in wa] == [s.id for s in wb]
        for sa, sb in zip(wa, wb):
            assert float(angular_distance_deg((sa.azimuth_deg + rotation) % 360, sb.azimuth_deg)) < 1e-6


def test_a_track_ends_after_the_silence_timeout_and_its_id_is_not_reused():
    s = TrackerSettings(end_after_s=0.5)
    tr = Tracker(s)
    frames = [[det(90)]] * 10 + [[]] * 10 + [[det(90)]] * 5
    out = run(tr, frames)
    last_hit = 0.5 + 9 * HOP_S
    for k, w in enumerate(out[10:20]):
        t = 0.5 + (10 + k) * HOP_S
        if t - last_hit < s.end_after_s - 1e-9:
            assert [x.id for x in w] == [1] and not w[0].active  # held, marked inactive
        else:
            assert w == []  # ended: not held forever (ODAS issue 206)
    assert {x.id for w in out[20:] for x in w} == {2}


def test_held_confidence_decays_and_position_does_not_drift():
    tr = Tracker(TrackerSettings(end_after_s=1.0))
    out = run(tr, [[det(45, 0.9)]] * 5 + [[]] * 6)
    held = [w[0] for w in out[5:]]
    assert all(h.azimuth_deg == pytest.approx(held[0].azimuth_deg) for h in held)
    assert all(b.confidence < a.confidence for a, b in zip(held, held[1:]))


@pytest.mark.parametrize("conf,delay", [(0.5, 1), (0.95, 0)])
def test_second_talker_is_published_after_k_of_n_windows_or_at_once_if_confident(conf, delay):
    s = TrackerSettings(confirm_hits=2, confirm_windows=3, confirm_confidence=0.7)
    frames = [[det(10)]] * 5 + [[det(10), det(200, conf)]] * 5
    out = run(Tracker(s), frames)
    first_with_two = next(k for k, w in enumerate(out) if len(w) == 2)
    assert first_with_two == 5 + delay
    assert [x.id for x in out[-1]] == [1, 2]


@pytest.mark.parametrize("k,n", [(1, 1), (2, 3), (3, 5)])
def test_isolated_false_alarms_are_never_published(k, n):
    s = TrackerSettings(confirm_hits=k, confirm_windows=n, confirm_confidence=1.0)
    # one false alarm every n windows at a new place: k >= 2 never confirms it
    frames = [[det(100)] + ([det(37 * j)] if j % n == 0 else []) for j in range(1, 40)]
    out = run(Tracker(s), frames)
    ids = {x.id for w in out for x in w}
    assert (ids == {1}) == (k >= 2)


def test_two_tracks_that_meet_merge_into_the_older_id():
    tr = Tracker(TrackerSettings(merge_deg=12.0, gate_deg=20.0))
    out = run(tr, [[det(0), det(40)]] * 4 + [[det(0), det(36 - 5 * k)] for k in range(7)] + [[det(0)]] * 3)
    assert [x.id for x in out[3]] == [1, 2]
    assert [x.id for x in out[-1]] == [1] and out[-1][0].active
    assert float(angular_distance_deg(out[-1][0].azimuth_deg, 0.0)) < 3.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(0, 359.99), max_size=4), min_size=1, max_size=60))
def test_ids_are_unique_increasing_and_monotonic_across_resets(frames):
    tr = Tracker()
    seen_order = []
    for k, azs in enumerate(frames):
        if k == len(frames) // 2:
            tr.reset()
        for src in tr.update([det(a) for a in azs], 0.5 + k * HOP_S):
            if src.id not in seen_order:
                seen_order.append(src.id)
            assert 0.0 <= src.azimuth_deg < 360.0 and 0.0 <= src.confidence <= 1.0
    assert seen_order == sorted(seen_order) and len(set(seen_order)) == len(seen_order)
    assert tr.next_id == (max(seen_order) + 1 if seen_order else 1)


def test_smoothing_reduces_jitter():
    import random

    rnd = random.Random(3)
    truth = 123.0
    frames = [[det(truth + rnd.gauss(0, 4))] for _ in range(200)]
    raw_err = [abs(f[0].azimuth_deg - truth) for f in frames[10:]]
    out = run(Tracker(), frames)
    trk_err = [float(angular_distance_deg(w[0].azimuth_deg, truth)) for w in out[10:]]
    rms = lambda v: math.sqrt(sum(x * x for x in v) / len(v))  # noqa: E731
    assert rms(trk_err) < 0.85 * rms(raw_err)


def test_time_going_backwards_is_refused():
    tr = Tracker()
    tr.update([det(10)], 1.0)
    with pytest.raises(ValueError, match="time went backwards"):
        tr.update([det(10)], 0.9)


@pytest.mark.parametrize("cfg,key", [
    ({"gate_deg": 0}, "gate_deg"), ({"gate_deg": 200}, "gate_deg"), ({"confirm_hits": 4, "confirm_windows": 3},
                                                                     "confirm_hits"),
    ({"confirm_windows": 0}, "confirm_windows"), ({"end_after_s": -1}, "end_after_s"),
    ({"direction_alpha": 0}, "direction_alpha"), ({"distance_alpha": 1.5}, "distance_alpha"),
    ({"confirm_hits": True}, "confirm_hits"), ({"end_after_s": "1"}, "end_after_s"),
])
def test_bad_settings_name_the_key_and_the_allowed_values(cfg, key):
    with pytest.raises(TrackerConfigError, match=rf"tracking\.{key} = .* allowed: "):
        TrackerSettings.from_dict(cfg)


def test_unknown_setting_is_refused_with_the_allowed_keys():
    with pytest.raises(TrackerConfigError, match=r"unknown tracking key\(s\) \['gate'\]; allowed: "):
        TrackerSettings.from_dict({"gate": 10})
    assert TrackerSettings.from_dict(TrackerSettings().to_dict()) == TrackerSettings()
