"""Room simulator: golden tests from physics, label consistency, shards, resume, RIR bank."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyroomacoustics")

from edge_msl.arrays import SPEED_OF_SOUND_M_S, direction_vector, get_array  # noqa: E402
from edge_msl.regions import ACTIVE  # noqa: E402
from edge_msl.settings_check import SettingError  # noqa: E402
from train_tf import simulate  # noqa: E402
from train_tf.simulate import SimSettings  # noqa: E402

FS = 16000
FREE_FIELD = SimSettings(anechoic_prob=1.0, mic_jitter_m=0.0, mic_gain_db=0.0, positions_per_room=6)


def _expected_arrivals_s(array_name, az, el, d3):
    """Arrival time at each mic of a point source given in the array frame (labels only)."""
    src = d3 * direction_vector(az, el)
    return np.linalg.norm(get_array(array_name).positions() - src, axis=1) / SPEED_OF_SOUND_M_S


def _peak_time_s(h):
    """Sub-sample position of the largest peak (parabolic interpolation)."""
    i = int(np.argmax(np.abs(h)))
    y0, y1, y2 = np.abs(h[i - 1]), np.abs(h[i]), np.abs(h[i + 1])
    return (i + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) / FS


@pytest.mark.parametrize("array_name", ["uca8-r10", "respeaker-4mic", "minidsp-uma8"])
def test_free_field_delays_match_the_labels(array_name):
    """Golden test: in an anechoic room the inter-mic delays of every simulated source equal the
    geometry implied by its (azimuth, elevation, distance) label, to well within a sample."""
    settings = FREE_FIELD.replace(array=array_name)
    room = simulate.simulate_room(settings, np.random.default_rng(3))
    for p in range(settings.positions_per_room):
        expected = _expected_arrivals_s(array_name, room.azimuth_deg[p], room.elevation_deg[p], room.distance3d_m[p])
        measured = np.array([_peak_time_s(h) for h in room.rirs[p]])
        err_samples = ((measured - measured[0]) - (expected - expected[0])) * FS
        assert np.max(np.abs(err_samples)) < 0.5, (p, err_samples)


def test_labels_are_in_the_array_frame_not_the_room_frame():
    """The array is rotated at random in the room; the nearest mic must still be the one that
    the label's azimuth points at."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(3):
        room = simulate.simulate_room(FREE_FIELD, rng)
        mic_az = 45.0 * np.arange(8)
        for p in range(FREE_FIELD.positions_per_room):
            first = int(np.argmin([_peak_time_s(h) for h in room.rirs[p]]))
            diff = abs((mic_az[first] - room.azimuth_deg[p] + 180) % 360 - 180)
            hits += diff <= 22.5 + 1e-6
    assert hits == 3 * FREE_FIELD.positions_per_room


def _t30_s(h):
    e = np.cumsum((h.astype(np.float64) ** 2)[::-1])[::-1]
    e = 10 * np.log10(e / e[0] + 1e-30)
    i5, i35 = int(np.argmax(e < -5)), int(np.argmax(e < -35))
    t = np.arange(len(e)) / FS
    return -60.0 / np.polyfit(t[i5:i35], e[i5:i35], 1)[0]


def test_reverberant_tail_keeps_the_rt60():
    """Capped image order + stochastic tail: the measured decay (T30) matches the room's RT60."""
    settings = SimSettings(anechoic_prob=0.0, rt60_s=(0.5, 0.9), positions_per_room=3)
    rng = np.random.default_rng(5)
    ratios = []
    for _ in range(3):
        room = simulate.simulate_room(settings, rng)
        measured = np.median([_t30_s(room.rirs[p, m]) for p in range(3) for m in (0, 4)])
        ratios.append(measured / room.rt60_s)
    assert 0.8 < np.median(ratios) < 1.25, ratios


def test_rt60_is_clamped_to_what_sabine_allows():
    dim = (10.0, 8.0, 4.0)
    assert simulate.sabine_absorption(0.1, dim) > 1.0
    assert simulate.sabine_rt60(simulate.sabine_absorption(0.7, dim), dim) == pytest.approx(0.7)
    settings = SimSettings(anechoic_prob=0.0, room_x_m=(10.0, 10.0), room_y_m=(8.0, 8.0), room_z_m=(4.0, 4.0),
                           rt60_s=(0.1, 0.1), positions_per_room=1)
    room = simulate.simulate_room(settings, np.random.default_rng(0))
    assert room.rt60_s == pytest.approx(simulate.sabine_rt60(0.99, dim))


