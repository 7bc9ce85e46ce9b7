"""On-the-fly mixer: golden tests against a plain numpy rendering of the same plan, the diffuse
field's coherence, labels, determinism, the train/validation split and picking up new shards."""

import shutil

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("pyroomacoustics")

import keras
from scipy.signal import csd, fftconvolve, welch

from edge_msl.arrays import SPEED_OF_SOUND_M_S
from edge_msl.features import normalize_window
from edge_msl.regions import ACTIVE, RegionLayout, angular_distance_deg, encode_batch
from train_tf import simulate
from train_tf.mixer import MAX_SOURCES, Mixer
from train_tf.signals import DryBank
from train_tf.simulate import SimSettings

BANK_SETTINGS = SimSettings(window_s=0.25, rir_bank_samples=2048, max_image_order=4, positions_per_room=6)
BANK_SEED = 5
N_ROOMS = 4  # shard size 1: shard 0 validates, shards 1-3 train
LAYOUT = RegionLayout()
SOME_SOURCES = (0.0, 0.25, 0.25, 0.25, 0.25)
QUIET = {"snr_diffuse_db": (200.0, 200.0), "snr_sensor_db": (200.0, 200.0)}


def _write_bank(out, n_rooms):
    simulate.write_dataset(out, "rir-bank", n_rooms, BANK_SETTINGS, BANK_SEED, None, shard_size=1, workers=2,
                           progress=False)


@pytest.fixture(scope="module")
def rir_bank(tmp_path_factory):
    """Four tiny rooms (2048-sample RIRs, 6 positions each), one room per shard."""
    out = tmp_path_factory.mktemp("rir") / "bank"
    _write_bank(out, N_ROOMS)
    return out


@pytest.fixture(scope="module")
def dry(bank_path):
    return DryBank.load(bank_path)


def _mixer(rir_bank, dry, part="train", seed=1, n_sources_p=SOME_SOURCES, **changes):
    settings = BANK_SETTINGS.replace(**changes) if changes else None
    return Mixer(rir_bank, dry, LAYOUT, part, settings=settings, n_sources_p=n_sources_p, noise_tape_s=5.0,
                 seed=seed)


def _numpy_render(mixer, plan, shift=0, equalize=False):
    """What ``Mixer.render`` must return for a noise-free plan, in float64 numpy; ``shift`` moves
    the kept part of the convolution by that many samples (a deliberately wrong variant)."""
    r, p, m, length = mixer.rooms["rirs"].shape
    rirs = mixer.rooms["rirs"].reshape(r * p, m, length).astype(np.float64)
    out, pcms = [], []
    for b in range(len(plan["room"])):
        clean = np.zeros((m, mixer.window))
        for j in range(int(plan["n_sources"][b])):
            off = int(plan["dry_off"][b, j])
            seg = mixer.dry.audio[off:off + mixer.seg_len].astype(np.float64)
            seg = seg - seg.mean()
            seg = seg / np.sqrt(np.mean(seg ** 2)) * plan["amp"][b, j]
            if mixer.settings.gate_prob > 0:  # talking from gate_on to gate_off, 10 ms ramps
                n, ramp = np.arange(mixer.seg_len), 0.01 * mixer.fs
                seg = seg * (np.clip((n - plan["gate_on"][b, j]) / ramp, 0, 1)
                             * np.clip((plan["gate_off"][b, j] - n) / ramp, 0, 1))
            parts = [(seg, plan["pos"][b, j])]
            if j == 0 and mixer.settings.move_prob > 0 and plan["move_on"][b]:  # start -> middle -> end
                u = np.clip((np.arange(mixer.seg_len) - (length - 1)) / mixer.window, 0, 1)
                parts = [(seg * np.clip(1 - 2 * u, 0, 1), plan["pos"][b, j]),
                         (seg * (1 - np.abs(2 * u - 1)), plan["move_pos"][b, 0]),
                         (seg * np.clip(2 * u - 1, 0, 1), plan["move_pos"][b, 1])]
            for part, pos in parts:
                full = fftconvolve(part[None, :], rirs[pos], axes=1)
                clean += full[:, length - 1 + shift:length - 1 + shift + mixer.window]  # the 'valid' part
            if "echo_gain" in plan and plan["echo_gain"][b, j] > 0:  # integer delays only
                d = int(round(float(plan["echo_delay"][b, j])))
                echo = fftconvolve(seg[None, :], rirs[plan["echo_pos"][b, j]], axes=1)
                clean += plan["echo_gain"][b, j] * echo[:, length - 1 - d:length - 1 - d + mixer.window]
        clean *= mixer.rooms["mic_gain"][plan["room"][b]][:, None]
        p_ref = np.mean(clean ** 2) if plan["n_sources"][b] else 1.0
        audio = clean * 10.0 ** (plan["level_dbfs"][b] / 20.0) / np.sqrt(p_ref)
        pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16).T
        pcms.append(pcm)
        out.append(normalize_window(pcm, equalize=equalize))
    return np.stack(out), np.stack(pcms)


