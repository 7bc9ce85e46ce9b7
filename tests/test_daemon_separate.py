"""The daemon's per-track audio ([separate] dir) with real parts: the packaged int8 model and an ALSA
file-plugin PCM serving the bundled 3-talker recording. A WAV per track id, the same audio `edge-msl
locate --separate` writes, closed and indexed when the track ends; a write error (a file size limit, a
full tmpfs) is one log line and the daemon goes on."""

import io
import json
import resource
import signal
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("alsaaudio")
pytest.importorskip("ai_edge_litert")

from daemon_helpers import alsa_env, alsa_home, wait_for, write_asoundrc  # noqa: E402
from edge_msl.audio_io import open_audio  # noqa: E402
from edge_msl.config import ConfigError, load_config  # noqa: E402
from edge_msl.daemon import Daemon  # noqa: E402
from edge_msl.notify import Notifier  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"
PERIOD = 800


@pytest.fixture(scope="module")
def audio():
    with open_audio(EXAMPLE) as r:
        return np.concatenate(list(r.blocks(16000)))


@pytest.fixture(scope="module")
def home(tmp_path_factory, audio):
    h = tmp_path_factory.mktemp("daemon-separate-home")
    audio.astype("<i2").tofile(h / "example.raw")
    write_asoundrc(h, {"edgesep": h / "example.raw"})
    with alsa_home(h):
        yield h


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_the_daemon_writes_what_locate_separate_writes(home, audio, tmp_path):
    # a plain offline run: the separator's output does not depend on how the audio is cut into pushes
    offline_dir = tmp_path / "offline"
    p = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(EXAMPLE), "--separate", str(offline_dir)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    offline = p.stdout.splitlines()
    ref = json.loads((offline_dir / "tracks.json").read_text())["tracks"]
    assert len(ref) >= 2

    out_dir = tmp_path / "daemon"
    # with the start-up channel check, which holds the first seconds back and releases them in one push
    overrides = [("device.name", "edgesep"), ("device.period_frames", PERIOD), ("device.pace_realtime", True),
                 ("separate.dir", str(out_dir))]
    daemon = Daemon(lambda: load_config(None, overrides), notifier=Notifier({}), stdout=io.StringIO())
    t = threading.Thread(target=daemon.run, daemon=True)
    t.start()
    try:
        # paced like a capture device (unpaced, the file-over-null PCM serves minutes of audio in the first
        # read); past the recording the PCM serves silence: every track ends (hold_s) and its file is closed
        assert wait_for(lambda: daemon.messages >= len(offline) + 40, 60)
    finally:
        daemon.request_stop()
        t.join(30)
    got = {tr["id"]: tr for tr in json.loads((out_dir / "tracks.json").read_text())["tracks"]}
    for tr in ref:
        d = got[tr["id"]]
        assert d["file"] == tr["file"] and d["start_s"] == tr["start_s"]
        a, b = read_wav(offline_dir / tr["file"]), read_wav(out_dir / d["file"])
        n = min(len(a), len(b))
        # the offline stream was cut at the end of the file: its last half frame is the overlap-add tail
        m = n - 256 if len(a) < len(b) else n
        assert n > 16000 * 0.5 and np.array_equal(a[:m], b[:m])  # same samples, same place
        assert len(b) / 16000 == pytest.approx(d["end_s"] - d["start_s"], abs=0.02)


def test_separate_settings_are_validated_like_the_rest():
    with pytest.raises(ConfigError, match=r"\[separate\] loading = -1 is invalid"):
        load_config(None, [("separate.loading", -1)])
    with pytest.raises(ConfigError, match=r"unknown \[separate\] key.*bogus.*allowed: .*'dir'"):
        load_config(None, [("separate.bogus", 1)])
    assert load_config(None, [("separate.dir", "/tmp/x")]).separate == {"dir": "/tmp/x"}


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))  # about 1 s of a track; tracks.json fits


@pytest.fixture
def small_disk(tmp_path, request):
    """A directory whose writes fail: 'fsize' a file size limit (EFBIG), 'tmpfs' a 64 KiB tmpfs (ENOSPC,
    needs the right to mount)."""
    d = tmp_path / "tracks"
    d.mkdir()
    if request.param == "fsize":
        yield d, _limit_file_size, "File too large"
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield d, None, "No space left on device"
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


@pytest.mark.parametrize("small_disk", ["fsize", "tmpfs"], indirect=True)
def test_a_write_error_is_one_log_line_and_the_daemon_goes_on(home, small_disk):
    d, preexec, why = small_disk
    proc = subprocess.Popen([sys.executable, "-m", "edge_msl", "run", "--device", "edgesep", "--set",
                             f"separate.dir={d}", "--set", "device.pace_realtime=true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=alsa_env(home), preexec_fn=preexec)
    out: list[str] = []
    err: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    err_reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    err_reader.start()
    try:
        # paced like a capture device: 90 messages (9 s) are past the recording (4.8 s) and every track's
        # end (hold_s 2 s), so every write after the first failed one has been tried
        assert wait_for(lambda: len(out) >= 90 or proc.poll() is not None, 60)
        assert proc.poll() is None, "".join(err)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(5)
        err_reader.join(5)
        stderr = "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    failed = [x for x in stderr.splitlines() if "per-track audio: cannot write" in x]
    assert len(failed) == 1 and why in failed[0], stderr
    assert any(p.name.startswith("track-") for p in d.iterdir())
