"""Elevation from SRP-PHAT (edge_msl.refine): golden tests from exact fractional delays and
pyroomacoustics, and the pipeline's azimuths unchanged by it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_msl.arrays import far_field_delays_s, get_array
from edge_msl.refine import SrpRefiner

FS = 16000
SETTINGS = {"fmax_hz": 8000, "half_deg": 8, "weight": 0.5}


def plane_wave(array, azimuth_deg: float, elevation_deg: float, rng, n: int = 8000) -> np.ndarray:
    """White noise arriving from (azimuth, elevation), exact fractional delays (frequency domain)."""
    s = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / FS)
    d = far_field_delays_s(array, azimuth_deg, elevation_deg)
    x = np.stack([np.fft.irfft(s * np.exp(-2j * np.pi * f * t), n=n) for t in d], axis=1)
    return x + 0.05 * rng.standard_normal(x.shape)


@pytest.mark.parametrize("name", ["uca8-r10", "respeaker-4mic", "matrix-voice"])
@pytest.mark.parametrize("elevation_deg", [20.0, 35.0, 50.0, 65.0])
def test_plane_wave_elevation(name, elevation_deg):
    rng = np.random.default_rng(int(elevation_deg) + len(name))
    array = get_array(name)
    r = SrpRefiner(array.positions(), FS, SETTINGS)
    az = float(rng.uniform(0, 360))
    gcc = r.gcc(r.cross(plane_wave(array, az, elevation_deg, rng)))
    assert abs(r.elevation(gcc, az) - elevation_deg) < 2.0


def test_planar_array_cannot_tell_up_from_down():
    rng = np.random.default_rng(3)
    array = get_array("uca8-r10")
    r = SrpRefiner(array.positions(), FS, SETTINGS)
    assert r.planar and r.elevation_grid_deg[0] == 0.0
    up = r.elevation(r.gcc(r.cross(plane_wave(array, 70.0, 40.0, np.random.default_rng(1)))), 70.0)
    down = r.elevation(r.gcc(r.cross(plane_wave(array, 70.0, -40.0, np.random.default_rng(1)))), 70.0)
    assert abs(up - 40.0) < 2.0 and abs(down - 40.0) < 2.0


def test_small_azimuth_error_does_not_bend_elevation():
    rng = np.random.default_rng(5)
    array = get_array("uca8-r10")
    r = SrpRefiner(array.positions(), FS, SETTINGS)
    gcc = r.gcc(r.cross(plane_wave(array, 120.0, 45.0, rng)))
    assert abs(r.elevation(gcc, 123.0) - 45.0) < 2.0


def test_pyroomacoustics_anechoic_source():
    pra = pytest.importorskip("pyroomacoustics")
    rng = np.random.default_rng(7)
    array = get_array("uca8-r10")
    centre = np.array([3.0, 2.5, 0.8])
    az, el, dist = 200.0, 35.0, 2.0
    src = centre + dist * np.array([np.cos(np.radians(el)) * np.cos(np.radians(az)),
                                    np.cos(np.radians(el)) * np.sin(np.radians(az)), np.sin(np.radians(el))])
    room = pra.AnechoicRoom(fs=FS)
    room.add_microphone_array((array.positions() + centre).T)
    room.add_source(src, signal=rng.standard_normal(FS))
    room.simulate()
    x = room.mic_array.signals.T[2000:10000]
    r = SrpRefiner(array.positions(), FS, SETTINGS)
    assert abs(r.elevation(r.gcc(r.cross(x)), az) - el) < 4.0


def test_pipeline_azimuths_unchanged_and_elevation_filled():
    from edge_msl.audio_io import open_audio
    from edge_msl.commands.locate import example_path
    from edge_msl.pipeline import Pipeline
    from edge_msl.runtime import load_model

    model = load_model(None)
    with open_audio(example_path(".wav")) as reader:
        frames = np.concatenate(list(reader.blocks(16000)))
    with_el = Pipeline(model).push(frames)
    without = Pipeline(model, elevation=False).push(frames)
    assert len(with_el) == len(without) > 0
    n_el = 0
    for a, b in zip(with_el, without):
        for s, t in zip(a["sources"], b["sources"], strict=True):
            assert t["elevation_deg"] is None
            assert {k: v for k, v in s.items() if k != "elevation_deg"} == \
                   {k: v for k, v in t.items() if k != "elevation_deg"}
            assert 0.0 <= s["elevation_deg"] <= 90.0
            n_el += 1
    assert n_el > 0
