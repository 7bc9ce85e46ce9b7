"""Calibration that generalizes: the array's symmetries turn a recording onto other directions exactly
(golden, from exact fractional delays), whole positions are held out for validation, the install rule
keeps recall, and a talker who walks is labelled window by window along the walk."""

import numpy as np
import pytest

from edge_msl.arrays import SPEED_OF_SOUND_M_S, get_array
from edge_msl.regions import angular_distance_deg

cal = pytest.importorskip("train_tf.calibrate")
decision_sets = pytest.importorskip("train_tf.calibrate.validate").decision_sets
ARRAY = get_array("uca8-r10")
FS = 16000


def far_field(az_deg, sig):
    """(n, M) float: ``sig`` from a far-field direction, exact fractional delays at the nominal mics."""
    n = len(sig)
    u = np.array([np.cos(np.radians(az_deg)), np.sin(np.radians(az_deg))])
    delay = -(ARRAY.positions()[:, :2] @ u) / SPEED_OF_SOUND_M_S
    f = np.fft.rfftfreq(n, 1.0 / FS)
    return np.fft.irfft(np.fft.rfft(sig)[:, None] * np.exp(-2j * np.pi * f[:, None] * delay[None, :]), n=n, axis=0)


FE = cal.FrontEnd((1.0, -1.5, 0.3, 0.0, 0.5, -0.2, 0.0, -0.5), (2e-5, -1e-5, 0.0, 5e-6, 0.0, -2e-5, 1e-5, -1e-5),
                  (10.0, -5.0, 0.0, 3.0, -8.0, 0.0, 4.0, -4.0))


def test_the_uca8_has_16_symmetries_and_each_turns_a_source_exactly():
    syms = cal.array_symmetries(ARRAY)
    assert [(t, m) for t, m, _ in syms] == [(45.0 * k, False) for k in range(8)] + [(45.0 * k, True) for k in range(8)]
    sig = np.random.default_rng(0).standard_normal(4096)
    for az in (0.0, 37.0, 200.5):
        for turn, mirrored, perm in syms:
            new_az = float(cal.turn_azimuth(az, turn, mirrored))
            want = far_field(new_az, sig) * 3000
            got = cal.turn_windows(np.round(far_field(az, sig) * 3000).astype(np.int16), perm, None, FS)
            assert np.abs(got - want).max() <= 1.0  # int16 rounding only
            # with mic errors: undone, turned, given back, so each physical mic keeps its own error
            got = cal.turn_windows(np.round(FE.apply(far_field(az, sig) * 3000, FS)).astype(np.int16), perm, FE, FS)
            assert np.abs(got - FE.apply(want, FS)).max() <= 2.0
            lab = cal.srp_label(got, ARRAY, FS, front_end=FE)
            assert angular_distance_deg(lab.azimuth_deg, new_az) <= 1.0


def test_an_array_without_symmetry_has_only_the_identity():
    from edge_msl.arrays import from_dict

    odd = from_dict({"name": "odd", "positions_m": [[0.1, 0, 0], [0, 0.07, 0], [-0.05, -0.02, 0], [0.02, -0.09, 0]]})
    syms = cal.array_symmetries(odd)
    assert len(syms) == 1 and syms[0][0] == 0.0 and not syms[0][1]


@pytest.mark.parametrize("n, held", [(3, 0), (4, 1), (8, 2), (12, 3), (16, 4)])
def test_held_out_positions_are_spread_between_recorded_ones(n, held):
    az = (np.arange(n) * 360.0 / n + 7.0) % 360.0
    mask = cal.heldout_positions(np.random.default_rng(1).permutation(az), 0.25)
    assert mask.sum() == held
    if held >= 2:
        gaps = np.diff(np.sort(np.flatnonzero(mask[np.argsort(np.random.default_rng(1).permutation(az))])))
        assert gaps.min() >= n // held - 1  # no two held-out positions next to each other


def test_install_rule_refuses_a_model_that_loses_recall():
    before = {"err_mean": 2.5, "f1": 0.95, "recall": 0.96}
    ok, _ = cal.is_better(before, {"err_mean": 1.5, "f1": 0.95, "recall": 0.955}, 0.0, 0.01)
    assert ok
    ok, why = cal.is_better(before, {"err_mean": 1.5, "f1": 0.96, "recall": 0.94}, 0.0, 0.01)
    assert not ok and "recall 0.940" in why