def test_render_equals_a_numpy_convolution_of_the_plan(rir_bank, dry):
    """Golden test: with noise switched off, every window is the sum of its dry segments (zero
    mean, unit RMS, times amp) convolved with the planned RIRs (the 'valid' part), times the
    room's mic gains, set to the planned level, quantized to int16 and normalized. The only
    allowed difference is a float32 rounding flip of one int16 step."""
    mixer = _mixer(rir_bank, dry, seed=2, **QUIET)
    plan = mixer.plan(8)
    got = keras.ops.convert_to_numpy(mixer.render(plan))
    assert got.shape == (8, mixer.window, mixer.n_mics) and got.dtype == np.float32
    want, pcm = _numpy_render(mixer, plan)
    # one int16 step in normalized units, per window
    step = 1.0 / (32768.0 * (pcm / 32768.0 - (pcm / 32768.0).mean(axis=1, keepdims=True)).std(axis=(1, 2)))
    diff_steps = np.abs(got - want).max(axis=(1, 2)) / step
    assert np.all(diff_steps < 1.05), diff_steps
    assert np.mean(np.abs(got - want) > 0.5 * step[:, None, None]) < 1e-3
    # the tolerance is tight enough to see a one-sample error in the kept part of the convolution
    for shift in (-1, 1):
        wrong, _ = _numpy_render(mixer, plan, shift)
        assert np.all(np.abs(got - wrong).max(axis=(1, 2)) / step > 50), shift


def test_equalizing_render_equals_the_numpy_scaling(rir_bank, dry):
    """With ``equalize`` the mixer scales as ``normalize_window(equalize=True)`` does: each mic at
    the window's mean level. Mic gains of +-6 dB in the room make the plain and equalized inputs
    differ; rendered and numpy-scaled windows agree to float32 rounding."""
    settings = BANK_SETTINGS.replace(**QUIET)
    mixer = Mixer(rir_bank, dry, LAYOUT, "train", settings=settings, n_sources_p=SOME_SOURCES, noise_tape_s=5.0,
                  seed=3, equalize=True)
    mixer.rooms["mic_gain"] = mixer.rooms["mic_gain"] * 10.0 ** (np.linspace(-6, 6, mixer.n_mics) / 20.0)
    mixer._gain_t = keras.ops.convert_to_tensor(mixer.rooms["mic_gain"].astype(np.float32))  # the device copy
    plan = mixer.plan(6)
    got = keras.ops.convert_to_numpy(mixer.render(plan))
    want, pcm = _numpy_render(mixer, plan, equalize=True)
    plain, _ = _numpy_render(mixer, plan)
    # float32 rounding may flip an int16 step here and there (as in the golden test above)
    assert np.abs(got - want).max() < 0.02
    assert np.mean(np.abs(got - want) > 1e-4) < 1e-3
    assert np.abs(got - plain).max() > 0.1
    rms = np.sqrt(np.mean(got ** 2, axis=1))  # (windows, mics): equal within a window
    assert np.all(rms.max(axis=1) / rms.min(axis=1) < 1.01)
    assert mixer.sibling("val").equalize


