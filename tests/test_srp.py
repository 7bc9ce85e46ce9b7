"""The one SRP-PHAT (edge_msl.srp): golden tests from exact fractional delays, and its two evaluations (exact and
through tabulated GCCs) held to each other on the bundled example."""

from __future__ import annotations

import numpy as np
import pytest

from edge_msl import srp
from edge_msl.arrays import far_field_delays_s, get_array
from edge_msl.audio_io import open_audio
from edge_msl.refine import NFFT, UPSAMPLE, SrpRefiner
from edge_msl.stream import to_float

from test_pipeline import EXAMPLE

FS = 16000


def plane_wave(array, azimuth_deg: float, elevation_deg: float, rng, n: int = 16000) -> np.ndarray:
    """White noise arriving from (azimuth, elevation), exact fractional delays (frequency domain)."""
    s = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / FS)
    d = far_field_delays_s(array, azimuth_deg, elevation_deg)
    return np.stack([np.fft.irfft(s * np.exp(-2j * np.pi * f * t), n=n) for t in d], axis=1)


def pair_cross(x: np.ndarray, nfft: int = NFFT, f_lo_hz: float = 300.0, f_hi_hz: float = 4000.0):
    """(P, F) mean per-frame-PHAT cross-spectra of mic pairs i < j, their frequencies and pair indices."""
    f = np.fft.rfftfreq(nfft, 1.0 / FS)
    band = np.flatnonzero((f >= f_lo_hz) & (f <= f_hi_hz))
    spec = srp.phat(srp.stft(x, nfft, slice(band[0], band[-1] + 1), np.hanning(nfft)))
    i, j = np.triu_indices(x.shape[1], 1)
    return np.mean(spec[i] * np.conj(spec[j]), axis=1), f[band], (i, j)


@pytest.mark.parametrize("name", ["uca8-r10", "respeaker-4mic", "matrix-voice"])
@pytest.mark.parametrize("azimuth_deg, elevation_deg", [(37.0, 0.0), (200.5, 30.0), (311.0, 60.0)])
def test_a_plane_wave_steers_every_pair_and_bin_into_phase(name, azimuth_deg, elevation_deg):
    """At the wave's own direction each pair's PHAT cross-spectrum, steered back, is ~1 in every bin: P = pairs x
    bins, the maximum over directions, there and nowhere else."""
    array = get_array(name)
    pos = array.positions()
    x = plane_wave(array, azimuth_deg, elevation_deg, np.random.default_rng(len(name)))
    cross, freqs, (i, j) = pair_cross(x)
    at = srp.steered_power(cross, freqs, srp.pair_delays_s(pos[i] - pos[j], srp.directions([azimuth_deg],
                                                                                           elevation_deg)))
    assert at[0] == pytest.approx(cross.size, rel=0.02)
    grid = np.arange(0.0, 360.0, 1.0)
    ring = srp.steered_power(cross, freqs, srp.pair_delays_s(pos[i] - pos[j], srp.directions(grid, elevation_deg)))
    assert ring.max() <= at[0] + 1e-9 * cross.size
    assert abs((grid[np.argmax(ring)] - azimuth_deg + 180.0) % 360.0 - 180.0) <= 1.0


def test_pair_delays_are_the_arrays_arrival_time_differences():
    array = get_array("matrix-voice")
    pos = array.positions()
    i, j = np.triu_indices(len(pos), 1)
    for az, el in [(0.0, 0.0), (123.4, 25.0), (271.0, -40.0)]:
        t = far_field_delays_s(array, az, el)
        got = srp.pair_delays_s(pos[i] - pos[j], srp.directions([az], el))[:, 0]
        assert np.allclose(got, t[i] - t[j], rtol=0, atol=1e-15)
    planar = srp.pair_delays_s(pos[i, :2] - pos[j, :2], srp.plane_directions([123.4]))
    assert np.allclose(planar, srp.pair_delays_s(pos[i] - pos[j], srp.directions([123.4], 0.0)), rtol=0, atol=1e-15)


def test_the_tabulated_gccs_give_the_exact_response_up_to_their_interpolation():
    """SrpRefiner's P (GccTable: tabulated GCCs, linear interpolation) is 2 / n_lags x the exact one, on the
    bundled example's real audio: within 1 % of the ring's peak, with the peak in the same place (+-1 deg)."""
    with open_audio(EXAMPLE) as r:
        audio = to_float(np.concatenate(list(r.blocks(16000))))
    array = get_array("uca8-r10")
    pos = array.positions()
    refiner = SrpRefiner(pos, FS, {"fmax_hz": 8000, "half_deg": 8, "weight": 0.5})
    i, j = np.triu_indices(len(pos), 1)
    f = np.fft.rfftfreq(NFFT, 1.0 / FS)
    freqs = f[(f >= 300.0) & (f <= 8000.0)]
    grid = np.arange(0.0, 360.0, 0.5)
    delays = srp.pair_delays_s(pos[i, :2] - pos[j, :2], srp.plane_directions(grid))
    for start in range(8000, len(audio) - 8000, 40000):
        cross = refiner.cross(audio[start:start + 8000])
        tabulated = refiner.response(refiner.gcc(cross), grid)
        exact = srp.steered_power(cross.astype(np.complex128), freqs, delays) * 2.0 / (NFFT * UPSAMPLE)
        assert np.max(np.abs(tabulated - exact)) <= 0.01 * np.max(np.abs(exact))
        assert abs((grid[np.argmax(tabulated)] - grid[np.argmax(exact)] + 180.0) % 360.0 - 180.0) <= 1.0


def test_phat_keeps_only_the_phase():
    z = np.array([3 + 4j, -2j, 0j])
    assert np.allclose(srp.phat(z), [0.6 + 0.8j, -1j, 0j])
    out = z.copy()
    srp.phat(out, out=out)
    assert np.array_equal(out, srp.phat(z))
