"""edge_msl.channel_check on real physics: talkers in pyroomacoustics rooms (the project simulator,
real dry speech), isotropic noise built from plane waves, the packaged respeaker-6mic int8 model.
The capture's channels are rotated as the seeed-voicecard driver does; the check must find the
rotation and a remap must give the model exactly the unrotated input; a dead mic is flagged; clean
captures of every built-in array pass; silence is "cannot tell", never a remap."""

import logging

import numpy as np
import pytest

from edge_msl.arrays import ArrayConfigError, MicArray, far_field_delays_s, get_array, list_arrays
from edge_msl.channel_check import (ChannelReport, StartupCheck, channel_levels_dbfs, check_and_remap,
                                    check_channels, lookalike_rotations, rotated_map)

FS = 16000


def to_int16(audio):
    """Full-scale float audio to int16 as an ADC delivers it (rounded, clipped), as train_tf.simulate does."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def bank(bank_path):
    from train_tf.signals import DryBank

    return DryBank.load(bank_path)


def room_scene(array_name, bank, seed, n_src=1, seconds=2.0, snr_diffuse_db=(10.0, 25.0), level_dbfs=(-35.0, -25.0),
               with_truth=False):
    """(n, n_mics) float full-scale audio of talkers in a simulated room, mics in array order (and the
    simulator's Window with the talkers' azimuths when ``with_truth``); skipped without edge-msl[train]."""
    simulate = pytest.importorskip("train_tf.simulate")
    settings = simulate.SimSettings(
        array=array_name, window_s=seconds, positions_per_room=4, max_image_order=6, anechoic_prob=0.0,
        rt60_s=(0.2, 0.6), n_sources=(n_src, n_src), snr_diffuse_db=snr_diffuse_db, snr_sensor_db=(30.0, 40.0),
        level_dbfs=level_dbfs, kind_weights=(("speech_real", 1.0), ("speech_synth", 1.0)))
    rng = np.random.default_rng(seed)
    room = simulate.simulate_room(settings, rng)
    chosen = simulate.choose_positions(room.azimuth_deg, n_src, 30.0, rng)
    window = simulate.render_window(room, chosen, settings, bank, rng)
    return (window.audio, window) if with_truth else window.audio


def to_capture(array, mics, loopback="zero", rng=None, playback=None):
    """Put mic signals on the array's capture channels; the other channels are digital zero or carry
    ``playback`` (an unrelated signal, as a playback loopback does)."""
    out = np.zeros((len(mics), array.n_channels))
    out[:, list(array.channel_map)] = mics
    others = [c for c in range(array.n_channels) if c not in array.channel_map]
    if loopback == "playback":
        for i, c in enumerate(others):
            out[:, c] = playback[:len(mics)] * (0.5 if i else 1.0)
    return to_int16(out)


def rotate(frames, k):
    """What the seeed-voicecard driver does: the content of channel c arrives on channel (c + k) mod n."""
    return np.roll(frames, k, axis=1)


def plane_waves(array, fs, signals, directions):
    """Far-field mix at the mics: exact fractional delays (frequency domain) of K signals (K, n)."""
    n = signals.shape[1]
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    spec = np.fft.rfft(signals, axis=1)
    out = np.zeros((array.n_mics, len(freqs)), complex)
    for s, (az, el) in zip(spec, directions):
        tau = far_field_delays_s(array, az, el)
        out += s[None, :] * np.exp(-2j * np.pi * freqs[None, :] * tau[:, None])
    return np.fft.irfft(out, n=n, axis=1).T


def isotropic_noise(array, fs, n, rng, n_waves=100):
    """A spherically isotropic field: independent noise from directions spread evenly over the sphere
    (a Fibonacci lattice, randomly turned: even spacing needs fewer waves than random directions)."""
    i = np.arange(n_waves) + 0.5
    z = 1.0 - 2.0 * i / n_waves
    az = np.degrees(np.pi * (1.0 + 5 ** 0.5) * i) + rng.uniform(0.0, 360.0)
    el = np.degrees(np.arcsin(z))
    return plane_waves(array, fs, rng.standard_normal((n_waves, n)), list(zip(az % 360.0, el))) / np.sqrt(n_waves)


def babble_like(rng, n, fs):
    """Speech-band noise with a syllabic (4 Hz) on/off envelope: a cheap talker stand-in."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec *= (f > 100) / np.maximum(f, 300.0) ** 0.5
    x = np.fft.irfft(spec, n=n)
    env = 0.2 + (np.sin(2 * np.pi * 4.0 * np.arange(n) / fs + rng.uniform(0, 6)) > 0)
    return x * env / np.std(x * env)


