"""edge_msl.temporal on region outputs made by the project's own encoder: a talker who stops leaves
the list at once, a quiet talker is found from several windows, a walker is followed to where they
are at the window's end, a paused talker keeps the id, settings are checked by name; and random
outputs never break its invariants."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_msl.regions import Detection, RegionLayout, angular_distance_deg, encode
from edge_msl.runtime import default_model_path, read_info
from edge_msl.temporal import DecodeConfigError, DecodeSettings, TemporalDecoder, _Track

HOP = 0.1
# the shipped region layout, read as encoded (its decode-only fine_stretch undone)
LAYOUT = RegionLayout.from_dict({**read_info(default_model_path()).layout.to_dict(), "fine_stretch": 1.0})


def outputs(talkers, layout=LAYOUT):
    """Region outputs for [(azimuth_deg, probability), ...] (distance 1.5 m)."""
    y = np.zeros((layout.n_regions, 3))
    for az, p in talkers:
        enc = encode(layout, [az], [1.5])
        r = int(enc.assigned_region[0])
        y[r] = enc.target[r]
        y[r, 0] = p
    return y


def run(frames, decoder=None, t0=0.5):
    dec = decoder or TemporalDecoder(LAYOUT)
    return dec, [dec.update(outputs(f), t0 + k * HOP) for k, f in enumerate(frames)]


def test_a_talker_who_stops_is_unlisted_within_miss_windows():
    frames = [[(40.0, 0.95)]] * 10 + [[]] * 5
    _, out = run(frames)
    assert all(len(o) == 1 for o in out[:10])
    assert len(out[10]) == 1 and not out[10][0].active  # one window of grace (miss_windows 1)
    assert out[11:] == [[]] * 4
    _, strict = run(frames, TemporalDecoder(LAYOUT, DecodeSettings(miss_windows=0)))
    assert strict[10:] == [[]] * 5


def test_a_confident_talker_is_listed_at_once_a_weaker_one_after_confirmation():
    _, out = run([[(100.0, 0.9)]])
    assert len(out[0]) == 1 and out[0][0].id == 1
    _, out = run([[(100.0, 0.5)]] * 3)  # above birth, below confirm_confidence: 2 of 3 windows
    assert [len(o) for o in out] == [0, 1, 1]


def test_a_quiet_talker_is_found_from_the_mean_of_several_windows():
    s = DecodeSettings()
    quiet = 0.5 * (s.confirm_mean + s.birth_threshold)  # never born alone, mean above confirm_mean
    assert s.seed_threshold <= quiet < s.birth_threshold and quiet >= s.confirm_mean
    _, out = run([[(200.0, quiet)]] * 6)
    assert [len(o) for o in out][:s.confirm_mean_windows - 1] == [0] * (s.confirm_mean_windows - 1)
    assert all(len(o) == 1 for o in out[s.confirm_mean_windows - 1:])
    _, out = run([[(200.0, s.confirm_mean - 0.1)]] * 6)  # too weak on average: never listed
    assert out == [[]] * 6


def test_the_fading_tail_of_a_stopped_talker_does_not_bring_them_back():
    s = DecodeSettings()
    tail = 0.5 * (s.seed_threshold + s.confirm_mean)
    _, out = run([[(300.0, 0.95)]] * 8 + [[]] * 2 + [[(300.0, tail)]] * 8)
    assert out[10:] == [[]] * 8


def test_a_walker_is_reported_where_they_are_at_the_windows_end():
    """The network sees a walker where they were half a window ago (outputs at the mid-window
    azimuth): after a few windows the reported azimuth is within 3 deg of the end-of-window one."""
    rate = 40.0  # deg/s, 1 m/s at 1.4 m
    frames, truth = [], []
    for k in range(40):
        t = 0.5 + k * HOP
        frames.append([((10.0 + rate * (t - 0.25)) % 360.0, 0.95)])
        truth.append((10.0 + rate * t) % 360.0)
    _, out = run(frames)
    assert {o[0].id for o in out if o} == {1}  # one talker, one id
    err = [float(angular_distance_deg(o[0].azimuth_deg, tr)) for o, tr in zip(out[15:], truth[15:])]
    assert max(err) <= 3.0, err
    assert out[-1][0].rate_deg_s == pytest.approx(rate, abs=5.0)
    # without the lead (lead_s 0) the same output lags by rate x half a window
    _, lag = run(frames, TemporalDecoder(LAYOUT, DecodeSettings(lead_s=0.0)))
    assert float(angular_distance_deg(lag[-1][0].azimuth_deg, truth[-1])) >= 0.8 * rate * 0.25


def test_the_newest_audio_sharpens_a_walker_seen_through_noisy_windows():
    """Windows place a walker where they were half a window ago, 4 deg noisy; the newest two hops'
    SRP-PHAT peak places them where they were 0.1 s ago, 1 deg noisy. With that peak as a
    measurement (``now_sd_deg``) the reported azimuth is nearer the truth; a peak weaker than
    ``now_min_strength`` (only reverberation in the newest hops) changes nothing."""
    rate = 30.0
    now = dict(now_hops=2, now_lag_s=0.1, now_sd_deg=6.0, now_half_deg=12.0, now_min_rate_deg_s=0.0,
               now_min_strength=0.1)

    def track(settings, strength):
        rng = np.random.default_rng(3)
        dec = TemporalDecoder(LAYOUT, settings)
        reported, errs = [], []
        for k in range(60):
            t = 0.5 + k * HOP
            hop_az = 100.0 + rate * (t - 0.1) + rng.normal(0.0, 1.0)

            def peak(az, half, hop_az=hop_az):
                off = ((hop_az - az + 180.0) % 360.0) - 180.0
                return (hop_az % 360.0, strength) if abs(off) < half else None

            win_az = 100.0 + rate * (t - 0.25) + rng.normal(0.0, 4.0)
            out = dec.update(outputs([(win_az % 360.0, 0.95)]), t, peak=peak)
            reported.append(out[0].azimuth_deg)
            if k >= 15:
                errs.append(float(angular_distance_deg(out[0].azimuth_deg, (100.0 + rate * t) % 360.0)))
        return float(np.mean(errs)), reported

    windows_only, plain = track(DecodeSettings(now_half_deg=0.0), 1.0)
    followed, _ = track(DecodeSettings(**now), 0.5)
    assert followed <= 0.6 * windows_only, (followed, windows_only)
    _, weak = track(DecodeSettings(**now), 0.05)
    assert weak == plain  # too weak a peak is not used at all


def fixed_peak(az_deg, strength):
    """The newest audio's SRP-PHAT peak as :func:`edge_msl.pipeline.newest_peak` gives it: one
    source at ``az_deg`` of this strength, found only by a search that reaches it."""
    def peak(az, half):
        return (az_deg, strength) if angular_distance_deg(az, az_deg) < half else None
    return peak


def test_a_talker_heard_starting_in_the_newest_audio_is_listed_at_once():
    """A talker who has just started: the network's window holds only a little of the voice (0.3,
    under the birth threshold), the newest hops a strong peak. With ``now_confirm_strength`` the
    talker is listed in that first window; a weak peak, or none, leaves the confirmation to the
    mean of several windows."""
    on = DecodeSettings(now_half_deg=12.0, now_confirm_strength=0.08, now_confirm_min=0.25)
    s = DecodeSettings()
    assert s.seed_threshold <= 0.3 < s.birth_threshold

    def first_listed(settings, strength):
        dec = TemporalDecoder(LAYOUT, settings)
        for k, p in enumerate([0.3, 0.5, 0.9, 0.9]):
            if dec.update(outputs([(150.0, p)]), 0.5 + k * HOP, peak=fixed_peak(150.0, strength)):
                return k
        return None

    assert first_listed(on, 0.12) == 0
    assert first_listed(on, 0.05) == first_listed(s, 0.12) > 0
    assert first_listed(dataclasses.replace(on, now_confirm_min=0.35), 0.12) > 0


def test_a_still_talker_keeps_a_long_average():
    rng = np.random.default_rng(0)
    frames = [[((50.0 + rng.normal(0, 3.0)) % 360.0, 0.95)] for _ in range(60)]
    _, out = run(frames)
    err = [float(angular_distance_deg(o[0].azimuth_deg, 50.0)) for o in out[20:]]
    assert np.mean(err) < 1.5  # a third of one window's scatter, or less
    assert all(abs(o[0].rate_deg_s) < 5.0 for o in out[20:])


def test_a_paused_talker_keeps_the_id_within_resume_s_and_gets_a_new_one_after():
    s = DecodeSettings()
    n_short = int(round(0.5 * s.resume_s / HOP))
    n_long = int(round(1.5 * s.resume_s / HOP))
    _, out = run([[(120.0, 0.95)]] * 5 + [[]] * n_short + [[(121.0, 0.95)]] * 3)
    assert {t.id for o in out for t in o} == {1}
    _, out = run([[(120.0, 0.95)]] * 5 + [[]] * n_long + [[(121.0, 0.95)]] * 3)
    assert [t.id for t in out[-1]] == [2]


def test_a_paused_talker_who_resumes_quietly_keeps_the_id_with_resume_by_birth():
    """A talker pauses and comes back quieter (under the birth threshold, found by the mean of two
    windows) 10 deg on: by default only a candidate at the birth threshold brings a paused talker
    back, and the new track near them is merged away, so the return is not listed until resume_s
    has passed; with ``resume_by_birth`` it is the same talker, listed."""
    s = DecodeSettings()
    quiet = 0.5 * (s.confirm_mean + s.birth_threshold)
    assert quiet < s.birth_threshold
    frames = [[(120.0, 0.95)]] * 5 + [[]] * 5 + [[(130.0, quiet)]] * 4
    _, out = run(frames)
    assert out[-4:] == [[]] * 4
    _, out = run(frames, TemporalDecoder(LAYOUT, DecodeSettings(resume_by_birth=True)))
    assert {t.id for o in out for t in o} == {1} and len(out[-1]) == 1
    # after resume_s the id is not kept either way
    long_pause = [[(120.0, 0.95)]] * 5 + [[]] * int(round(1.5 * s.resume_s / HOP)) + [[(130.0, quiet)]] * 4
    _, out = run(long_pause, TemporalDecoder(LAYOUT, DecodeSettings(resume_by_birth=True)))
    assert [t.id for t in out[-1]] == [2]
    # two new talkers confirmed in the same window near one paused talker: one takes the id, not both
    two = [[(120.0, 0.95)]] * 5 + [[]] * 5 + [[(100.0, quiet), (140.0, quiet)]] * 4
    _, out = run(two, TemporalDecoder(LAYOUT, DecodeSettings(resume_by_birth=True)))
    assert sorted(t.id for t in out[-1]) == [1, 2]


def test_with_gate_opens_walking_an_echo_behind_a_quiet_walker_does_not_take_their_id():
    """A walker at 40 deg/s goes quiet for 0.4 s; an echo then shows 60 deg behind where they stopped,
    and the walker comes back ahead. With the gate opened around both hypotheses the echo, nearer the
    still one, takes the walker's id; opened only around the walking one, the walker keeps it."""
    walk = [[((100.0 + 40.0 * (k * HOP - 0.25)) % 360.0, 0.95)] for k in range(12)]
    stop = 100.0 + 40.0 * (11 * HOP)
    frames = walk + [[]] * 4 + [[((stop - 60.0) % 360.0, 0.9)]] + \
        [[((stop - 60.0) % 360.0, 0.9), ((stop + 40.0 * (0.5 + k * HOP) - 10.0) % 360.0, 0.95)] for k in range(4)]

    def walker_id(settings):
        _, out = run(frames, TemporalDecoder(LAYOUT, settings))
        first = out[11][0].id
        ahead = [t.id for t in out[-1] if angular_distance_deg(t.azimuth_deg, stop + 40.0 * 0.8) < 20.0]
        behind = [t.id for t in out[-1] if angular_distance_deg(t.azimuth_deg, stop - 60.0) < 20.0]
        return first, ahead, behind

    first, ahead, behind = walker_id(DecodeSettings(gate_opens_walking=True))
    assert ahead == [first] and behind and behind[0] != first
    first, ahead, behind = walker_id(DecodeSettings())
    assert behind == [first]