def test_windows_without_sources_and_noise_are_silent(rir_bank, dry):
    mixer = _mixer(rir_bank, dry, n_sources_p=(1, 0, 0, 0, 0), **QUIET)
    plan = mixer.plan(4)
    assert np.all(plan["n_sources"] == 0) and np.all(plan["amp"] == 0)
    assert np.all(keras.ops.convert_to_numpy(mixer.render(plan)) == 0.0)


def test_diffuse_noise_has_the_isotropic_coherence(rir_bank, dry):
    """Golden test: noise-only windows of white diffuse noise have the real coherence
    sinc(2 f d / c) between every pair of mics (d their distance), e.g. about -0.22 near
    1.2 kHz for opposite mics of the 10 cm circle; independent channels would give 0."""
    mixer = _mixer(rir_bank, dry, n_sources_p=(1, 0, 0, 0, 0), snr_diffuse_db=(0.0, 0.0),
                   snr_sensor_db=(200.0, 200.0), diffuse_kinds=("white",), level_dbfs=(-20.0, -20.0))
    x = np.concatenate([keras.ops.convert_to_numpy(mixer.render(mixer.plan(32))) for _ in range(2)])
    x = x.astype(np.float64)
    freqs, psd = welch(x, mixer.fs, nperseg=128, axis=1)
    psd = psd.mean(axis=0)
    band = (freqs >= 100.0) & (freqs <= 7000.0)
    mics = mixer.array.positions()
    for i, j in [(0, 1), (0, 2), (0, 4), (1, 5), (3, 6)]:
        _, cross = csd(x[:, :, i], x[:, :, j], mixer.fs, nperseg=128, axis=1)
        coherence = cross.mean(axis=0) / np.sqrt(psd[:, i] * psd[:, j])
        expected = np.sinc(2.0 * freqs * np.linalg.norm(mics[i] - mics[j]) / SPEED_OF_SOUND_M_S)
        assert np.max(np.abs(coherence.real - expected)[band]) < 0.1, (i, j)
        assert np.max(np.abs(coherence.imag)[band]) < 0.1, (i, j)


def test_plan_labels_match_the_region_encoding(rir_bank, dry):
    mixer = _mixer(rir_bank, dry, n_sources_p=(0.2, 0.2, 0.2, 0.2, 0.2))
    plan = mixer.plan(64)
    n = plan["n_sources"].astype(int)
    assert plan["targets"].shape == (64, LAYOUT.n_regions, 3)
    assert n.min() >= 0 and n.max() <= MAX_SOURCES and len(set(n)) > 2
    assert np.array_equal(np.isfinite(plan["azimuth_deg"]).sum(axis=1), n)
    assert np.all((plan["amp"] > 0).sum(axis=1) == n)
    assert not np.any(plan["targets"][n == 0, :, ACTIVE])
    assert np.all(plan["targets"][n > 0, :, ACTIVE].sum(axis=1) >= 1)
    # labels are the room's stored positions, weighted by the direct-path level
    n_pos = mixer.rooms["rirs"].shape[1]
    room, slot = np.divmod(plan["pos"], n_pos)
    used = np.arange(MAX_SOURCES)[None, :] < n[:, None]
    assert np.all(room[used] == np.broadcast_to(plan["room"][:, None], room.shape)[used])
    assert np.array_equal(plan["azimuth_deg"][used], mixer.rooms["azimuth_deg"][room, slot][used])
    assert np.array_equal(plan["distance_m"][used], mixer.rooms["distance_m"][room, slot][used])
    with np.errstate(divide="ignore"):
        direct_db = 20.0 * np.log10(plan["amp"]) - 20.0 * np.log10(mixer.rooms["distance3d_m"][room, slot])
    direct_db = np.where(used, direct_db, -np.inf)
    weight = np.where(used, direct_db - direct_db.max(axis=1, keepdims=True), 0.0)
    want = encode_batch(LAYOUT, plan["azimuth_deg"], plan["distance_m"], weight)
    np.testing.assert_allclose(plan["targets"], want, atol=1e-6)
    # separation between simultaneous sources is respected
    for b in np.flatnonzero(n > 1):
        az = plan["azimuth_deg"][b, :n[b]].astype(np.float64)
        gaps = np.abs((az[:, None] - az[None, :] + 180.0) % 360.0 - 180.0)[np.triu_indices(n[b], 1)]
        assert gaps.min() >= BANK_SETTINGS.min_source_separation_deg - 1e-4