# ------------------------------------------------------------------------------------- seeed rotation

@pytest.mark.parametrize("loopback", ["zero", "playback"])
def test_respeaker_6mic_rotation_is_found_and_remapped(bank, loopback):
    array = get_array("respeaker-6mic")
    rng = np.random.default_rng(7)
    mics = room_scene("respeaker-6mic", bank, seed=11 if loopback == "zero" else 12)
    music = bank.segment(int(bank.indices("music")[0]), len(mics), rng) * 0.05
    capture = to_capture(array, mics, loopback, playback=music)
    clean = check_channels(array, capture, sample_rate_hz=FS)
    assert clean.status == "ok" and not clean.problem and clean.rotation == 0
    expected_non_mics = {6, 7}
    assert set(clean.dead_channels) | set(clean.foreign_channels) == expected_non_mics
    if loopback == "zero":
        assert clean.level_dbfs[6] == -np.inf and set(clean.dead_channels) == expected_non_mics
    else:
        assert set(clean.foreign_channels) == expected_non_mics  # live, but not the room's sound
    for k in range(1, 8):
        rotated = rotate(capture, k)
        rep = check_channels(array, rotated, sample_rate_hz=FS)
        assert (rep.status, rep.rotation) == ("rotated", k), rep.describe()
        assert rep.problem
        assert rep.remapped_channel_map == tuple((c + k) % 8 for c in range(6))
        fixed = MicArray(**{**array.to_dict(), "channel_map": rep.remapped_channel_map})
        np.testing.assert_array_equal(fixed.select_channels(rotated), array.select_channels(capture))
        line = rep.describe()
        assert "\n" not in line and f"rotated by {k}" in line
        assert f"channel_map = {list(rep.remapped_channel_map)}" in line and "seeed-voicecard#309" in line


def test_remap_gives_the_packaged_model_the_unrotated_input_and_the_same_azimuths(bank):
    """The respeaker-6mic int8 model on a talker in a simulated room: after the remap the pipeline's
    messages equal those of the unrotated capture (and find the talker); without it they do not."""
    pytest.importorskip("ai_edge_litert")
    from edge_msl.pipeline import Pipeline
    from edge_msl.runtime import load_model

    array = get_array("respeaker-6mic")
    mics, window = room_scene("respeaker-6mic", bank, seed=14, seconds=2.5, with_truth=True)
    rng = np.random.default_rng(2)
    capture = to_capture(array, mics, "playback", playback=babble_like(rng, len(mics), FS) * 0.05)
    model = load_model(array=array)
    reference = Pipeline(model, array=array).push(capture)
    found = [s["azimuth_deg"] for m in reference for s in m["sources"]]
    truth = float(window.azimuth_deg[0])
    assert found and np.median([abs((a - truth + 180) % 360 - 180) for a in found]) <= 10.0, (found, truth)
    for k in (2, 5):
        rotated = rotate(capture, k)
        fixed, rep = check_and_remap(array, rotated, remap=True, sample_rate_hz=FS)
        assert rep.rotation == k and fixed.channel_map == rotated_map(array, k)
        assert Pipeline(model, array=fixed).push(rotated) == reference
        # without the remap the model hears a loopback channel and the circle shifted by k mics
        assert Pipeline(model, array=array).push(rotated) != reference


# ------------------------------------------------------------------------------------- dead mics

