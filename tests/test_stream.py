"""edge_msl.stream: windows do not depend on how the stream is cut; the resampler reproduces
band-limited signals with a known delay, suppresses aliases and refuses impossible ratios."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_msl.stream import Resampler, Windower, design, to_float


def _cut(x, sizes):
    out, pos, k = [], 0, 0
    while pos < len(x):
        n = sizes[k % len(sizes)]
        out.append(x[pos:pos + n])
        pos += n
        k += 1
    return out


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 300), hop=st.integers(1, 400), sizes=st.lists(st.integers(1, 700), min_size=1,
                                                                           max_size=8),
       n=st.integers(0, 3000), cap_extra=st.integers(1, 50))
def test_windows_are_the_same_for_any_chunking_and_capacity(window, hop, sizes, n, cap_extra):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    w = Windower(window, hop, 2, capacity=window + cap_extra)
    got = [item for chunk in _cut(x, sizes) for item in w.push(chunk)]
    ends = list(range(window, n + 1, hop))
    assert [e for e, _ in got] == ends
    for e, win in got:
        np.testing.assert_array_equal(win, x[e - window:e])
    assert w.samples_seen == n


def test_windows_are_copies_and_reset_starts_over():
    w = Windower(4, 2, 1)
    out = w.push(np.arange(6, dtype=np.float32)[:, None])
    out[0][1][:] = -1  # the caller may modify a window without touching the buffer
    assert [e for e, _ in out] == [4, 6]
    np.testing.assert_array_equal(out[1][1][:, 0], [2, 3, 4, 5])
    w.reset()
    assert w.push(np.zeros((3, 1), np.float32)) == [] and len(w.push(np.zeros((1, 1), np.float32))) == 1


def test_wrong_frame_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        Windower(10, 5, 8).push(np.zeros((10, 6), np.float32))


def test_to_float_full_scale():
    assert to_float(np.array([[-32768, 16384]], np.int16)).tolist() == [[-1.0, 0.5]]
    assert to_float(np.array([[-2**31, 2**30]], np.int32)).tolist() == [[-1.0, 0.5]]
    assert to_float(np.array([[0, 192]], np.uint8)).tolist() == [[-1.0, 0.5]]
    with pytest.raises(TypeError, match="int16, int32"):
        to_float(np.array([[1]], np.int64))


@pytest.mark.parametrize("from_hz", [48000, 44100, 32000, 22050, 96000])
def test_resampled_tones_match_the_analytic_signal(from_hz):
    to_hz = 16000
    t = np.arange(int(from_hz * 0.6)) / from_hz
    tones = (300.0, 1000.0, 5500.0)
    x = np.stack([0.3 * np.sin(2 * np.pi * f * t + k) for k, f in enumerate(tones)], axis=1).astype(np.float32)
    r = Resampler(from_hz, to_hz, 3)
    y = np.concatenate(_cut_process(r, x, [997, 1, 4800, 333]))
    assert len(y) == int(np.ceil(len(x) * to_hz / from_hz))
    tt = np.arange(len(y)) / to_hz - r.delay_s
    ref = np.stack([0.3 * np.sin(2 * np.pi * f * tt + k) for k, f in enumerate(tones)], axis=1)
    settle = int(2 * r.delay_s * to_hz) + 1
    assert np.max(np.abs(y[settle:] - ref[settle:])) < 1e-3 * 0.3


def _cut_process(r, x, sizes):
    return [r.process(c) for c in _cut(x, sizes)]


@pytest.mark.parametrize("from_hz", [48000, 44100])
def test_resampler_suppresses_aliases(from_hz):
    # a 10 kHz tone lies above the 8 kHz Nyquist of 16 kHz: it must not fold back into the band
    t = np.arange(from_hz) / from_hz
    x = (0.5 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32)[:, None]
    y = Resampler(from_hz, 16000, 1).process(x)
    assert np.sqrt(np.mean(y[200:] ** 2)) < 0.5 / np.sqrt(2) * 10 ** (-60 / 20)


def test_resampler_keeps_inter_channel_delays():
    """The same filter on every channel: a delay of d input samples stays d/3 output samples."""
    rng = np.random.default_rng(0)
    from_hz = 48000
    n = from_hz
    f = np.fft.rfftfreq(n, 1 / from_hz)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[f > 6000] = 0
    d_s = 7.3 / from_hz
    x = np.stack([np.fft.irfft(spec, n), np.fft.irfft(spec * np.exp(-2j * np.pi * f * d_s), n)], 1).astype(np.float32)
    y = Resampler(from_hz, 16000, 2).process(x)[400:]
    # cross-correlation peak with sub-sample interpolation
    g = np.fft.irfft(np.fft.rfft(y[:, 1]) * np.conj(np.fft.rfft(y[:, 0])), len(y))
    k = int(np.argmax(g))
    a, b, c = g[k - 1], g[k], g[(k + 1) % len(g)]
    lag = k + 0.5 * (a - c) / (a - 2 * b + c)
    assert lag * 3 == pytest.approx(7.3, abs=0.15)


def test_resampler_constant_stays_constant_and_design_reduces_the_ratio():
    y = Resampler(44100, 16000, 2).process(np.full((44100, 2), 0.25, np.float32))
    np.testing.assert_allclose(y[200:], 0.25, atol=1e-5)
    d = design(44100, 16000)
    assert (d.up, d.down) == (160, 441)
    with pytest.raises(ValueError, match="record at a standard rate"):
        design(16001, 16000)