def test_plans_are_deterministic_for_a_seed(rir_bank, dry):
    a = _mixer(rir_bank, dry, seed=7).plan(16)
    b = _mixer(rir_bank, dry, seed=7).plan(16)
    c = _mixer(rir_bank, dry, seed=8).plan(16)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["dry_off"], c["dry_off"])


def test_validation_uses_only_shard_zero(rir_bank, dry):
    train = _mixer(rir_bank, dry, "train")
    val = _mixer(rir_bank, dry, "val")
    assert val.n_rooms == 1 and train.n_rooms == N_ROOMS - 1
    with np.load(rir_bank / "shard-00000.npz") as z:
        shard0 = z["rirs"]
    np.testing.assert_array_equal(val.rooms["rirs"], shard0)
    assert not any(np.array_equal(shard0[0], room) for room in train.rooms["rirs"])
    assert set(val.plan(16)["room"]) == {0}
    # the two parts draw different plans even with one seed
    assert not np.array_equal(train.plan(8)["dry_off"], val.plan(8)["dry_off"])


def test_refresh_picks_up_new_shards(rir_bank, dry, tmp_path):
    growing = tmp_path / "growing"
    shutil.copytree(rir_bank, growing)
    mixer = _mixer(growing, dry)
    assert mixer.n_rooms == N_ROOMS - 1 and mixer.refresh() is False
    _write_bank(growing, N_ROOMS + 1)  # resumes: keeps shards 0-3, adds shard 4
    assert mixer.refresh() is True and mixer.n_rooms == N_ROOMS
    assert mixer.refresh() is False and mixer.n_rooms == N_ROOMS
    # the new room is used by later plans and renders
    plan = mixer.plan(64)
    assert N_ROOMS - 1 in set(plan["room"])
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(mixer.render(plan))))


def test_a_window_dataset_is_not_an_rir_bank(tiny_dataset, dry):
    with pytest.raises(ValueError, match="not an RIR bank"):
        Mixer(tiny_dataset, dry, LAYOUT)


def test_bad_arguments_are_refused(rir_bank, dry):
    with pytest.raises(ValueError, match="part must be"):
        Mixer(rir_bank, dry, LAYOUT, part="test")
    with pytest.raises(ValueError, match="n_sources_p"):
        Mixer(rir_bank, dry, LAYOUT, n_sources_p=(0.5, 0.5))