def heard_at(*sources):
    """The newest audio's SRP-PHAT peak with talkers at ``sources`` ((azimuth_deg, strength), ...):
    the one nearest the search's centre, found only inside the search."""
    def peak(az, half):
        near = [(float(angular_distance_deg(az, a)), a, p) for a, p in sources if angular_distance_deg(az, a) < half]
        return min(near)[1:] if near else None
    return peak


def test_with_hand_over_a_walker_who_outruns_the_windows_keeps_the_id():
    """A walker at 40 deg/s speeds up to 120 deg/s. The windows keep placing them 20-30 deg behind, and
    a new candidate appears where the newest audio hears them, ahead. With ``hand_over_deg`` that
    candidate is the walker: one id throughout. If the newest audio still hears someone where the
    walker is reported, the one ahead is another talker: a new id."""
    def frames_and_peaks(other_stays):
        frames, peaks, az = [], [], 100.0
        for k in range(20):
            rate = 40.0 if k < 10 else 120.0
            az += rate * HOP
            win = az - (0.25 * rate if k < 10 else 40.0)  # the window lags further once they speed up
            cands = [(win % 360.0, 0.9)] + ([((az - 5.0) % 360.0, 0.5)] if k >= 11 else [])
            frames.append(cands)
            peaks.append(heard_at((az % 360.0, 0.15), *([(win % 360.0, 0.15)] if other_stays else [])))
        return frames, peaks

    def ids(settings, other_stays):
        dec = TemporalDecoder(LAYOUT, settings)
        frames, peaks = frames_and_peaks(other_stays)
        return [[t.id for t in dec.update(outputs(f), 0.5 + k * HOP, peak=pk)]
                for k, (f, pk) in enumerate(zip(frames, peaks))]

    on = DecodeSettings(hand_over_deg=60.0, now_min_strength=0.07)
    assert {i for o in ids(on, False) for i in o} == {1}
    assert {i for o in ids(DecodeSettings(), False) for i in o} == {1, 2}
    assert {i for o in ids(on, True) for i in o} == {1, 2}


