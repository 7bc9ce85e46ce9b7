"""edge_msl.capture through the real ALSA API: the ALSA ``file`` plugin serves recorded raw frames over a
``null`` slave (no sound card). The null slave never overruns and cannot be unplugged, so those two
paths wrap the real PCM in a thin proxy that injects pyalsaaudio's overrun return and error."""

import logging
import threading
import time

import numpy as np
import pytest

alsaaudio = pytest.importorskip("alsaaudio")

from daemon_helpers import alsa_home as use_alsa_home, write_asoundrc  # noqa: E402
from edge_msl.capture import Capture  # noqa: E402
from edge_msl.config import DeviceSettings  # noqa: E402

RATE = 16000
CH = 8


@pytest.fixture(scope="module")
def alsa_home(tmp_path_factory):
    """A $HOME whose ~/.asoundrc defines the test PCMs."""
    home = tmp_path_factory.mktemp("alsa-home")
    write_asoundrc(home, {name: home / raw for name, raw in (("edgetest16", "in16.raw"), ("edgetest32", "in32.raw"),
                                                           ("edgelate", "late.raw"), ("edgelost", "lost.raw"))})
    with use_alsa_home(home):
        yield home


def ramp(n_frames, dtype):
    i = np.arange(n_frames * CH, dtype=np.int64)
    info = np.iinfo(dtype)
    return ((i * 7919) % (info.max - info.min) + info.min).astype(dtype).reshape(n_frames, CH)


def settings(name, **kw):
    kw.setdefault("period_frames", 400)
    return DeviceSettings(name=name, **kw)


@pytest.mark.parametrize("fmt, dtype, name, raw", [("S16_LE", np.int16, "edgetest16", "in16.raw"),
                                                    ("S32_LE", np.int32, "edgetest32", "in32.raw")])
def test_reads_the_recorded_frames_exactly(alsa_home, fmt, dtype, name, raw):
    data = ramp(400 * 10, dtype)
    data.astype(np.dtype(dtype).newbyteorder("<")).tofile(alsa_home / raw)
    cap = Capture(settings(name, format=fmt), rate_hz=RATE, n_channels=CH)
    got = [cap.read() for _ in range(10)]
    cap.close()
    assert all(g.shape == (400, CH) and g.dtype == dtype for g in got)
    np.testing.assert_array_equal(np.concatenate(got), data)
    assert cap.stats.frames == 4000 and cap.stats.opens == 1 and cap.stats.overruns == 0


def test_pacing_keeps_reads_at_the_audio_clock(alsa_home):
    ramp(RATE, np.int16).tofile(alsa_home / "in16.raw")
    cap = Capture(settings("edgetest16", pace_realtime=True), rate_hz=RATE, n_channels=CH)
    t0 = time.monotonic()
    n = sum(len(cap.read()) for _ in range(12))  # 0.3 s of audio
    elapsed = time.monotonic() - t0
    cap.close()
    # the file plugin alone returns this in about a millisecond; paced, never ahead of the clock
    assert n == 4800 and elapsed >= n / RATE - 0.03


def test_missing_device_is_retried_with_backoff_until_it_appears(alsa_home, caplog):
    late = alsa_home / "late.raw"
    late.unlink(missing_ok=True)
    waits = []
    cap = Capture(settings("edgelate", retry_min_delay_s=0.05, retry_max_delay_s=0.2), rate_hz=RATE, n_channels=CH,
                  on_wait=waits.append)
    timer = threading.Timer(0.8, lambda: ramp(4000, np.int16).tofile(late))
    timer.start()
    with caplog.at_level(logging.INFO, logger="edge_msl.capture"):
        frames = cap.read()
    timer.join()
    cap.close()
    assert frames is not None and frames.shape == (400, CH)
    assert cap.stats.failures >= 3 and cap.stats.opens == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "edgelate" in errors[0].getMessage()  # one line, not one per attempt
    assert "No such file or directory" in errors[0].getMessage() and "edge-msl devices" in errors[0].getMessage()
    assert any("is back after" in r.getMessage() for r in caplog.records)
    assert any(w.startswith("waiting for capture device edgelate") for w in waits)


def test_stop_interrupts_the_backoff(alsa_home):
    (alsa_home / "late.raw").unlink(missing_ok=True)
    stop = threading.Event()
    cap = Capture(settings("edgelate", retry_min_delay_s=30.0, retry_max_delay_s=30.0), rate_hz=RATE,
                  n_channels=CH, stop=stop)
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    assert cap.read() is None
    assert time.monotonic() - t0 < 5.0


class FlakyPcm:
    """The real file-plugin PCM; read number ``overrun_at`` reports an overrun (pyalsaaudio returns
    (-EPIPE, b'')) and read number ``lost_at`` raises the error of an unplugged USB device."""

    def __init__(self, pcm, overrun_at, lost_at):
        self.pcm, self.overrun_at, self.lost_at, self.n = pcm, overrun_at, lost_at, 0

    def read(self):
        self.n += 1
        if self.n == self.overrun_at:
            return -32, b""
        if self.n == self.lost_at:
            raise alsaaudio.ALSAAudioError("No such device [edgelost]")
        return self.pcm.read()

    def info(self):
        return self.pcm.info()

    def close(self):
        self.pcm.close()


def test_overrun_is_counted_and_a_lost_device_is_reopened(alsa_home, caplog):
    ramp(4000, np.int16).tofile(alsa_home / "lost.raw")
    s = settings("edgelost", retry_min_delay_s=0.05, retry_max_delay_s=0.1)
    opened = []

    def factory():
        pcm = alsaaudio.PCM(type=alsaaudio.PCM_CAPTURE, device="edgelost", channels=CH, rate=RATE,
                            format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=400, periods=4)
        opened.append(pcm)
        return FlakyPcm(pcm, overrun_at=2, lost_at=4) if len(opened) == 1 else pcm

    cap = Capture(s, rate_hz=RATE, n_channels=CH, pcm_factory=factory)
    with caplog.at_level(logging.WARNING, logger="edge_msl.capture"):
        out = [cap.read() for _ in range(6)]
    cap.close()
    assert [None if o is None else len(o) for o in out] == [400, 0, 400, None, 400, 400]
    assert cap.stats.overruns == 1 and cap.stats.opens == 2 and len(opened) == 2
    msgs = [r.getMessage() for r in caplog.records]
    assert any("overrun" in m for m in msgs) and any("lost: No such device" in m for m in msgs)
    # after reopening, the stream restarts at the beginning of the file (a fresh PCM)
    np.testing.assert_array_equal(out[4], ramp(4000, np.int16)[:400])