def test_diffuse_noise_has_the_isotropic_coherence():
    array = get_array("uca8-r10")
    mic = array.positions()
    rng = np.random.default_rng(0)
    n, seg = 2**17, 512
    x = simulate.diffuse_mix(mic, rng.standard_normal((8, n)), FS)
    # Welch coherence between mic 0 and mic 4 (0.2 m apart)
    frames = x[:, : (n // seg) * seg].reshape(8, -1, seg) * np.hanning(seg)
    spec = np.fft.rfft(frames, axis=2)
    s04 = np.mean(spec[0] * np.conj(spec[4]), axis=0)
    s00 = np.mean(np.abs(spec[0]) ** 2, axis=0)
    s44 = np.mean(np.abs(spec[4]) ** 2, axis=0)
    coh = np.real(s04) / np.sqrt(s00 * s44)
    f = np.fft.rfftfreq(seg, 1 / FS)
    expected = np.sinc(2 * f * 0.2 / SPEED_OF_SOUND_M_S)
    band = (f > 100) & (f < 3000)
    assert np.max(np.abs(coh[band] - expected[band])) < 0.15
    assert coh[np.argmin(np.abs(f - 200))] > 0.6  # strongly coherent at low frequency, unlike sensor noise


def test_sources_are_placed_inside_the_ranges():
    settings = SimSettings(positions_per_room=8)
    rng = np.random.default_rng(2)
    for _ in range(5):
        room = simulate.simulate_room(settings, rng)
        assert np.all((room.distance3d_m >= 0.3 - 1e-9) & (room.distance3d_m <= 4.0 + 1e-9))
        assert np.all(np.abs(room.elevation_deg) <= 40.0 + 1e-9)
        np.testing.assert_allclose(room.distance_m, room.distance3d_m * np.cos(np.radians(room.elevation_deg)))
        assert np.all((room.mic_xyz > 0.4) & (room.mic_xyz < room.room_dim_m - 0.3))


def test_choose_positions_respects_separation():
    rng = np.random.default_rng(0)
    az = np.array([0.0, 5.0, 8.0, 90.0, 95.0, 180.0])
    for _ in range(20):
        chosen = simulate.choose_positions(az, 4, 10.0, rng)
        sel = az[chosen]
        d = np.abs((sel[:, None] - sel[None, :] + 180) % 360 - 180) + np.eye(len(sel)) * 999
        assert len(chosen) <= 4 and d.min() >= 10.0


# ---------------------------------------------------------------- with a real (tiny) dry bank

def test_rendered_window_levels_and_gcc_phat_direction(bank_path):
    """A rendered anechoic window of one source: the GCC-PHAT delay between opposite mics matches
    the label's geometry within a sample, and the level lands in the asked range."""
    from train_tf.signals import DryBank

    bank = DryBank.load(bank_path)
    settings = FREE_FIELD.replace(snr_diffuse_db=(40.0, 40.0), snr_sensor_db=(40.0, 40.0), level_dbfs=(-20.0, -20.0))
    rng = np.random.default_rng(7)
    room = simulate.simulate_room(settings, rng)
    checked = 0
    for p in range(settings.positions_per_room):
        win = simulate.render_window(room, np.array([p]), settings, bank, rng)
        x = win.audio.T.astype(np.float64)
        rms_db = 20 * math.log10(np.sqrt(np.mean(x ** 2)))
        assert rms_db == pytest.approx(-20.0, abs=0.2)
        expected = _expected_arrivals_s("uca8-r10", win.azimuth_deg[0], win.elevation_deg[0], win.distance3d_m[0])
        for i, j in ((0, 4), (2, 6)):
            n = 4 * x.shape[1]
            cross = np.fft.rfft(x[i], n) * np.conj(np.fft.rfft(x[j], n))
            cc = np.fft.irfft(cross / (np.abs(cross) + 1e-12), n * 8)  # 8x interpolated
            lag = int(np.argmax(np.r_[cc[-8 * 64:], cc[: 8 * 64 + 1]])) - 8 * 64
            tdoa_meas = lag / (8 * FS)
            assert abs(tdoa_meas - (expected[i] - expected[j])) * FS < 1.0
            checked += 1
    assert checked == 2 * settings.positions_per_room


def test_window_shards_are_deterministic_resumable_and_labelled(bank_path, tmp_path, capsys):
    settings = SimSettings(n_sources=(1, 4), windows_per_room=2, positions_per_room=6)
    out = tmp_path / "ds"
    summary = simulate.write_dataset(out, "windows", 6, settings, seed=9, bank_path=bank_path, shard_size=3,
                                     workers=2, progress=False)
    assert summary["made"] == 6
    data = simulate.load_windows(out)
    assert data["audio"].shape == (6, 8000, 8) and data["audio"].dtype == np.int16
    n = data["n_sources"]
    assert np.all((n >= 1) & (n <= 4))
    np.testing.assert_array_equal(np.isfinite(data["azimuth_deg"]).sum(axis=1), n)
    # the stored region target holds every source (they are >= 10 deg apart, one per region)
    # or fewer when two share a region
    active = data["region_target"][:, :, ACTIVE].sum(axis=1)
    assert np.all((active >= 1) & (active <= n))
    first = (out / "shard-00001.npz").read_bytes()
    (out / "shard-00001.npz").unlink()
    (out / "shard-00000.npz").write_bytes(b"truncated")
    again = simulate.write_dataset(out, "windows", 6, settings, seed=9, bank_path=bank_path, shard_size=3,
                                   workers=1, progress=False)
    assert again["made"] == 6 and again["resumed"] == 0
    np.testing.assert_array_equal(np.load(out / "shard-00001.npz")["audio"], np.load(
        __import__("io").BytesIO(first))["audio"])
    np.testing.assert_array_equal(simulate.load_windows(out)["azimuth_deg"], data["azimuth_deg"])
    with pytest.raises(ValueError, match="other settings, seed or bank"):
        simulate.write_dataset(out, "windows", 6, settings, seed=10, bank_path=bank_path, shard_size=3, workers=1,
                               progress=False)
    stats = simulate.label_stats(out, tmp_path / "stats.png")
    assert stats["windows"] == 6 and sum(stats["sources_per_window"].values()) == 6
    assert (tmp_path / "stats.png").stat().st_size > 10_000
    simulate.print_stats(stats)
    assert "sources per window" in capsys.readouterr().out


def test_rir_bank_roundtrip_and_mixing(bank_path, tmp_path):
    from train_tf.signals import DryBank

    settings = SimSettings(positions_per_room=4, rir_bank_samples=4096, n_sources=(2, 2))
    out = tmp_path / "rirs"
    simulate.write_dataset(out, "rir-bank", 2, settings, seed=1, bank_path=None, shard_size=1, workers=1,
                           progress=False)
    bank = simulate.RirBank(out)
    assert bank.n_rooms == 2
    assert bank.arrays["rirs"].shape == (2, 4, 8, 4096) and bank.arrays["rirs"].dtype == np.float16
    win = bank.mix(DryBank.load(bank_path), np.random.default_rng(0))
    assert win.audio.shape == (8000, 8)
    assert 1 <= len(win.azimuth_deg) <= 2 and np.all(np.isfinite(win.audio))
    with pytest.raises(ValueError, match="not an RIR bank"):
        simulate.write_dataset(tmp_path / "w", "windows", 1, SimSettings(windows_per_room=1), 0, bank_path, 1, 1,
                               progress=False)
        simulate.RirBank(tmp_path / "w")


def test_scene_command_prints_ground_truth(bank_path, tmp_path, capsys):
    wav = tmp_path / "scene.wav"
    assert simulate.main(["scene", "--bank", str(bank_path), "--seed", "4", "--min-sources", "2",
                          "--max-sources", "3", "--wav", str(wav)]) == 0
    truth = json.loads(capsys.readouterr().out)
    assert 2 <= len(truth["sources"]) <= 3
    assert all(0 <= s["azimuth_deg"] < 360 for s in truth["sources"])
    import wave

    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (8, 16000, 8000)


def test_settings_roundtrip_and_unknown_keys():
    s = SimSettings(n_sources=(1, 3), window_s=1.0)
    assert SimSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingError, match=r"unknown simulation key\(s\) \['rooms'\]"):
        SimSettings.from_dict({"rooms": 3})


@pytest.mark.parametrize("key, value, key_named, allowed", [
    ("anechoic_prob", 1.5, "sim.anechoic_prob", "a probability in [0, 1]"),
    ("rt60_s", [0.9, 0.1], "sim.rt60_s", "low <= high"),
    ("room_x_m", [0.0, 5.0], "sim.room_x_m", "a range [low, high], each a number in (0, 100]"),
    ("n_sources", [0, 2.5], "sim.n_sources", "an integer in [0, 64]"),
    ("sample_rate_hz", "16k", "sim.sample_rate_hz", "an integer in [8000, 192000]"),
    ("kind_weights", [["speech", 1.0]], "sim.kind_weights", "kinds of ['music', 'noise', 'speech_real'"),
    ("diffuse_kinds", ["pink", "rain"], "sim.diffuse_kinds", "'babble'"),
    ("regions", {"n_regions": 0}, "regions.n_regions", "an integer in [1, 360]"),
])
def test_a_bad_setting_is_one_error_naming_key_value_and_allowed(key, value, key_named, allowed):
    with pytest.raises(SettingError) as err:
        SimSettings.from_dict({key: value})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(key_named + " = ") and allowed in msg
    assert err.value.key == key_named
    with pytest.raises(SettingError, match=key_named.replace(".", r"\.")):
        SimSettings().replace(**{key: value})  # constructing one is checked as reading one is


def test_stored_settings_read_back_and_write_out_as_they_were():
    # a stored 20 stays 20 (not 20.0), as the shipped models' params.json record it
    s = SimSettings.from_dict({"min_source_separation_deg": 20, "array_wall_prob": 1, "source_level_db": [-12, 6]})
    assert json.dumps(s.to_dict()["min_source_separation_deg"]) == "20"
    assert s.to_dict()["source_level_db"] == [-12, 6] and s.source_level_db == (-12, 6)
    assert SimSettings.from_dict(s.to_dict()) == s
    assert isinstance(s.to_dict()["regions"], dict)
    root = Path(__file__).resolve().parents[1]
    shipped = sorted(root.glob("models/*/params.json")) + sorted(root.glob("train_tf/float_models/*/params.json"))
    assert shipped
    for path in shipped:
        data = json.loads(path.read_text()).get("data", {})
        for table in (data.get("simulation"), data.get("mix_overrides")):
            if table:
                out = SimSettings.from_dict(table).to_dict()
                assert json.dumps({k: out[k] for k in table}) == json.dumps(table), path


def test_diffuse_kinds_are_the_noise_kinds_and_babble():
    from train_tf.bank.synth import NOISE_KINDS
    from train_tf.simulate.settings import DIFFUSE_KINDS

    assert set(DIFFUSE_KINDS) == set(NOISE_KINDS) | {"babble"}


def test_cli_set_with_a_bad_value_names_it():
    import argparse

    from train_tf.simulate.cli import _settings_from_args

    args = argparse.Namespace(array="uca8-r10", window_s=0.5, sample_rate_hz=16000, min_sources=None,
                              max_sources=None, set=["echo_prob=0.5", "echo_prob=2"])
    with pytest.raises(SystemExit, match=r"bad --set: sim\.echo_prob = 2 is invalid; allowed: a probability"):
        _settings_from_args(args)


def test_array_against_a_wall_keeps_its_gap_and_its_talkers_in_the_room():
    gap = (0.05, 0.3)
    settings = SimSettings(array_wall_prob=1.0, array_wall_gap_m=gap, positions_per_room=8)
    radius = float(np.max(np.linalg.norm(get_array("uca8-r10").positions()[:, :2], axis=1)))
    rng = np.random.default_rng(4)
    for _ in range(4):
        room = simulate.simulate_room(settings, rng)
        centre = room.mic_xyz.mean(axis=0)
        to_wall = min(centre[0], centre[1], room.room_dim_m[0] - centre[0], room.room_dim_m[1] - centre[1])
        # mic jitter (1 mm) aside, the array's edge is within the gap range of its wall
        assert gap[0] - 0.002 <= to_wall - radius <= gap[1] + 0.002, to_wall
        assert np.all(room.distance3d_m >= 0.3 - 1e-9)
    # the default places arrays clear of the walls: no room of the same seed is this close
    room = simulate.simulate_room(SimSettings(positions_per_room=8), np.random.default_rng(4))
    centre = room.mic_xyz.mean(axis=0)
    assert min(centre[0], centre[1], room.room_dim_m[0] - centre[0], room.room_dim_m[1] - centre[1]) >= 0.5


def test_spread_absorption_keeps_the_total_and_the_rt60():
    dim = (7.0, 5.0, 3.0)
    areas = simulate.surface_areas(dim)
    assert areas.sum() == pytest.approx(2 * (7 * 5 + 7 * 3 + 5 * 3))
    alpha = simulate.surface_absorption(0.2, dim, 1.0, np.random.default_rng(1))
    assert areas @ alpha / areas.sum() == pytest.approx(0.2)
    assert alpha.max() / alpha.min() > 1.5 and np.all((alpha >= 0.01) & (alpha <= 0.99))
    settings = SimSettings(anechoic_prob=0.0, rt60_s=(0.5, 0.9), positions_per_room=3, wall_absorption_spread=1.0)
    rng = np.random.default_rng(5)
    ratios = []
    for _ in range(3):
        room = simulate.simulate_room(settings, rng)
        ratios.append(np.median([_t30_s(room.rirs[p, m]) for p in range(3) for m in (0, 4)]) / room.rt60_s)
    assert 0.75 < np.median(ratios) < 1.3, ratios