def test_echoes_are_delayed_unlabelled_copies_from_elsewhere_in_the_room(rir_bank, dry):
    """echo_prob: each source also arrives through another position's RIR, echo_delay later and
    echo_gain_db below its direct path, at least echo_min_separation_deg from every source; the
    render equals the numpy convolution with those echoes added, and the labels are unchanged."""
    mixer = _mixer(rir_bank, dry, seed=3, echo_prob=1.0, echo_delay_ms=(2.0, 2.0), echo_gain_db=(-6.0, -3.0),
                   echo_min_separation_deg=40.0, **QUIET)
    plan = mixer.plan(16)
    n_pos = mixer.rooms["rirs"].shape[1]
    az, d3 = mixer.rooms["azimuth_deg"].reshape(-1), mixer.rooms["distance3d_m"].reshape(-1)
    echoed = 0
    for b in range(16):
        srcs = plan["pos"][b, :plan["n_sources"][b]]
        for j, src in enumerate(srcs):
            if plan["echo_gain"][b, j] == 0:
                continue
            echoed += 1
            q = plan["echo_pos"][b, j]
            assert q // n_pos == plan["room"][b]
            assert np.all(angular_distance_deg(az[q], az[srcs]) >= 40.0)
            rel_db = 20 * np.log10(plan["echo_gain"][b, j] * d3[src] / d3[q])
            assert -6.0 - 1e-4 <= rel_db <= -3.0 + 1e-4
            assert plan["echo_delay"][b, j] == pytest.approx(32.0)
        assert np.all(plan["echo_gain"][b, plan["n_sources"][b]:] == 0)
    assert echoed >= 10
    got = keras.ops.convert_to_numpy(mixer.render(plan))
    want, pcm = _numpy_render(mixer, plan)
    step = 1.0 / (32768.0 * (pcm / 32768.0 - (pcm / 32768.0).mean(axis=1, keepdims=True)).std(axis=(1, 2)))
    assert np.all(np.abs(got - want).max(axis=(1, 2)) / step < 1.05)
    # without the echoes the windows differ, and the labels are the same as an echo-free mixer's
    plain = {k: v for k, v in plan.items() if not k.startswith("echo")}
    without, _ = _numpy_render(mixer, plain)
    has_echo = plan["echo_gain"].max(axis=1) > 0
    assert np.all((np.abs(got - without).max(axis=(1, 2)) / step > 50)[has_echo])
    labels = encode_batch(LAYOUT, plan["azimuth_deg"].astype(np.float64), plan["distance_m"].astype(np.float64),
                          np.zeros(plan["azimuth_deg"].shape))
    np.testing.assert_array_equal(plan["targets"][..., ACTIVE], labels[..., ACTIVE])


@pytest.fixture(scope="module")
def walk_bank(tmp_path_factory):
    """Three tiny rooms whose first two positions start walking chains."""
    out = tmp_path_factory.mktemp("rir") / "walk"
    simulate.write_dataset(out, "rir-bank", 3, BANK_SETTINGS.replace(move_chains=2, move_step_deg=(20.0, 40.0)),
                           BANK_SEED, None, shard_size=1, workers=2, progress=False)
    return out


def test_walking_chains_step_along_an_arc(walk_bank, dry):
    """move_chains: positions P..P+3 continue positions 0 and 1 by half a step and a whole step
    (20-40 degrees either way round), at the same elevation and no farther away."""
    mixer = _mixer(walk_bank, dry)
    rooms = simulate.load_shards(simulate.shard_files(walk_bank))
    az, el, d3 = (rooms[k] for k in ("azimuth_deg", "elevation_deg", "distance3d_m"))
    assert az.shape[1] == 6 + 4 and mixer.n_chains == 2
    for r in range(az.shape[0]):
        for c in range(2):
            start, mid, end = c, 6 + 2 * c, 6 + 2 * c + 1
            half = (az[r, mid] - az[r, start] + 180) % 360 - 180
            whole = (az[r, end] - az[r, start] + 180) % 360 - 180
            assert 10.0 - 0.5 <= abs(half) <= 20.0 + 0.5 and whole == pytest.approx(2 * half, abs=1.0)
            assert np.allclose(el[r, [mid, end]], el[r, start], atol=0.5)
            assert np.all(d3[r, [mid, end]] <= d3[r, start] + 0.01)