def _s(err, f1=0.98, recall=0.98, n=100):
    """A scored set as ``validate`` stores it (``_summary``): ``n`` sources, detections from precision = F1."""
    hits = int(round(recall * n))
    prec = f1 * recall / (2 * recall - f1)
    return {"windows": n, "sources": n, "hits": hits, "err_mean": err, "err_median": err, "recall": hits / n,
            "precision": prec, "f1": f1}


def _val(per_pos, held=(0.98, 0.98), tails=None):
    """``validate``'s ``sets`` and ``per_position`` from per-position (before, after) errors of the held-out
    positions; F1/recall of the held-out windows ``held`` (after; before 0.98), of the recorded tails
    ``tails`` (after; before 0.98)."""
    eb, ea = np.mean([b for b, _ in per_pos]), np.mean([a for _, a in per_pos])
    sets = {"all": {"before": _s(eb), "after": _s(ea, *held)}}
    if tails is not None:
        sets["recorded_mixture"] = {"before": _s(2.0, n=200), "after": _s(1.0, *tails, n=200)}
    pp = {f"pos-{i:02d}": {"before": _s(b, n=30), "after": _s(a, n=30)} for i, (b, a) in enumerate(per_pos)}
    return sets, pp


def _decide(per_pos, **kw):
    s = cal.CalibrationSettings()
    d = decision_sets(*_val(per_pos, **kw), s)
    return cal.is_better(d["before"], d["after"], s.f1_tolerance, s.recall_tolerance, d["error_margin_deg"]), d


def test_install_rule_lets_one_locally_worse_held_out_position_pass_but_not_a_shared_worsening():
    """What the grids measured (docs/experiments/calibration-generalization.md): with 2-4 held-out positions
    one direction where the model (or the self-label) is locally off made better models look worse
    (12 positions seed 0: 1.23->0.59, 1.13->3.01, 1.82->1.25); the margin is the per-position change's
    standard error, capped at 0.5 deg, so that one passes while a worsening shared by every held-out
    position, even small, and any worsening beyond 0.5 deg are refused."""
    (ok, why), d = _decide([(1.23, 0.59), (1.13, 3.01), (1.82, 1.25)])
    assert ok and 0.49 < d["error_margin_deg"] <= 0.5, (why, d)
    (ok, why), d = _decide([(1.2, 1.5), (1.1, 1.4), (1.8, 2.1)])  # +0.3 at every position: no spread
    assert not ok and d["error_margin_deg"] < 0.01 and "not lower" in why
    (ok, why), _ = _decide([(1.2, 0.6), (1.1, 4.0), (1.8, 1.6)])  # +0.63 on average: beyond the cap
    assert not ok and "margin" in why
    (ok, why), d = _decide([(2.0, 1.0)])  # one held-out position: no spread to go by, strictly lower
    assert ok and d["error_margin_deg"] == 0.0
    assert not _decide([(2.0, 2.1)])[0][0]


def test_install_rule_pools_f1_and_recall_with_the_recorded_positions():
    """F1/recall of the held-out windows alone (2-4 positions) fell by 0.015-0.028 where they rose at fresh
    positions (16 positions seed 0); pooled with the recorded positions' later windows the rule reads them
    from more talkers, and a loss shared by both still refuses."""
    per = [(2.0, 1.5), (3.0, 2.0)]
    assert not _decide(per, held=(0.96, 0.955))[0][0]  # held-out windows alone: recall 0.98 -> 0.955
    (ok, why), d = _decide(per, held=(0.96, 0.955), tails=(0.99, 0.99))
    assert ok and d["f1_recall_from"] == ["all", "recorded_mixture"], why
    (ok, why), _ = _decide(per, held=(0.96, 0.955), tails=(0.97, 0.95))
    assert not ok and ("recall" in why or "F1" in why), why


def walking_talker(seconds, az0, rate_deg_s, rng, block=1024):
    """A talker who walks at ``rate_deg_s`` and pauses (1.5 s on, 1 s off), exact delays per 64 ms block,
    through the mic errors ``FE``; returns (int16 audio, true azimuth of every sample)."""
    n = int(seconds * FS) // block * block
    out = np.zeros((n, ARRAY.n_mics))
    truth = np.zeros(n)
    for b in range(0, n, block):
        t = (b + block / 2) / FS
        az = (az0 + rate_deg_s * t) % 360.0
        truth[b:b + block] = az
        on = (t % 2.5) < 1.5
        out[b:b + block] = far_field(az, rng.standard_normal(block)) * (1.0 if on else 0.0)
    out += 0.003 * rng.standard_normal(out.shape)
    out = FE.apply(out, FS)
    return np.round(out / np.abs(out).max() * 8000).astype(np.int16), truth


