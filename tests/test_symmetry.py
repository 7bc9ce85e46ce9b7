"""Array symmetries (edge_msl.symmetry): the channel permutation of each symmetry turns a real
pyroomacoustics recording into the recording of the transformed scene, and the outputs map
back onto the region coding of the original scene; arrays and layouts without a symmetry get
only the identity; the sidecar setting is checked; the pipeline cycles through the images."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_msl.arrays import get_array, list_arrays
from edge_msl.regions import RegionLayout, encode
from edge_msl.symmetry import array_symmetries, cycle_order, model_cycle, symmetry_mode


def _plane_map(positions: np.ndarray, perm) -> np.ndarray:
    """The 2x2 linear map g with g(p_i) = p_perm[i], fitted from the mic positions alone."""
    xy = positions[:, :2] - positions[:, :2].mean(axis=0)
    return np.linalg.lstsq(xy, xy[list(perm)], rcond=None)[0].T


def _inverse_azimuth(g: np.ndarray, az_deg: float) -> float:
    v = np.linalg.solve(g, [math.cos(math.radians(az_deg)), math.sin(math.radians(az_deg))])
    return math.degrees(math.atan2(v[1], v[0])) % 360.0


def uca8():
    return np.asarray(get_array("uca8-r10").positions_m)


@pytest.mark.parametrize("n_regions,offset,expected", [(16, 0.0, 16), (8, 0.0, 16), (8, 22.5, 16), (16, 11.25, 16),
                                                       (12, 0.0, 8), (6, 0.0, 4), (16, 5.0, 8)])
def test_the_uca8_symmetries_that_the_layout_follows(n_regions, offset, expected):
    """8 rotations and 8 reflections map the array onto itself; those kept must map the sectors
    too (12 sectors of 30 deg: rotations by 90 deg and reflections about the axes at multiples of
    45 deg; 6 sectors: the half turn and the axes at 0 and 90 deg; sectors offset 5 deg: rotations
    only)."""
    layout = RegionLayout(n_regions=n_regions, offset_deg=offset)
    syms = array_symmetries(uca8(), layout)
    assert len(syms) == expected
    assert syms[0].identity
    assert len({s.perm for s in syms}) == len(syms)
    order = cycle_order(syms, n_regions)
    assert order[0].identity and sorted(s.perm for s in order) == sorted(s.perm for s in syms)


@pytest.mark.parametrize("n_regions,offset", [(16, 0.0), (8, 22.5), (12, 0.0)])
def test_restored_targets_of_the_image_scene_are_the_scenes_targets(n_regions, offset):
    """For each symmetry g and random sources: the region coding of the scene with the sources at
    g^-1(azimuth), restored, is the scene's coding (activity everywhere; fine outputs where active)."""
    pos = uca8()
    layout = RegionLayout(n_regions=n_regions, offset_deg=offset, min_separation_deg=20.0)
    rng = np.random.default_rng(1)
    for sym in array_symmetries(pos, layout):
        g = _plane_map(pos, sym.perm)
        for _ in range(100):
            az = list(rng.uniform(0, 360, size=rng.integers(1, 4)))
            dist = list(rng.uniform(0.3, 3.5, size=len(az)))
            want = encode(layout, az, dist).target
            got = sym.restore(encode(layout, [_inverse_azimuth(g, a) for a in az], dist).target)
            active = want[:, 0] > 0
            np.testing.assert_allclose(got[:, 0], want[:, 0])
            np.testing.assert_allclose(got[active], want[active], atol=1e-6)


def test_permuted_channels_are_the_recording_of_the_image_scene():
    """Real pyroomacoustics rendering (direct path, free field): the channels of a source at
    azimuth a, permuted by symmetry g, are the channels of the same source at g^-1(a)."""
    pra = pytest.importorskip("pyroomacoustics")
    pos = uca8()
    centre = np.array([4.0, 4.0, 1.2])
    rng = np.random.default_rng(2)
    signal = rng.standard_normal(4000)
    layout = RegionLayout(n_regions=16)

    def render(az_deg: float) -> np.ndarray:
        room = pra.ShoeBox([8.0, 8.0, 3.0], fs=16000, max_order=0)
        room.add_source(centre + 1.7 * np.array([math.cos(math.radians(az_deg)), math.sin(math.radians(az_deg)), 0.0]),
                        signal=signal)
        room.add_microphone_array((pos + centre).T)
        room.simulate()
        return room.mic_array.signals.T  # (samples, mics)

    az = 37.0
    x = render(az)
    for sym in array_symmetries(pos, layout)[1:]:
        y = render(_inverse_azimuth(_plane_map(pos, sym.perm), az))
        # (equal up to the rounding of the mic coordinates in the fractional-delay filters)
        assert np.abs(sym.permute(x) - y).max() < 2e-3 * np.abs(y).max()
    # a permutation that is no symmetry is far from it
    assert np.abs(x[:, [1, 0, 2, 3, 4, 5, 6, 7]] - x).max() > 0.3 * np.abs(x).max()


