"""Evaluation: Hungarian matching on the circle, scoring, the table cells, and a whole run against
two pyroomacoustics baselines on the tiny window set."""

import json
import math

import numpy as np
import pytest

from train_tf import evaluate
from train_tf.evaluate import cells, match, score, summarize
from edge_msl.regions import RegionLayout

TINY = ["--block-filters", "8,8,16", "--first-filters", "8", "--dense-units", "16", "--batch-size", "8", "--quiet"]


def test_match_wraps_around_zero():
    assert match([359.0], [1.0]) == [(0, 0, pytest.approx(2.0))]
    assert match([1.0], [359.0]) == [(0, 0, pytest.approx(2.0))]
    assert match([180.0], [0.0])[0][2] == pytest.approx(180.0)


def test_match_finds_the_global_optimum_where_greedy_would_not():
    # greedy takes the closest pair first (est 10 -> true 9, 1 deg) and is left with 0 -> 30
    # (30 deg): 31 in all; the optimum pairs 0 -> 9 and 10 -> 30: 29 in all
    pairs = match([0.0, 10.0], [9.0, 30.0])
    assert sorted((e, t) for e, t, _ in pairs) == [(0, 0), (1, 1)]
    assert sum(err for _, _, err in pairs) == pytest.approx(29.0)
    # the same across the 0/360 border
    pairs = match([350.0, 0.0], [359.0, 20.0])
    assert sorted((e, t) for e, t, _ in pairs) == [(0, 0), (1, 1)]
    assert sum(err for _, _, err in pairs) == pytest.approx(29.0)


def test_match_within_a_radius_makes_as_many_hits_as_can_be_made():
    # by raw angles a far-off estimate (300) takes the source at 10 from the estimate at 12
    assert sorted((e, t) for e, t, d in match([12.0, 203.0, 300.0], [10.0, 100.0, 200.0]) if d <= 20) == [(1, 2)]
    pairs = match([12.0, 203.0, 300.0], [10.0, 100.0, 200.0], max_deg=20.0)
    assert sorted((e, t) for e, t, d in pairs if d <= 20) == [(0, 0), (1, 2)]
    assert dict(((e, t), d) for e, t, d in pairs)[(2, 1)] == pytest.approx(160.0)  # true error kept
    # among equally many hits, the smaller total error
    assert sorted((e, t) for e, t, _ in match([0.0, 10.0], [9.0, 30.0], max_deg=20.0)) == [(0, 0), (1, 1)]


def test_match_with_unequal_or_empty_lists():
    assert match([0.0, 100.0, 200.0], [101.0]) == [(1, 0, pytest.approx(1.0))]
    assert sorted(t for _, t, _ in match([101.0], [0.0, 100.0, 200.0])) == [1]
    assert match([], [10.0]) == [] and match([10.0], []) == []


def _row(n_true, n_est, err, dist_err=()):
    return {"n_true": n_true, "n_est": n_est, "tp": len(err), "err": list(err), "all_err": list(err),
            "dist_err": list(dist_err), "hit_true_dist": [1.0] * len(err), "true_dist": [1.0] * n_true}


def test_summarize_counts_precision_recall_and_f1():
    rows = [_row(2, 3, [1.0, 3.0], [0.1, 0.3]),  # both found, one false alarm
            _row(2, 1, []),  # one estimate, too far from either source
            _row(0, 1, [])]  # a false alarm in an empty room
    s = summarize(rows)
    assert (s["windows"], s["sources"], s["estimates"], s["hits"]) == (3, 4, 5, 2)
    assert s["recall"] == pytest.approx(0.5) and s["precision"] == pytest.approx(0.4)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert s["err_mean"] == pytest.approx(2.0) and s["err_median"] == pytest.approx(2.0)
    assert s["dist_err_mean"] == pytest.approx(0.2)
    perfect = summarize([_row(1, 1, [4.0])])
    assert perfect["recall"] == perfect["precision"] == perfect["f1"] == 1.0
    empty = summarize([])
    assert empty["windows"] == 0 and math.isnan(empty["recall"]) and math.isnan(empty["err_mean"])