def test_a_walking_talker_is_labelled_window_by_window_along_the_walk():
    rng = np.random.default_rng(3)
    audio, truth = walking_talker(16.0, 30.0, 20.0, rng)  # 320 deg walked in 16 s
    lab = cal.label_moving(audio, ARRAY, FS, 8000, 500)
    n = len(lab["start"])
    assert n >= 150, n  # hundreds of windows per minute, not two
    mid = truth[lab["start"] + 4000]
    err = angular_distance_deg(lab["azimuth_deg"], mid)
    assert np.median(err) <= 1.5 and err.max() <= 6.0, (np.median(err), err.max())
    assert lab["front_end"] is not None  # the walk went all around: the mics' errors were estimated
    rel = lambda v: np.asarray(v) - np.mean(v)  # noqa: E731
    assert np.abs(rel(lab["front_end"].delay_s) - rel(FE.delay_s)).max() <= 6e-6


def test_a_narrow_walk_does_not_estimate_the_mics():
    audio, _ = walking_talker(6.0, 100.0, 4.0, np.random.default_rng(4))
    lab = cal.label_moving(audio, ARRAY, FS, 8000, 1000)
    assert len(lab["start"]) > 0 and lab["front_end"] is None


def test_build_holds_out_whole_positions_and_keeps_turned_copies_off_them(tmp_path):
    rng = np.random.default_rng(5)
    settings = cal.CalibrationSettings(n_simulated=0, n_mixtures=60, n_val_mixtures=20, max_singles=40,
                                       front_end_iterations=0)
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000, None, settings)
    az = (np.arange(8) * 45.0 + 10.0) % 360
    for a in az:
        session.add_clip(np.round(far_field(a, rng.standard_normal(3 * FS)) * 3000).astype(np.int16),
                         azimuth_deg=float(a))
    walk, _ = walking_talker(10.0, 0.0, 30.0, rng)
    session.add_clip(walk, moving=True)
    labels = cal.label_positions(session)
    assert labels[-1]["moving"] and labels[-1]["accepted"] and labels[-1]["windows"] >= 40
    counts = cal.build_set(session)
    assert counts["positions_held_out"] == 2
    with np.load(session.dir / "set.npz") as z:
        held = np.flatnonzero(z["heldout_positions"])
        assert not np.isin(z["train_position"], held).any()  # never trained on, not even turned
        assert np.isin(z["val_position"][:, 0], held).all()
        fixed = z["train_azimuth_deg"][z["train_position"][:, 0] >= 0]
        train_az = fixed[np.isfinite(fixed)]  # the walk passes everywhere; the fixed positions' copies must not
        assert len(z["tune_audio"]) > 0
        walk_rows = (z["train_position"][:, 0] == -1)
        assert walk_rows.sum() > 40  # the walk's windows (and their turned copies) train too
    gap = np.min(angular_distance_deg(train_az[:, None], az[held][None, :]), axis=1)
    assert gap.min() >= settings.heldout_clearance_deg
    # 8 positions 45 deg apart all turn onto the same 8 directions and their 8 mirror images; the 2 on the
    # held-out positions are left out: 14, against 6 recorded
    assert len(np.unique(np.round(train_az) % 360)) == 14