def test_with_hand_over_side_a_mover_takes_a_newcomer_on_either_side():
    """``hand_over_side_deg``: a newcomer heard up to that far from a listed talker who moves at least
    ``hand_over_side_rate_deg_s`` and is no longer heard where reported is that talker, behind them as
    well as ahead (a walker who turned round, or one not yet taken for walking). Not a talker who is
    still heard there, nor one who does not move, nor one beyond the distance."""
    def mover_and_newcomer(rate, offset, settings):
        dec = TemporalDecoder(LAYOUT, settings)
        for k in range(8):  # a listed talker whose windows move at ``rate``
            dec.update(outputs([(100.0 + rate * k * HOP, 0.9)]), 0.5 + k * HOP)
        old = dec._tracks[0]
        at = float(old.blended(settings)[0])
        new = _Track(Detection(at + offset, 2.0, 0.9, 0), 0.5 + 8 * HOP, settings)
        return dec, old, new, at

    on = DecodeSettings(hand_over_deg=60.0, hand_over_side_deg=30.0, now_min_strength=0.07)
    for offset in (-25.0, 25.0):
        dec, old, new, at = mover_and_newcomer(30.0, offset, on)
        assert old.listed and abs(old.moving.rate) >= on.hand_over_side_rate_deg_s
        heard_new = heard_at(((at + offset) % 360.0, 0.15))
        assert dec._walker_behind(new, dec._tracks + [new], heard_new) is old
        # still heard where reported: the newcomer is someone else
        both = heard_at((at % 360.0, 0.15), ((at + offset) % 360.0, 0.15))
        assert dec._walker_behind(new, dec._tracks + [new], both) is None
        off = dataclasses.replace(on, hand_over_side_deg=0.0)
        if offset < 0:  # behind: only the side rule takes it
            assert dec._walker_behind(new, dec._tracks + [new], heard_new) is old
            dec.settings = off
            assert dec._walker_behind(new, dec._tracks + [new], heard_new) is None
    dec, old, new, at = mover_and_newcomer(30.0, -40.0, on)  # beyond the distance
    assert dec._walker_behind(new, dec._tracks + [new], heard_at(((at - 40.0) % 360.0, 0.15))) is None
    dec, old, new, at = mover_and_newcomer(0.0, -25.0, on)  # a talker standing still
    assert abs(old.moving.rate) < on.hand_over_side_rate_deg_s
    assert dec._walker_behind(new, dec._tracks + [new], heard_at(((at - 25.0) % 360.0, 0.15))) is None

