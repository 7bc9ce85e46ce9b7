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
from edge_msl.separate import SeparateSettings  # noqa: E402

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


def test_separate_settings_are_validated_like_the_rest():
    with pytest.raises(ConfigError, match=r"\[separate\] loading = -1 is invalid"):
        load_config(None, [("separate.loading", -1)])
    with pytest.raises(ConfigError, match=r"unknown \[separate\] key.*bogus.*allowed: .*'dir'"):
        load_config(None, [("separate.bogus", 1)])
    assert load_config(None, [("separate.dir", "/tmp/x")]).separate == {"dir": "/tmp/x"}


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))  # about 1 s of a track; tracks.json fits


def _small_disk(d: Path, kind: str):
    """A directory whose writes fail: 'fsize' a file size limit (EFBIG), 'tmpfs' a 64 KiB tmpfs (ENOSPC, needs
    the right to mount; None where it cannot be mounted). Returns (preexec_fn, the error's words)."""
    d.mkdir()
    if kind == "fsize":
        return _limit_file_size, "File too large"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        return None
    return None, "No space left on device"


class _RunDaemon:
    """``edge-msl run`` on the paced PCM writing per-track audio to ``d``, its stdout and stderr read as they come."""

    def __init__(self, home: Path, d: Path, preexec) -> None:
        self.dir = d
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_msl", "run", "--device", "edgesep", "--set",
                                      f"separate.dir={d}", "--set", "device.pace_realtime=true"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=alsa_env(home),
                                     preexec_fn=preexec)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True),
                        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)]
        for r in self.readers:
            r.start()

    def done(self) -> bool:
        # paced like a capture device: 90 messages (9 s) are past the recording (4.8 s) and every track's
        # end (hold_s 2 s), so every write after the first failed one has been tried
        return len(self.out) >= 90 or self.proc.poll() is not None

    def stop(self) -> dict:
        """SIGTERM; whether it was still running, its messages and files by then, its exit code and stderr."""
        running, messages, files = self.proc.poll() is None, len(self.out), [p.name for p in self.dir.iterdir()]
        try:
            if running:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(30)
            for r in self.readers:
                r.join(5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        return {"running": running, "messages": messages, "files": files, "returncode": self.proc.returncode,
                "stderr": "".join(self.err)}


@pytest.fixture(scope="module")
def runs(home, tmp_path_factory):
    """Every daemon run of this module at once, since each plays the recording in real time (one after the
    other they took 30 s): ``edge-msl run`` on a directory that refuses writes ('fsize', 'tmpfs'), and the
    daemon in this process writing what the offline ``locate --separate`` run wrote ('offline', 'daemon')."""
    tmp = tmp_path_factory.mktemp("daemon-separate-runs")
    disks = {kind: _small_disk(tmp / kind, kind) for kind in ("fsize", "tmpfs")}
    faulty = {kind: _RunDaemon(home, tmp / kind, disk[0]) for kind, disk in disks.items() if disk is not None}
    results: dict = {}
    try:
        # a plain offline run: the separator's output does not depend on how the audio is cut into pushes
        offline_dir = tmp / "offline"
        p = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(EXAMPLE), "--separate", str(offline_dir)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        offline = p.stdout.splitlines()
        out_dir = tmp / "daemon"
        # with the start-up channel check, which holds the first seconds back and releases them in one push
        overrides = [("device.name", "edgesep"), ("device.period_frames", PERIOD), ("device.pace_realtime", True),
                     ("separate.dir", str(out_dir))]
        daemon = Daemon(lambda: load_config(None, overrides), notifier=Notifier({}), stdout=io.StringIO())
        t = threading.Thread(target=daemon.run, daemon=True)
        t.start()
        try:
            # paced like a capture device (unpaced, the file-over-null PCM serves minutes of audio in the first
            # read); past the recording the PCM serves silence: every track ends (hold_s) and its file is closed
            results["daemon_done"] = wait_for(lambda: daemon.messages >= len(offline) + 40, 60)
        finally:
            daemon.request_stop()
            t.join(30)
        results.update(offline=offline_dir, daemon=out_dir)
        wait_for(lambda: all(r.done() for r in faulty.values()), 60)
    finally:
        for kind, r in faulty.items():
            results[kind] = {**r.stop(), "why": disks[kind][1]}
        if "tmpfs" in faulty:
            subprocess.run(["umount", str(tmp / "tmpfs")], capture_output=True)
    yield results


def test_the_daemon_writes_what_locate_separate_writes(runs):
    assert runs["daemon_done"]
    offline_dir, out_dir = runs["offline"], runs["daemon"]
    ref = json.loads((offline_dir / "tracks.json").read_text())["tracks"]
    assert len(ref) >= 2
    got = {tr["id"]: tr for tr in json.loads((out_dir / "tracks.json").read_text())["tracks"]}
    for tr in ref:
        d = got[tr["id"]]
        assert d["file"] == tr["file"] and d["start_s"] == tr["start_s"]
        a, b = read_wav(offline_dir / tr["file"]), read_wav(out_dir / d["file"])
        n = min(len(a), len(b))
        # the offline stream was cut at the end of the file: its last half frame is the overlap-add tail
        m = n - SeparateSettings().nfft // 2 if len(a) < len(b) else n
        # same samples, same place: within 1 LSB, the learned post-filter's float32 products differing in their last
        # bits with the BLAS's threads (in one process the samples are the same to the bit: tests/test_separate.py)
        assert n > 16000 * 0.5 and np.max(np.abs(a[:m].astype(int) - b[:m])) <= 1
        assert len(b) / 16000 == pytest.approx(d["end_s"] - d["start_s"], abs=0.02)


@pytest.mark.parametrize("kind", ["fsize", "tmpfs"])
def test_a_write_error_is_one_log_line_and_the_daemon_goes_on(runs, kind):
    if kind not in runs:
        pytest.skip("cannot mount a tmpfs here")
    r = runs[kind]
    stderr = r["stderr"]
    assert r["running"] and r["messages"] >= 90, stderr
    assert r["returncode"] == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    failed = [x for x in stderr.splitlines() if "per-track audio: cannot write" in x]
    assert len(failed) == 1 and r["why"] in failed[0], stderr
    assert any(name.startswith("track-") for name in r["files"])