@pytest.mark.parametrize("name", list_arrays())
def test_every_registered_array_has_at_least_the_identity(name):
    pos = np.asarray(get_array(name).positions_m)
    syms = array_symmetries(pos, RegionLayout(n_regions=16))
    assert syms[0].identity
    for s in syms:  # each is a true symmetry of the mic positions
        g = _plane_map(pos, s.perm)
        np.testing.assert_allclose(g @ g.T, np.eye(2), atol=1e-3)


def test_a_line_array_and_a_jittered_array_have_only_what_they_keep():
    line = np.array([[-0.05, 0, 0], [0, 0, 0], [0.05, 0, 0]])
    syms = array_symmetries(line, RegionLayout(n_regions=8))
    assert [s.mirror for s in syms] == [False, False, True, True]  # 180 deg turn, reflections about x and y
    jittered = uca8() + np.random.default_rng(3).normal(0, 0.004, (8, 3)) * [1, 1, 0]
    assert len(array_symmetries(jittered, RegionLayout(n_regions=16))) == 1
    raised = uca8().copy()
    raised[0, 2] = 0.02
    assert len(array_symmetries(raised, RegionLayout(n_regions=16))) == 1


def test_symmetry_mode_names_the_choices():
    assert symmetry_mode({}) == "none"
    assert symmetry_mode({"symmetry": "cycle"}) == "cycle"
    with pytest.raises(ValueError, match="none, cycle"):
        symmetry_mode({"symmetry": "all"})


def _copy_model(tmp_path: Path, **decode) -> Path:
    from edge_msl.runtime import default_model_path

    src = default_model_path()
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    side = json.loads(src.with_suffix(".json").read_text())
    side.pop("temporal_head", None)  # the network alone (a model with a temporal head does not cycle)
    side["decode"].update(decode)
    for k in [k for k, v in decode.items() if v is None]:
        del side["decode"][k]
    dst.with_suffix(".json").write_text(json.dumps(side))
    return dst


def test_a_bad_symmetry_setting_is_a_one_line_model_error(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edge_msl.runtime import ModelError, read_info

    with pytest.raises(ModelError, match=r"decode.symmetry must be one of none, cycle.*fix decode.symmetry"):
        read_info(_copy_model(tmp_path, symmetry="mirror"))


def test_the_pipeline_cycles_its_windows_through_the_images(tmp_path):
    """With decode.symmetry cycle, window k of the stream runs on image k mod 16 of the array
    (checked against a TemporalDecoder fed the model's outputs on those images by hand) and the
    three talkers of the bundled example are still found; without it the stream gives other outputs."""
    pytest.importorskip("ai_edge_litert")
    from edge_msl.audio_io import open_audio
    from edge_msl.pipeline import Pipeline, message
    from edge_msl.runtime import load_model
    from edge_msl.temporal import TemporalDecoder
    from edge_msl.truth import load_truth, score

    examples = Path(__file__).resolve().parents[1] / "edge_msl" / "examples"
    with open_audio(examples / "uca8-r10-3talkers.wav") as r:
        audio = np.concatenate(list(r.blocks(16000)))
    model = load_model(_copy_model(tmp_path, symmetry="cycle"))
    assert model.info.symmetry == "cycle"
    msgs = Pipeline(model, srp_refine=False).push(audio)
    cycle = model_cycle(model.info.array.positions(), model.info.layout)
    assert len(cycle) == 16
    fs, w = 16000, model.info.window_samples
    dec = TemporalDecoder(model.info.layout, model.info.temporal)
    for k, m in enumerate(msgs):
        e = round(m["t_s"] * fs)
        y = cycle[k % 16].restore(model.outputs(cycle[k % 16].permute(audio[e - w:e])))
        assert message(m["t_s"], dec.update(y, m["t_s"])) == m
    truth, _ = load_truth(examples / "uca8-r10-3talkers.truth.json")
    tracked = Pipeline(model).push(audio)
    s = score(tracked, truth, window_s=0.5)
    assert s["recall"] >= 0.85 and s["precision"] >= 0.9 and s["doa_error_mean_deg"] <= 5.0, s
    (tmp_path / "plain").mkdir()
    plain_model = load_model(_copy_model(tmp_path / "plain", symmetry="none"))
    plain = Pipeline(plain_model, srp_refine=False).push(audio)
    assert [m["sources"] for m in plain] != [m["sources"] for m in msgs]