def test_a_walker_takes_one_newcomer_the_others_are_listed():
    """A walker at 40 deg/s goes quiet; two talkers then start ahead of them in the same window (beyond
    the paused walker's gate), both heard. With ``hand_over_deg`` the nearer one is the walker (their
    id), the other a new talker: never both absorbed into one track."""
    walk = [[((100.0 + 40.0 * (k * HOP - 0.25)) % 360.0, 0.95)] for k in range(12)]
    stop = 100.0 + 40.0 * (11 * HOP)
    ahead = [(stop + 60.0) % 360.0, (stop + 95.0) % 360.0]
    dec = TemporalDecoder(LAYOUT, DecodeSettings(hand_over_deg=90.0, now_min_strength=0.07))
    frames = walk + [[]] * 2 + [[(a, 0.95) for a in ahead]] * 3
    peaks = [heard_at(((100.0 + 40.0 * k * HOP) % 360.0, 0.15)) for k in range(12)] + [heard_at()] * 2 + \
        [heard_at(*[(a, 0.15) for a in ahead])] * 3
    out = [dec.update(outputs(f), 0.5 + k * HOP, peak=pk) for k, (f, pk) in enumerate(zip(frames, peaks))]
    walker = out[11][0].id
    near = [t.id for t in out[-1] if angular_distance_deg(t.azimuth_deg, ahead[0]) < 10.0]
    assert len(out[-1]) == 2 and near == [walker], out[-1]