def test_talkers_far_below_the_loudest_are_neither_hits_nor_misses_in_the_supplementary_f1():
    from train_tf.evaluate import summarize_audible

    true_az = np.array([[10.0, 100.0, 200.0], [50.0, np.nan, np.nan]])
    true_d = np.ones_like(true_az)
    level = np.array([[0.0, -4.0, -15.0], [0.0, np.nan, np.nan]])
    # window 0: the loud talker and the quiet one found, the -4 dB one missed, one false alarm;
    # window 1: its only talker found
    rows = score([[12.0, 203.0, 300.0], [51.0]], None, true_az, true_d, 20.0, true_level=level)
    every = summarize(rows)
    assert (every["recall"], every["precision"]) == (pytest.approx(3 / 4), pytest.approx(3 / 4))
    s = summarize_audible(rows, floor_db=-10.0)
    assert (s["sources"], s["quiet"]) == (3, 1)
    assert s["recall"] == pytest.approx(2 / 3)  # the quiet talker's hit is not counted ...
    assert s["precision"] == pytest.approx(3 / 4)  # ... nor is its detection a false alarm
    assert s["f1"] == pytest.approx(2 * (2 / 3) * (3 / 4) / (2 / 3 + 3 / 4))
    # with the floor below every talker it is the plain F1
    assert summarize_audible(rows, floor_db=-99.0)["f1"] == pytest.approx(every["f1"])


def test_score_hits_only_within_the_match_radius():
    true_az = np.array([[10.0, 200.0, np.nan], [np.nan, np.nan, np.nan]])
    true_d = np.array([[1.0, 2.5, np.nan], [np.nan, np.nan, np.nan]])
    rows = score([[12.0, 240.0], [90.0]], [[1.5, 2.0], [1.0]], true_az, true_d, match_deg=20.0)
    assert [(r["n_true"], r["n_est"], r["tp"]) for r in rows] == [(2, 2, 1), (0, 1, 0)]
    assert rows[0]["err"] == [pytest.approx(2.0)] and rows[0]["dist_err"] == [pytest.approx(0.5)]
    assert sorted(rows[0]["all_err"]) == [pytest.approx(2.0), pytest.approx(40.0)]
    assert rows[0]["hit_true_dist"] == [1.0] and rows[0]["true_dist"] == [1.0, 2.5]
    # baselines estimate no distance
    assert score([[12.0]], None, true_az[:1], true_d[:1], 20.0)[0]["dist_err"] == []


def test_cells_cover_every_count_and_reverberation_band():
    n_src = np.array([0, 1, 1, 2, 2])
    rt60 = np.array([0.2, 0.5, 0.7, 0.1, 0.35])
    out = dict(cells(n_src, rt60))
    assert list(out)[-1] == "all" and out["all"].all()
    assert {k for k in out if k.endswith(", all")} == {"0 src, all", "1 src, all", "2 src, all"}
    assert out["1 src, 0.3-0.6"].tolist() == [False, True, False, False, False]
    assert out["1 src, RT60>0.6"].tolist() == [False, False, True, False, False]
    assert out["2 src, RT60<0.3"].sum() == 1 and out["2 src, all"].sum() == 2
    # every window falls into exactly one RT60 band of its count
    bands = [m for k, m in out.items() if "src" in k and not k.endswith(", all")]
    assert np.array_equal(np.sum(bands, axis=0), np.ones(5))


