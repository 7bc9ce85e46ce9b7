"""The learned post-filter of per-talker audio (edge_msl.separate_nn): its features carry across blocks, its
weights name what they were trained on, and with the bundled weights it brings real voices in a simulated room
nearer their references than the spatial mask's gains do."""

from __future__ import annotations

import numpy as np
import pytest

from edge_msl.separate_nn import DEFAULT_WEIGHTS, FEATURES, N_FEATURES, PostfilterNet, TrackState, features


def _block(rng, k_n: int, t_n: int, f_n: int = 513):
    y = rng.standard_normal((k_n, t_n, f_n)) + 1j * rng.standard_normal((k_n, t_n, f_n))
    masks = rng.uniform(size=(k_n, t_n, f_n)) / k_n
    x0 = rng.standard_normal((t_n, f_n)) + 1j * rng.standard_normal((t_n, f_n))
    return y, masks, np.maximum(masks, 0.1), x0


def test_features_carry_across_blocks():
    """Six frames at once, or two then four with each track's state carried: the same features."""
    rng = np.random.default_rng(1)
    y, masks, gains, x0 = _block(rng, 2, 6)
    floor = np.full(513, 1e-3)
    freqs = np.linspace(0.0, 8000.0, 513)
    match = rng.uniform(size=(2, 6, 513))
    whole = features(y, masks, gains, x0, floor, freqs, [TrackState(), TrackState()], match)
    states = [TrackState(), TrackState()]
    a = features(y[:, :2], masks[:, :2], gains[:, :2], x0[:2], floor, freqs, states, match[:, :2])
    b = features(y[:, 2:], masks[:, 2:], gains[:, 2:], x0[2:], floor, freqs, states, match[:, 2:])
    assert whole.shape == (2, 6, 513, N_FEATURES) and np.all(np.isfinite(whole))
    np.testing.assert_array_equal(np.concatenate([a, b], axis=1), whole)
    # the time features see the frame before: they differ from a fresh state's
    fresh = features(y[:, 2:], masks[:, 2:], gains[:, 2:], x0[2:], floor, freqs, [TrackState(), TrackState()],
                     match[:, 2:])
    for name in ("beam_change_db", "mask_logit_prev2", "direct_match_prev"):
        assert not np.array_equal(fresh[:, 0, :, FEATURES.index(name)], b[:, 0, :, FEATURES.index(name)]), name


def test_weights_trained_on_other_features_are_refused(tmp_path):
    path = tmp_path / "old.npz"
    names = np.array(list(FEATURES[:3]) + ["spectral_flux"])
    np.savez(path, n_layers=np.array(1), features=names, w0=np.zeros((4, 1)), b0=np.zeros(1))
    with pytest.raises(ValueError, match="spectral_flux.*retrain it"):
        PostfilterNet.load(path)


def test_a_network_reads_the_features_its_weights_name(tmp_path):
    """Weights naming a subset of the features, in their own order, read those columns."""
    path = tmp_path / "two.npz"
    names = ["beam_to_mic_db", "mask_logit"]
    np.savez(path, n_layers=np.array(1), features=np.array(names), w0=np.array([[1.0], [-2.0]]), b0=np.zeros(1))
    net = PostfilterNet.load(path)
    x = np.random.default_rng(3).standard_normal((5, N_FEATURES)).astype(np.float32)
    z = x[:, FEATURES.index("beam_to_mic_db")] - 2.0 * x[:, FEATURES.index("mask_logit")]
    np.testing.assert_allclose(net(x), 1.0 / (1.0 + np.exp(-z)), rtol=1e-6)


def test_bundled_network_gives_gains_between_zero_and_one():
    net = PostfilterNet.load(DEFAULT_WEIGHTS)
    assert set(net.names) <= set(FEATURES)
    assert net.layers[0][0].shape[0] == len(net.names) and net.layers[-1][0].shape[1] == 1
    rng = np.random.default_rng(2)
    y, masks, gains, x0 = _block(rng, 3, 4)
    g = net(features(y, masks, gains, x0, np.full(513, 1e-3), np.linspace(0, 8000, 513),
                     [TrackState() for _ in range(3)], rng.uniform(size=(3, 4, 513))))
    assert g.shape == (3, 4, 513) and np.all((g > 0) & (g < 1))