def test_two_talkers_are_two_and_one_talker_is_never_two():
    _, out = run([[(30.0, 0.95), (150.0, 0.9)]] * 10)
    assert [sorted(t.id for t in o) for o in out[-3:]] == [[1, 2]] * 3
    # one talker seen twice, 10 deg apart, alternately: one listed talker
    _, out = run([[(80.0 + (10.0 if k % 2 else 0.0), 0.95)] for k in range(12)])
    assert all(len(o) == 1 for o in out)


def test_with_hold_mean_an_echo_heard_now_and_then_is_dropped_a_steady_quiet_talker_is_not():
    """A talker at 60 deg, an echo at 170 deg at 0.5 in one window of three (listed through its misses by
    miss_windows), a quiet second talker at 280 deg at 0.3 in every window: with hold_mean 0.25 the echo
    leaves the list and the quiet talker stays; without it, the echo is listed too."""
    frames = [[(60.0, 0.95), (280.0, 0.3)] + ([(170.0, 0.5)] if k % 3 == 0 else []) for k in range(30)]

    def near(out, az):
        return [t for t in out if angular_distance_deg(t.azimuth_deg, az) < 10.0]

    base = DecodeSettings(birth_threshold=0.45, keep_threshold=0.1, seed_threshold=0.1, confirm_confidence=0.45)
    _, plain = run(frames, TemporalDecoder(LAYOUT, base))
    _, held = run(frames, TemporalDecoder(LAYOUT, dataclasses.replace(base, hold_mean=0.25)))
    assert sum(bool(near(o, 170.0)) for o in plain[10:]) >= 10  # listed in two of every three windows
    assert not any(near(o, 170.0) for o in held[10:])
    assert all(len(near(o, 60.0)) == 1 and len(near(o, 280.0)) == 1 for o in held[10:])
    # the echo's evidence averaged over the last windows: 0.5 at 1 in 3 with hold_alpha 0.2 stays below 0.25
    ids = {t.id for o in held[10:] for t in o}
    assert len(ids) == 2