def test_hybrid_sums_add_a_simulated_talker_elsewhere_at_the_real_ones_level():
    rng = np.random.default_rng(9)
    real_az = np.array([10.0, 100.0, 250.0])
    train = {"audio": np.stack([np.round(far_field(a, rng.standard_normal(8000)) * 2000).astype(np.int16)
                                for a in real_az]),
             "azimuth_deg": np.stack([real_az, np.full(3, np.nan)], axis=1), "distance_m": np.full((3, 2), np.nan),
             "position": np.stack([np.arange(3), -np.ones(3, np.int64)], axis=1), "kind": np.array(["single"] * 3)}
    sim_az = np.array([[20.0, np.nan, np.nan, np.nan], [200.0, np.nan, np.nan, np.nan], [30.0, 90.0, np.nan, np.nan]])
    sim = {"audio": np.stack([np.round(far_field(a, rng.standard_normal(8000)) * 300).astype(np.int16)
                              for a in sim_az[:, 0]]),
           "azimuth_deg": sim_az, "distance_m": np.where(np.isfinite(sim_az), 1.5, np.nan),
           "level_db": np.zeros((3, 4))}
    hyb = cal.build._hybrid_sums(train, sim, 40, 30.0, 3.0, np.random.default_rng(0))
    assert len(hyb["audio"]) == 40 and (hyb["kind"] == "mixture").all()
    # only the one-source simulated window 30 deg or more away (200 deg; 20 deg is within 30 of 10 deg and the
    # two-source one is never used) and the real window's own label
    assert set(hyb["azimuth_deg"][:, 1]) <= {20.0, 200.0}
    assert (angular_distance_deg(hyb["azimuth_deg"][:, 0], hyb["azimuth_deg"][:, 1]) >= 30.0).all()
    assert np.allclose(hyb["distance_m"][:, 1], 1.5)
    for w, (a, b) in zip(hyb["audio"], hyb["azimuth_deg"]):
        i, j = int(np.flatnonzero(real_az == a)[0]), int(np.flatnonzero(sim_az[:, 0] == b)[0])
        rest = w.astype(np.float64) - train["audio"][i]  # sound adds: what is left is the scaled simulated one
        g = float(np.sum(rest * sim["audio"][j]) / np.sum(sim["audio"][j].astype(np.float64) ** 2))
        assert np.abs(rest - g * sim["audio"][j]).max() <= 1.0  # int16 rounding
        level = 20 * np.log10(g * np.std(sim["audio"][j].astype(np.float64)) / np.std(train["audio"][i].astype(float)))
        assert abs(level) <= 3.0 + 0.05


def test_weights_are_interpolated_towards_the_original_ones():
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    w0 = [v.numpy() for v in model.weights]
    tuned = [w + 1.0 + np.arange(w.size).reshape(w.shape) for w in w0]
    for v, w in zip(model.weights, tuned):
        v.assign(w)
    cal.interpolate_weights(model, w0, 0.7)
    for v, a, b in zip(model.weights, tuned, w0):
        assert np.allclose(v.numpy(), 0.7 * a + 0.3 * b, atol=1e-6)
    with pytest.raises(ValueError):
        cal.interpolate_weights(model, w0[:1], 0.5)


def _tiny_session(tmp_path, settings):
    """(session with a set.npz of 8 far-field windows, Keras dir of the shipped model's parameters with a tiny
    network): ``finetune``'s code path in seconds."""
    import json

    from train_tf.model import ModelConfig, build_model
    from train_tf.model_dir import PARAMS, WEIGHTS

    src = cal.default_keras_model("uca8-r10")
    if not (src / PARAMS).exists():
        pytest.skip(f"{src} (the float model's params) is not in this checkout")
    params = json.loads((src / PARAMS).read_text())
    params["model"] = {**params["model"], "first_filters": 4, "block_filters": [4] * len(params["model"]["block_filters"]),
                       "dense_units": 8}
    keras_dir = tmp_path / "tiny"
    keras_dir.mkdir()
    build_model(ModelConfig.from_dict(params["model"])).save_weights(keras_dir / WEIGHTS)
    (keras_dir / PARAMS).write_text(json.dumps(params))
    rng = np.random.default_rng(3)
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000, None, settings)
    az = np.array([[40.0, np.nan], [200.0, np.nan]] * 4)
    audio = np.stack([np.round(far_field(a, rng.standard_normal(8000)) * 2000).astype(np.int16) for a in az[:, 0]])
    np.savez(session.dir / "set.npz", train_audio=audio, train_azimuth_deg=az, train_distance_m=np.full(az.shape, 1.5),
             sim_audio=audio[:0], sim_azimuth_deg=np.zeros((0, 4)), sim_distance_m=np.zeros((0, 4)),
             sim_level_db=np.zeros((0, 4)))
    return session, keras_dir