def test_learned_postfilter_brings_real_voices_nearer_their_references(bank_path):
    """Two and three talkers of real voices in simulated rooms (RT60 0.2-0.5 s), the whole pipeline (int8 model,
    decode, separator): with the learned post-filter the streams are nearer their early images than with the
    spatial mask's gains (measured +0.85 to +1.32 dB a scene), and nearer their direct sound in every scene
    (+0.11 to +0.34 dB)."""
    from benchmarks.separation_bench import run_edge, score, talker_streams
    from edge_msl.runtime import load_model
    from edge_msl.separate import SeparateSettings
    from train_tf.separation_scenes import render_scene
    from train_tf.signals import DryBank

    bank = DryBank.load(bank_path)
    model = load_model(None)
    early, direct = [], []
    for seed, k in ((71, 2), (72, 3), (73, 2)):
        scene = render_scene(bank, "uca8-r10", seed, k, (0.2, 0.5), 5.0)
        got = {}
        for learned in (False, True):
            tracks, dirs, _, _, starts = run_edge(scene, model, SeparateSettings(learned=learned))
            rows = score(talker_streams(tracks, dirs, scene.azimuth_deg, len(scene.audio), starts), scene)
            got[learned] = np.array([[r["improvement_db"], r["improvement_db_direct"]] for r in rows]).mean(axis=0)
        early.append(got[True][0] - got[False][0])
        direct.append(got[True][1] - got[False][1])
    assert np.mean(early) > 0.6 and min(early) > 0.3, early
    assert min(direct) > 0.0, direct


def test_direct_match_is_one_for_a_plane_wave_from_the_track():
    """The ``direct_match`` feature, from the separator's own frames (physics, not a fitted number): a plane wave from
    40 deg scores about 1 for a track steered there and far less for one at 170 deg (0.9999 and 0.073 measured)."""
    from test_separate import FS, arrival

    from edge_msl.arrays import get_array
    from edge_msl.separate import SeparateSettings, Separator

    array = get_array("uca8-r10")
    mix = arrival(array, 0.1 * np.random.default_rng(0).standard_normal(2 * FS), 40.0, 20.0)
    got = {}
    for az in (40.0, 170.0):
        sep = Separator(array.positions(), FS, SeparateSettings(learned=False))
        seen = []
        sep.observer = lambda s, ids, first, y, feats, spec: seen.append(feats[0, :, :, FEATURES.index("direct_match")])
        msgs = [(end, {"t_s": end / FS, "sources": [{"id": 1, "azimuth_deg": az, "elevation_deg": 20.0}]})
                for end in range(8000, len(mix) + 1, 1600)]
        sep.push(mix, msgs)
        sep.close()
        got[az] = float(np.median(np.concatenate(seen)[:, 7:256]))  # 100 Hz - 4 kHz
    assert got[40.0] > 0.99 and got[170.0] < 0.3, got


def test_config_names_weights_it_cannot_load(tmp_path):
    """[separate] learned_weights: relative to the config file; a file that is not the network's weights is one
    error naming the key, the value and the fix."""
    from edge_msl.config import ConfigError, load_config

    (tmp_path / "pf.npz").write_bytes(DEFAULT_WEIGHTS.read_bytes())
    cfg = tmp_path / "edge-msl.toml"
    cfg.write_text('[separate]\ndir = "tracks"\nlearned_weights = "pf.npz"\n')
    assert load_config(cfg).separate["learned_weights"] == str(tmp_path / "pf.npz")
    cfg.write_text('[separate]\ndir = "tracks"\nlearned_weights = "nope.npz"\n')
    with pytest.raises(ConfigError, match=r"learned_weights = 'nope.npz': cannot load it .*separate_postfilter train"):
        load_config(cfg)


def test_beams_mask_is_not_given_the_learned_gains():
    """The network reads spatial posteriors: with ``mask = 'beams'`` the former post-filter runs, whatever
    ``learned`` says (the same samples), while with the spatial mask ``learned`` changes them."""
    from test_separate import FS, arrival

    from edge_msl.arrays import get_array
    from edge_msl.separate import SeparateSettings, Separator

    array = get_array("uca8-r10")
    rng = np.random.default_rng(4)
    mix = arrival(array, 0.1 * rng.standard_normal(2 * FS), 40.0, 20.0) + \
        arrival(array, 0.1 * rng.standard_normal(2 * FS), 200.0, 10.0)
    msgs = [(end, {"t_s": end / FS, "sources": [{"id": 1, "azimuth_deg": 40.0, "elevation_deg": 20.0},
                                                 {"id": 2, "azimuth_deg": 200.0, "elevation_deg": 10.0}]})
            for end in range(8000, len(mix) + 1, 1600)]

    def out(**kw):
        sep = Separator(array.positions(), FS, SeparateSettings(**kw))
        chunks = sep.push(mix, msgs) + sep.close()
        return np.concatenate([c.samples for c in chunks if c.id == 1])

    assert np.array_equal(out(mask="beams", learned=True), out(mask="beams", learned=False))
    assert not np.array_equal(out(learned=True), out(learned=False))