def test_with_hold_mean_a_new_talker_and_one_back_from_a_pause_are_listed_at_once():
    """hold_mean never delays a talker who starts (younger than 1 / hold_alpha windows, even one quieter than the
    bar) or one who resumes after a pause of that many windows (their average starts again at the bar, where it
    would otherwise still be below it): each is first listed in the same window as without it."""
    frames = [[(60.0, 0.95)]] * 8 + [[]] * 12 + [[(60.0, 0.95)]] * 6 + [[(60.0, 0.95), (200.0, 0.32)]] * 8
    s = DecodeSettings(resume_by_birth=True)
    _, plain = run(frames, TemporalDecoder(LAYOUT, s))
    _, held = run(frames, TemporalDecoder(LAYOUT, dataclasses.replace(s, hold_mean=0.35)))

    def first(out, az):
        return next(k for k, o in enumerate(out) if any(angular_distance_deg(t.azimuth_deg, az) < 10.0 for t in o))

    assert first(held[10:], 60.0) == first(plain[10:], 60.0) == 10  # back at once, with the id
    assert [t.id for t in held[20]] == [1]
    assert first(held, 200.0) == first(plain, 200.0)
    # the quiet newcomer (0.32, below the bar) is unlisted once no longer young; without the bar it stays listed
    young = first(held, 200.0)
    assert not any(angular_distance_deg(t.azimuth_deg, 200.0) < 10.0 for t in held[young + 2])
    assert all(any(angular_distance_deg(t.azimuth_deg, 200.0) < 10.0 for t in o) for o in plain[young:])


def test_reset_forgets_talkers_but_ids_go_on():
    dec, out = run([[(10.0, 0.95)]] * 3)
    dec.reset()
    _, again = run([[(10.0, 0.95)]] * 3, dec, t0=0.0)
    assert again[-1][0].id == 2
    with pytest.raises(ValueError, match="time went backwards"):
        dec.update(outputs([]), -1.0)


@pytest.mark.parametrize("cfg,match", [
    ({"keep_threshold": 0.9}, r"decode.keep_threshold = 0.9 is invalid; allowed: a probability in \(0, birth"),
    ({"birth_threshold": 1.0}, r"decode.birth_threshold = 1.0 is invalid; allowed: a probability in \(0, 1\)"),
    ({"miss_windows": -1}, r"decode.miss_windows = -1 is invalid; allowed: an integer in \[0, 50\]"),
    ({"confirm_hits": 4}, r"decode.confirm_hits = 4 is invalid; allowed: an integer in \[1, confirm_windows = 3\]"),
    ({"lead_s": float("nan")}, r"decode.lead_s = nan is invalid"),
    ({"end_after_s": 0.6}, r"unknown decode key\(s\) \['end_after_s'\]; allowed: \["),
])
def test_bad_settings_are_refused_by_name(cfg, match):
    with pytest.raises(DecodeConfigError, match=match):
        DecodeSettings.from_dict(cfg)


def test_settings_round_trip_and_override_a_base():
    base = DecodeSettings(keep_threshold=0.2)
    assert DecodeSettings.from_dict(base.to_dict()) == base
    assert DecodeSettings.from_dict({"miss_windows": 0}, base=base) == DecodeSettings(keep_threshold=0.2, miss_windows=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(0, 359.9), st.floats(0, 1)), max_size=5), min_size=1, max_size=40))
def test_random_outputs_keep_the_invariants(frames):
    """Ids are unique per message, increasing in order of first listing and never reused;
    azimuths in [0, 360); nothing listed without a candidate in this window or the last."""
    dec, out = run(frames)
    first_seen: dict[int, int] = {}
    for k, o in enumerate(out):
        ids = [t.id for t in o]
        assert len(ids) == len(set(ids)) and ids == sorted(ids)
        for t in o:
            assert 0.0 <= t.azimuth_deg < 360.0 and math.isfinite(t.rate_deg_s)
            first_seen.setdefault(t.id, k)
        if o and not any(p >= dec.settings.keep_threshold for _, p in frames[k]) and \
                (k == 0 or not any(p >= dec.settings.keep_threshold for _, p in frames[k - 1])):
            pytest.fail(f"talkers listed at window {k} without evidence: {o}")
    order = sorted(first_seen, key=lambda i: (first_seen[i], i))
    assert order == sorted(first_seen)