def test_dead_or_muted_mic_is_flagged(bank):
    array = get_array("respeaker-6mic")
    mics = room_scene("respeaker-6mic", bank, seed=21)
    dead = mics.copy()
    dead[:, 2] = 0.0
    rep = check_channels(array, to_capture(array, dead), sample_rate_hz=FS)
    assert rep.status == "bad_channels" and rep.problem and 2 in rep.dead_channels
    assert "channel 2 (mic 2) is digital zero" in rep.reason
    assert "alsamixer" in rep.describe()
    # the seeed service once turned one channel's capture volume far down (#240): 45 dB quieter
    muted = mics.copy()
    muted[:, 4] *= 10 ** (-45 / 20)
    rep = check_channels(array, rotate(to_capture(array, muted), 3), sample_rate_hz=FS)
    assert rep.status == "bad_channels" and 7 in rep.dead_channels  # mic 4 sits on channel 4 + 3
    assert rep.rotation == 3 and "channel 7 (mic 4)" in rep.reason and "rotated by 3" in rep.reason


def test_dead_mic_is_flagged_when_the_loopback_is_heard_too():
    """A speaker in the room plays what the loopback channels carry, so they look like mics and a
    rotation that puts mics on them is consistent; the geometry still prefers "mic 2 is dead"."""
    array = get_array("respeaker-6mic")
    rng = np.random.default_rng(8)
    n = 2 * FS
    talker, music = babble_like(rng, n, FS), babble_like(rng, n, FS)
    mics = plane_waves(array, FS, np.stack([talker, music]), [(40.0, 10.0), (250.0, 0.0)])
    mics += isotropic_noise(array, FS, n, rng, n_waves=60) * 0.3 + rng.standard_normal(mics.shape) * 0.03
    mics[:, 2] = 0.0
    capture = np.zeros((n, 8))
    capture[:, :6] = mics * 0.02
    capture[:, 6] = capture[:, 7] = music * 0.02
    rep = check_channels(array, to_int16(capture), sample_rate_hz=FS)
    assert 6 not in rep.foreign_channels and rep.consistent_rotations  # the loopback passes for a mic here
    assert rep.status == "bad_channels" and rep.dead_channels == (2,) and rep.rotation is None, rep.describe()


def test_dead_mic_on_an_array_without_spare_channels(bank):
    array = get_array("uca8-r10")
    mics = room_scene("uca8-r10", bank, seed=22)
    mics[:, 5] = 0.0
    rep = check_channels(array, to_capture(array, mics), sample_rate_hz=FS)
    assert rep.status == "bad_channels" and rep.dead_channels == (5,)


# ------------------------------------------------------------------------------------- no false alarms

@pytest.mark.parametrize("name", list_arrays())
def test_clean_capture_of_every_builtin_array_is_ok(bank, name):
    array = get_array(name)
    for seed, n_src in ((31, 1), (32, 2)):
        mics = room_scene(name, bank, seed=seed, n_src=n_src)
        rep = check_channels(array, to_capture(array, mics), sample_rate_hz=FS)
        assert rep.status == "ok" and not rep.problem, rep.describe()
        assert rep.remapped_channel_map is None and rep.dead_channels == tuple(
            c for c in range(array.n_channels) if c not in array.channel_map)