def test_finetune_keeps_the_default_mix_of_the_tuned_and_the_original_weights(tmp_path, monkeypatch):
    """``finetune`` hands its trained model and the weights it started from to ``interpolate_weights`` with the
    default a (0.9), and what it saves is that mix (frozen weights equal the original ones, trained ones moved
    by 0.9 of the fine-tune)."""
    pytest.importorskip("keras")
    import importlib

    from train_tf.model_dir import load_model

    ft_module = importlib.import_module("train_tf.calibrate.finetune")  # the module, not the re-exported function
    assert cal.CalibrationSettings().weight_interpolation == 0.9
    session, keras_dir = _tiny_session(tmp_path, cal.CalibrationSettings(epochs=1, batch_size=8, train_layers=("heads",)))
    seen = {}
    real = ft_module.interpolate_weights

    def spy(model, original, alpha):
        seen["tuned"] = [v.numpy() for v in model.weights]
        seen["original"], seen["alpha"] = original, alpha
        real(model, original, alpha)

    monkeypatch.setattr(ft_module, "interpolate_weights", spy)
    cal.finetune(session, keras_dir)
    assert seen["alpha"] == 0.9
    saved, _ = load_model(session.dir / "model")
    moved = 0
    for v, tuned, w0 in zip(saved.weights, seen["tuned"], seen["original"]):
        assert np.allclose(v.numpy(), 0.9 * tuned + 0.1 * w0, atol=1e-6)
        moved += not np.allclose(tuned, w0)
    assert moved > 0  # the heads did train


def test_the_learning_rate_falls_along_a_half_cosine_to_its_final_fraction():
    from train_tf.calibrate.finetune import learning_rate_at

    rates = [learning_rate_at(k, 9, 2e-4, 0.25) for k in range(9)]
    assert rates[0] == pytest.approx(2e-4) and rates[-1] == pytest.approx(0.5e-4)
    assert rates[4] == pytest.approx(0.5 * (2e-4 + 0.5e-4))  # half way: the mean of the two ends
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert learning_rate_at(5, 9, 2e-4, 1.0) == pytest.approx(2e-4)


def test_finetune_steps_with_the_scheduled_learning_rate(tmp_path, monkeypatch):
    """With ``final_learning_rate`` below 1 every optimizer step runs at the schedule's rate (8 windows, batch 4, 2
    epochs: 4 steps, the last at the final fraction); the sidecar records the setting."""
    keras = pytest.importorskip("keras")
    import json

    from train_tf.calibrate.finetune import learning_rate_at

    session, keras_dir = _tiny_session(tmp_path, cal.CalibrationSettings(
        epochs=2, batch_size=4, train_layers=("heads",), learning_rate=1e-3, final_learning_rate=0.1))
    used = []
    train_on_batch = keras.Model.train_on_batch

    def spy(self, *a, **kw):
        used.append(float(np.asarray(self.optimizer.learning_rate)))
        return train_on_batch(self, *a, **kw)

    monkeypatch.setattr(keras.Model, "train_on_batch", spy)
    cal.finetune(session, keras_dir)
    assert used == pytest.approx([learning_rate_at(k, 4, 1e-3, 0.1) for k in range(4)], rel=1e-5)
    assert used[0] == pytest.approx(1e-3, rel=1e-5) and used[-1] == pytest.approx(1e-4, rel=1e-5)
    assert json.loads((session.dir / "model" / "params.json").read_text())["calibrated"]["final_learning_rate"] == 0.1


def test_self_labels_over_a_wider_band_once_the_mic_errors_are_undone(tmp_path):
    """``label_max_freq_hz`` widens the band of the relabelling with the estimated mic errors undone: from 8
    far-field directions through known mic errors the labels land within a degree of the truth (and the
    nominal ones, biased by the errors, are kept beside them); a band above the sample rate's Nyquist is
    clipped to it, and one outside 1-8 kHz is refused with the key named."""
    rng = np.random.default_rng(7)
    az = (np.arange(8) * 45.0 + 11.0) % 360
    for top in (6000.0, 8000.0):
        settings = cal.CalibrationSettings(label_max_freq_hz=top, front_end_iterations=6)
        session = cal.Session.create(tmp_path / f"s{top:g}", ARRAY, FS, 8000, settings=settings)
        for k, a in enumerate(az):
            clip = FE.apply(np.round(far_field(a, rng.standard_normal(2 * FS)) * 3000).astype(np.int16), FS)
            session.add_clip(clip, name=f"p{k}")
        labels = cal.label_positions(session)
        assert all(lb["accepted"] and lb["front_end"] for lb in labels)
        err = angular_distance_deg(np.array([lb["azimuth_deg"] for lb in labels]), az)
        nominal = angular_distance_deg(np.array([lb["nominal_azimuth_deg"] for lb in labels]), az)
        assert err.max() <= 1.0 and err.mean() <= 0.6, err
        assert err.mean() < nominal.mean(), (err, nominal)
    with pytest.raises(ValueError, match="label_max_freq_hz"):
        cal.CalibrationSettings.from_dict({"label_max_freq_hz": 12000})