def test_gated_and_walking_windows_render_and_label_as_planned(walk_bank, dry):
    """gate_prob, move_prob, min_voice_s: the render equals the numpy convolution with the gates and
    the start -> middle -> end cross-fade; a walker is labelled at its chain's middle; a source is
    labelled only with min_voice_s of voice inside the window, so some gated ones are heard but
    not labelled."""
    mixer = _mixer(walk_bank, dry, part="val", seed=4, gate_prob=0.6, move_prob=0.7, min_voice_s=0.1, **QUIET)
    plan = mixer.plan(24)
    got = keras.ops.convert_to_numpy(mixer.render(plan))
    want, pcm = _numpy_render(mixer, plan)
    step = 1.0 / (32768.0 * (pcm / 32768.0 - (pcm / 32768.0).mean(axis=1, keepdims=True)).std(axis=(1, 2)))
    # float32 against float64 around a gate's ramp: at most a couple of int16 steps
    assert np.all(np.abs(got - want).max(axis=(1, 2)) / step < 2.5)
    # and far from the same plan rendered without the walks (but where a chain could not leave
    # its start near a wall, or the walker stopped before the window)
    standing, _ = _numpy_render(_mixer(walk_bank, dry, part="val", seed=4, gate_prob=0.6, **QUIET), plan)
    assert np.mean((np.abs(got - standing).max(axis=(1, 2)) / step > 50)[plan["move_on"] > 0]) >= 0.8
    n_pos = mixer.rooms["rirs"].shape[1]
    az = mixer.rooms["azimuth_deg"].reshape(-1)
    walkers = np.flatnonzero(plan["move_on"])
    assert 8 <= len(walkers) < 24
    for b in walkers:
        start, mid = plan["pos"][b, 0], plan["move_pos"][b, 0]
        assert start // n_pos == mid // n_pos == plan["room"][b] and start % n_pos in (0, 1)
        if np.isfinite(plan["azimuth_deg"][b, 0]):
            assert plan["azimuth_deg"][b, 0] == pytest.approx(az[mid], abs=1e-3)
    gated = (plan["gate_on"] > -1e8) | (plan["gate_off"] < 1e8)
    rendered = np.arange(MAX_SOURCES)[None, :] < plan["n_sources"][:, None]
    silent = rendered & ~np.isfinite(plan["azimuth_deg"])
    assert np.any(gated & rendered) and np.any(silent)
    assert np.all(plan["n_present"] == np.sum(np.isfinite(plan["azimuth_deg"]), axis=1))
    # a gate that ends before the window leaves no voice in it: never labelled
    early = rendered & (plan["gate_off"] <= mixer.rir_len - 1)
    assert not np.any(np.isfinite(plan["azimuth_deg"][early]))
    # labels are the region encoding of the labelled sources only
    ok = np.isfinite(plan["azimuth_deg"])
    assert np.all(plan["targets"][..., ACTIVE].sum(axis=(1,)) >= 0)
    assert np.all(plan["targets"][..., ACTIVE].max(axis=1)[~ok.any(axis=1)] == 0)


def test_a_walker_is_labelled_at_its_chains_end_with_move_label_end(walk_bank, dry):
    """move_label "end": the same plan as "middle" but the walker's label is the chain's last point
    (where it is at the window's end); the other sources keep theirs."""
    kw = dict(part="val", seed=4, move_prob=0.7, **QUIET)
    middle = _mixer(walk_bank, dry, **kw).plan(16)
    end = _mixer(walk_bank, dry, move_label="end", **kw).plan(16)
    assert np.array_equal(middle["pos"], end["pos"]) and np.array_equal(middle["move_pos"], end["move_pos"])
    az = _mixer(walk_bank, dry, **kw).rooms["azimuth_deg"].reshape(-1)
    walkers = np.flatnonzero(end["move_on"])
    assert len(walkers) >= 6
    for b in walkers:
        assert end["azimuth_deg"][b, 0] == pytest.approx(az[end["move_pos"][b, 1]], abs=1e-3)
        assert middle["azimuth_deg"][b, 0] == pytest.approx(az[middle["move_pos"][b, 0]], abs=1e-3)
        assert abs(end["azimuth_deg"][b, 0] - middle["azimuth_deg"][b, 0]) > 1.0
        assert np.array_equal(end["azimuth_deg"][b, 1:], middle["azimuth_deg"][b, 1:], equal_nan=True)
    with pytest.raises(Exception, match="move_label"):
        _mixer(walk_bank, dry, move_label="start", **kw)


def test_walking_needs_a_bank_with_chains(rir_bank, dry):
    with pytest.raises(ValueError, match="move_chains"):
        _mixer(rir_bank, dry, move_prob=0.5)