def test_evaluate_a_trained_model_against_baselines(tiny_dataset, tmp_path, capsys):
    pytest.importorskip("keras")
    pytest.importorskip("pyroomacoustics")
    from train_tf import train
    from train_tf.simulate import load_windows

    run, out = tmp_path / "run", tmp_path / "eval"
    assert train.main(["--data", str(tiny_dataset), "--out", str(run), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    assert evaluate.main(["--model", str(run), "--data", str(tiny_dataset), "--out", str(out),
                          "--baselines", "MUSIC,SRP", "--workers", "1"]) == 0
    assert "Baselines are given the true number of sources" in capsys.readouterr().out
    for name in ("results.json", "table.md", "eval.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["model", "MUSIC", "SRP"] and results["n_windows"] == 24
    counts = sorted({int(v) for v in load_windows(tiny_dataset)["n_sources"]})
    table = (out / "table.md").read_text()
    for method in results["methods"]:
        assert results["cells"][method]["all"]["windows"] == 24
        for k in counts:
            assert f"{k} src, all" in results["cells"][method]
    for k in counts:
        assert f"| {k} src, all |" in table
    assert "counting the talkers within 10 dB" in table
    assert set(results["cells_audible"]) == set(results["methods"])
    for method in ("MUSIC", "SRP"):
        for k in counts:
            cell = results["cells"][method][f"{k} src, all"]
            # a baseline returns exactly as many estimates as it is told there are sources
            assert cell["estimates"] == cell["sources"] == k * cell["windows"], (method, k)
            if k:
                assert cell["precision"] == pytest.approx(cell["recall"])
    # a 1-epoch model is weak, but a baseline on these clean short windows finds most single sources
    if 1 in counts:
        assert results["cells"]["SRP"]["1 src, all"]["recall"] > 0.5


def test_unknown_baseline_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown baselines"):
        evaluate.main(["--model", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                       "--baselines", "MUSIC,ESPRIT"])


def test_baseline_cache_is_reused_only_for_the_same_windows(tiny_dataset, tmp_path):
    pytest.importorskip("pyroomacoustics")
    from train_tf.simulate import load_windows

    data = load_windows(tiny_dataset)
    audio, n_src = data["audio"], data["n_sources"].astype(int)
    cache = tmp_path / "base.json"
    first = evaluate.baseline_estimates_cached(audio, n_src, "uca8-r10", 16000, ["SRP"], 1, cache)
    assert [len(e) for e in first["SRP"]] == n_src.tolist()
    # a planted value proves the second call reads the file instead of recomputing
    saved = json.loads(cache.read_text())
    saved["estimates"]["SRP"][int(np.flatnonzero(n_src > 0)[0])] = [123.0] * int(n_src[n_src > 0][0])
    cache.write_text(json.dumps(saved))
    again = evaluate.baseline_estimates_cached(audio, n_src, "uca8-r10", 16000, ["SRP"], 1, cache)
    assert 123.0 in again["SRP"][int(np.flatnonzero(n_src > 0)[0])]
    # a new method is added to the file; other windows (here: half the audio changed) are recomputed
    both = evaluate.baseline_estimates_cached(audio, n_src, "uca8-r10", 16000, ["SRP", "MUSIC"], 1, cache)
    assert set(json.loads(cache.read_text())["estimates"]) == {"SRP", "MUSIC"} and 123.0 in both["SRP"][
        int(np.flatnonzero(n_src > 0)[0])]
    other = audio.copy()
    other[: len(other) // 2] //= 2
    fresh = evaluate.baseline_estimates_cached(other, n_src, "uca8-r10", 16000, ["SRP"], 1, cache)
    assert 123.0 not in fresh["SRP"][int(np.flatnonzero(n_src > 0)[0])]


def test_error_per_border_distance():
    from edge_msl.regions import RegionLayout

    layout = RegionLayout(n_regions=16)  # borders every 22.5 deg from 0
    bd = evaluate.border_distance_deg(layout, np.array([[1.0, 21.0, 33.75, np.nan], [359.0, 45.0, 50.0, 100.0]]))
    np.testing.assert_allclose(bd[0, :3], [1.0, 1.5, 11.25])
    assert np.isnan(bd[0, 3])
    np.testing.assert_allclose(bd[1], [1.0, 0.0, 5.0, 10.0])
    # two windows: hits at 1 deg (error 4) and 10 deg (error 1) from a border; a miss adds nothing
    rows = score([[5.0, 101.0], [200.0]], None, np.array([[1.0, 100.0], [120.0, np.nan]]),
                 np.ones((2, 2)), 20.0, None, np.array([[1.0, 10.0], [8.75, np.nan]]))
    by = evaluate.error_by_border(rows)
    assert by["0-2°"] == pytest.approx(4.0) and by["≥ 8°"] == pytest.approx(1.0)
    assert math.isnan(by["2-5°"]) and math.isnan(by["5-8°"])


def test_pool_offsets_end_at_the_window_end():
    assert evaluate.pool_offsets(16000, 8000, 1600) == [0, 1600, 3200, 4800, 6400, 8000]
    assert evaluate.pool_offsets(12000, 8000, 1600) == [800, 2400, 4000]  # the last sub-window ends at the end
    assert evaluate.pool_offsets(8000, 8000, 1600) == [0]
    with pytest.raises(ValueError, match="shorter than the model's"):
        evaluate.pool_offsets(4000, 8000, 1600)


def _shipped_model_and_example_windows():
    """The shipped float model's directory and weights, and three 1 s windows of the bundled
    three-talker example (skips without Keras or the weights)."""
    pytest.importorskip("keras")
    from pathlib import Path

    from edge_msl.audio_io import open_audio
    from train_tf.model_dir import default_weights

    root = Path(__file__).resolve().parents[1]
    model_dir = root / "models" / "uca8-r10"
    if not (model_dir / "model.weights.h5").exists():
        pytest.skip("the float model is not in this checkout")
    with open_audio(root / "edge_msl" / "examples" / "uca8-r10-3talkers.wav") as r:
        audio = np.concatenate(list(r.blocks(16000)))
    x = np.stack([audio[s:s + 16000] for s in (0, 20000, 40000)]).astype(np.float32)
    return model_dir, default_weights(model_dir), x


def test_windows_longer_than_the_model_run_the_devices_temporal_decode():
    """1 s windows through the shipped 0.5 s float model: the outputs of the six sub-windows every
    0.1 s go through the device's own decode step (edge_msl.pipeline.decode_window) as a stream;
    the window's detections are the talkers listed after the last one (checked by hand)."""
    from collections import deque

    from edge_msl.pipeline import decode_window
    from edge_msl.temporal import TemporalDecoder

    model_dir, weights, x = _shipped_model_and_example_windows()
    per, params = evaluate.window_outputs(model_dir, x, weights, symmetry="none")
    dets, birth, _ = evaluate.temporal_decode_all(per, x, params)
    st = evaluate.temporal_settings(params)
    assert birth == st.birth_threshold
    layout = evaluate.RegionLayout.from_dict(params["regions"])
    from edge_msl.refine import SrpRefiner

    refiner = SrpRefiner(np.asarray(params["array"]["positions_m"]), 16000, params["decode"]["srp_refine"])
    for i in range(len(x)):
        dec, crosses = TemporalDecoder(layout, st), deque(maxlen=5)
        xi = x[i].astype(np.float32) / 32768.0
        for j, o in enumerate(range(0, 8001, 1600)):
            talkers = decode_window(dec, per[i, j], xi[o:o + 8000], (o + 8000) / 16000, refiner, crosses, 1600)
        assert [(round(d.azimuth_deg, 6), d.region) for d in dets[i]] == \
            [(round(t.azimuth_deg, 6), t.region) for t in talkers]
    assert any(dets)
    a = evaluate.analysis(16000, params)
    assert a == {"window_s": 1.0, "model_window_s": 0.5, "hop_s": 0.1, "pooled_windows": 6}
    assert evaluate.temporal_settings(params, 0.7).birth_threshold == 0.7


def test_symmetric_images_cycle_over_the_pooled_windows():
    """symmetry "cycle": sub-window j of window i runs on image (i + j) mod 16 of the array, its
    outputs mapped back (checked against the network run by hand)."""
    from edge_msl.symmetry import model_cycle

    model_dir, weights, x = _shipped_model_and_example_windows()
    per, params = evaluate.window_outputs(model_dir, x, weights, symmetry="cycle")
    plain, _ = evaluate.window_outputs(model_dir, x, weights, symmetry="none")
    cycle = model_cycle(params["array"]["positions_m"], params["regions"])
    assert len(cycle) == 16 and per.shape == plain.shape == (3, 6, 16, 3)
    for i, j in ((0, 0), (1, 0), (2, 5), (0, 3)):
        sym = cycle[(i + j) % 16]
        sub = np.ascontiguousarray(x[i:i + 1, j * 1600:j * 1600 + 8000])
        by_hand = sym.restore(evaluate.window_outputs(model_dir, sym.permute(sub), weights, symmetry="none")[0][:, 0])
        np.testing.assert_allclose(per[i, j], by_hand[0], atol=1e-5)
    assert np.allclose(per[0, 0], plain[0, 0], atol=1e-6)  # image 0 is the identity
    assert not np.allclose(per[1], plain[1], atol=1e-3)
    single, _ = evaluate.window_outputs(model_dir, x[:, :8000], weights, symmetry="cycle")  # not pooled: as they are
    np.testing.assert_allclose(single, evaluate.window_outputs(model_dir, x[:, :8000], weights, symmetry="none")[0],
                               atol=1e-6)


def test_decode_all_takes_the_models_fine_stretch_unless_given():
    params = {"regions": RegionLayout(n_regions=16, fine_stretch=1.2).to_dict(), "decode": {"threshold": 0.5}}
    out = np.zeros((1, 16, 3))
    out[0, 3] = [0.9, 0.5, 0.1]
    (model,), _, _ = evaluate.decode_all(out, params)
    (plain,), _, _ = evaluate.decode_all(out, params, fine_stretch=1.0)
    assert plain[0].azimuth_deg == pytest.approx(3 * 22.5 + 0.1 * 22.5)
    assert model[0].azimuth_deg == pytest.approx(3 * 22.5 + (0.5 - 1.2 * 0.4) * 22.5)


def test_fit_stretch_cli_refuses_bad_values(tmp_path):
    with pytest.raises(SystemExit, match="fit-stretch"):
        evaluate.main(["--model", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path),
                       "--fit-stretch", "1,3"])


def test_recall_and_error_per_kind_of_source():
    from train_tf.simulate import KIND_CODES

    true_az = np.array([[10.0, 100.0, np.nan], [200.0, 300.0, 50.0]])
    true_d = np.ones_like(true_az)
    kind = np.array([[KIND_CODES["speech_real"], KIND_CODES["music"], -1],
                     [KIND_CODES["music"], KIND_CODES["speech_real"], KIND_CODES["music"]]])
    est = [[12.0, 160.0], [201.0, 52.0]]  # speech 1 of 2 found, music 2 of 3
    rows = score(est, None, true_az, true_d, 20.0, true_kind=kind)
    k = evaluate.by_kind(rows)
    assert set(k) == {"speech_real", "music"}
    assert k["speech_real"]["sources"] == 2 and k["speech_real"]["recall"] == pytest.approx(0.5)
    assert k["speech_real"]["err_mean"] == pytest.approx(2.0)
    assert k["music"]["sources"] == 3 and k["music"]["recall"] == pytest.approx(2 / 3)
    assert k["music"]["err_mean"] == pytest.approx(1.5)
    assert evaluate.by_kind(score(est, None, true_az, true_d, 20.0)) == {}  # no kinds given: no table


def test_srp_refinement_with_cached_cross_spectra_matches_the_direct_one():
    """A settings sweep reuses each window's cross-spectra: the result must not change, and
    windows without detections stay empty."""
    from pathlib import Path

    from edge_msl.audio_io import open_audio
    from edge_msl.regions import Detection

    root = Path(__file__).resolve().parents[1]
    params = json.loads((root / "models/uca8-r10/params.json").read_text())
    with open_audio(root / "edge_msl/examples/uca8-r10-3talkers.wav") as r:
        audio = np.concatenate(list(r.blocks(16000)))[16000:3 * 16000].reshape(2, 16000, 8)
    # 1-2 s: the talkers at 318.3 and 77.4 deg (the example's truth), detected a few degrees off
    dets = [[Detection(74.0, 1.0, 0.9, 3), Detection(322.0, 2.0, 0.8, 14)], []]
    crosses = evaluate.srp_crosses(dets, audio, params, params["decode"]["srp_refine"])
    assert crosses[1] is None and crosses[0].shape[0] == 28
    direct = evaluate.srp_refine_all(dets, audio, params)
    cached = evaluate.srp_refine_all(dets, audio, params, crosses=crosses)
    assert direct == cached and direct[1] == []
    assert [d.azimuth_deg for d in direct[0]] != [74.0, 322.0]  # the refinement did move something