def test_lookalike_rotations_are_the_symmetries_of_the_array():
    assert lookalike_rotations(get_array("uca8-r10")) == (1, 2, 3, 4, 5, 6, 7)
    assert lookalike_rotations(get_array("matrix-creator")) == (1, 2, 3, 4, 5, 6, 7)
    assert lookalike_rotations(get_array("respeaker-4mic")) == (1, 2, 3)  # the 3,4,1,2 of seeed #145
    for name in ("respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "minidsp-uma8"):
        assert lookalike_rotations(get_array(name)) == (), name
    tri = MicArray(name="tri", positions_m=((0.03, 0, 0), (-0.015, 0.026, 0), (-0.015, -0.026, 0)),
                   channel_map=(0, 1, 2), n_channels=3)
    assert lookalike_rotations(tri) == (1, 2)


def test_a_rotation_that_turns_the_array_is_ok_with_a_note(bank):
    array = get_array("respeaker-4mic")
    mics = room_scene("respeaker-4mic", bank, seed=41)
    rep = check_channels(array, rotate(to_capture(array, mics), 2), sample_rate_hz=FS)
    assert rep.status == "ok" and not rep.problem
    assert "would look the same" in rep.describe()


# ------------------------------------------------------------------------------------- silence

@pytest.mark.parametrize("k", [0, 3])
def test_silence_is_cannot_tell_and_never_remapped(k, caplog):
    array = get_array("respeaker-6mic")
    rng = np.random.default_rng(5)
    n = 2 * FS
    sensor = rng.standard_normal((n, 6)) * 10 ** (-70 / 20)  # self-noise only: nothing in the room
    capture = rotate(to_capture(array, sensor), k)
    with caplog.at_level(logging.INFO, logger="edge_msl.channel_check"):
        fixed, rep = check_and_remap(array, capture, remap=True, sample_rate_hz=FS)
    assert rep.status == "cannot_tell" and rep.rotation is None and rep.remapped_channel_map is None
    assert fixed is array and not rep.problem
    assert "share no sound" in rep.reason
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    zeros = np.zeros((n, 8), np.int16)
    rep = check_channels(array, zeros, sample_rate_hz=FS)
    assert rep.status == "cannot_tell" and "0 of 8 channels carry signal" in rep.reason
    assert all(v == -np.inf for v in channel_levels_dbfs(zeros))


def test_short_capture_is_cannot_tell():
    array = get_array("respeaker-6mic")
    rep = check_channels(array, np.ones((1000, 8), np.int16), sample_rate_hz=FS)
    assert rep.status == "cannot_tell" and "only 0.06 s" in rep.reason


# ------------------------------------------------------------------------------------- geometry

def test_isotropic_noise_coherence_follows_the_diffuse_prediction():
    """Golden physics: plane waves from all over the sphere give coherence sinc(2 f d / c) per pair."""
    array = get_array("uca8-r10")
    rng = np.random.default_rng(9)
    mics = isotropic_noise(array, FS, 2 * FS, rng) * 0.02
    mics += rng.standard_normal(mics.shape) * 0.0005  # sensor noise 32 dB down
    rep = check_channels(array, to_capture(array, mics), sample_rate_hz=FS)
    assert rep.status == "ok"
    measured, predicted = np.array(rep.pair_coherence), np.array(rep.pair_diffuse)
    assert len(measured) == 28 and np.ptp(predicted) > 0.3  # pairs differ: the test can fail
    assert np.max(np.abs(measured - predicted)) < 0.08
    assert dict(rep.geometry_residual)[0] < 0.1


def test_geometry_alone_finds_a_rotation_when_the_loopback_is_heard():
    """Playback through a speaker in the room: the loopback channels are coherent with the mics, so
    only the geometry fit can tell the rotation (a uniform circle of 8 with 2 loopback channels)."""
    uca = get_array("uca8-r10")
    array = MicArray(name="uca8-loopback", positions_m=uca.positions_m, channel_map=tuple(range(8)), n_channels=10)
    rng = np.random.default_rng(4)
    n = 2 * FS
    talker, music = babble_like(rng, n, FS), babble_like(rng, n, FS)
    mics = plane_waves(uca, FS, np.stack([talker, music]), [(70.0, 10.0), (200.0, 0.0)])
    mics += isotropic_noise(uca, FS, n, rng) * 0.3 + rng.standard_normal(mics.shape) * 0.03
    capture = np.zeros((n, 10))
    capture[:, :8] = mics * 0.02
    capture[:, 8] = capture[:, 9] = music * 0.02
    capture = to_int16(capture)
    assert check_channels(array, capture, sample_rate_hz=FS).foreign_channels == ()  # heard: not foreign
    for k in (0, 3, 8):  # 8: the loopback pair lands on mics 0 and 1
        rep = check_channels(array, rotate(capture, k), sample_rate_hz=FS)
        assert rep.rotation == k and rep.status == ("ok" if k == 0 else "rotated"), (k, rep.describe())


def test_matrix_voice_rotation_at_48khz_is_found_by_geometry():
    """No spare channel on the MATRIX Voice: only the centre mic breaks the symmetry."""
    array = get_array("matrix-voice")
    fs = 48000
    rng = np.random.default_rng(6)
    n = 2 * fs
    mics = plane_waves(array, fs, babble_like(rng, n, fs)[None], [(130.0, 20.0)])
    mics += isotropic_noise(array, fs, n, rng, n_waves=50) * 0.3 + rng.standard_normal(mics.shape) * 0.03
    capture = to_capture(array, mics * 0.02)
    for k in range(8):
        rep = check_channels(array, rotate(capture, k), sample_rate_hz=fs)
        assert rep.rotation == k and rep.status == ("ok" if k == 0 else "rotated"), (k, rep.describe())
        assert len(rep.consistent_rotations) == 8  # roles say nothing here
        assert "seeed" not in rep.describe()  # not a board on the seeed-voicecard driver


# ------------------------------------------------------------------------------------- the hook

def test_check_and_remap_logs_one_warning_and_remaps_only_when_allowed(bank, caplog):
    array = get_array("respeaker-6mic")
    capture = rotate(to_capture(array, room_scene("respeaker-6mic", bank, seed=51)), 2)
    with caplog.at_level(logging.INFO, logger="edge_msl.channel_check"):
        same, rep = check_and_remap(array, capture, remap=False, sample_rate_hz=FS)
    assert same is array and rep.status == "rotated"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "set [array] channel_map = [2, 3, 4, 5, 6, 7]" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_msl.channel_check"):
        fixed, rep = check_and_remap(array, capture, remap=True, sample_rate_hz=FS)
    assert fixed.channel_map == (2, 3, 4, 5, 6, 7) and fixed.same_geometry(array) and fixed.name == array.name
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "remapped" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_msl.channel_check"):
        same, rep = check_and_remap(array, rotate(capture, -2), remap=True, sample_rate_hz=FS)
    assert same is array and rep.status == "ok"
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_startup_check_holds_the_first_seconds_then_releases_them_remapped(bank):
    """The daemon's hook: frames in capture-sized chunks, the check in a worker thread; nothing is
    lost or repeated; after a reopen (reset) the new rotation is checked again."""
    array = get_array("respeaker-6mic")
    capture = to_capture(array, room_scene("respeaker-6mic", bank, seed=61, seconds=2.5))
    check = StartupCheck(array, "remap", sample_rate_hz=FS, seconds=2.0)
    for k in (3, 6):  # the device is reopened between the two: the driver picks another order
        stream = rotate(capture, k)
        out, pos, held_until = [], 0, None
        while pos < len(stream):
            got = check.feed(stream[pos:pos + 800])
            pos += 800
            if len(got) and held_until is None:
                held_until = pos
            out.append(got)
        out.append(check.finish())
        np.testing.assert_array_equal(np.concatenate(out), stream)
        assert (held_until or len(stream)) >= 2 * FS  # nothing came out before the check had its 2 s
        assert check.report.status == "rotated" and check.report.rotation == k
        assert check.array.channel_map == rotated_map(array, k)
        np.testing.assert_array_equal(check.array.select_channels(stream), array.select_channels(capture))
        check.reset()
        assert check.array is array and check.report is None


def test_startup_check_modes():
    array = get_array("respeaker-6mic")
    frames = np.zeros((100, 8), np.int16)
    off = StartupCheck(array, "off", sample_rate_hz=FS)
    assert off.feed(frames) is frames and off.report is None
    with pytest.raises(ValueError, match="allowed: warn, remap, off"):
        StartupCheck(array, "fix", sample_rate_hz=FS)
    short = StartupCheck(array, "warn", sample_rate_hz=FS)
    assert len(short.feed(frames)) == 0
    assert len(short.finish()) == 100 and short.array is array  # stream ended before the check


def test_wrong_channel_count_is_a_one_line_error():
    with pytest.raises(ArrayConfigError) as exc:
        check_channels(get_array("respeaker-6mic"), np.zeros((32000, 6), np.int16))
    msg = str(exc.value)
    assert "\n" not in msg and "8 capture channels" in msg and "have 6" in msg


def test_report_is_frozen():
    rep = check_channels(get_array("respeaker-4mic"), np.zeros((32000, 4), np.int16))
    assert isinstance(rep, ChannelReport)
    with pytest.raises(Exception):
        rep.status = "ok"
