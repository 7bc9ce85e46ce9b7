"""The daemon end to end with real parts: the packaged int8 model, an ALSA file-plugin PCM serving the
bundled 3-talker recording, a real mosquitto broker and a real sd_notify socket. The daemon's output
equals the offline pipeline's on the same audio; it waits for a missing device, reloads on SIGHUP
without reopening the device, stops cleanly on SIGTERM, and exits 78 on a bad configuration."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("alsaaudio")
pytest.importorskip("paho.mqtt.client")
pytest.importorskip("ai_edge_litert")

from daemon_helpers import MOSQUITTO, Broker, Subscriber, alsa_env, alsa_home, wait_for, write_asoundrc  # noqa: E402
from edge_msl.audio_io import open_audio  # noqa: E402
from edge_msl.config import EX_CONFIG, load_config  # noqa: E402
from edge_msl.daemon import Daemon  # noqa: E402
from edge_msl.notify import Notifier  # noqa: E402
from edge_msl.pipeline import Pipeline  # noqa: E402
from edge_msl.runtime import default_model_path, load_model  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"
pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto is not installed")


@pytest.fixture(scope="module")
def audio():
    with open_audio(EXAMPLE) as r:
        x = np.concatenate(list(r.blocks(16000)))
    assert x.dtype == np.int16 and x.shape[1] == 8
    return x


@pytest.fixture(scope="module")
def offline(audio):
    """What `edge-msl locate` computes for the recording: the reference for the daemon's output."""
    return Pipeline(load_model()).push(audio)


@pytest.fixture(scope="module")
def home(tmp_path_factory, audio):
    h = tmp_path_factory.mktemp("daemon-home")
    audio.astype("<i2").tofile(h / "example.raw")
    write_asoundrc(h, {"edgedaemon": h / "example.raw", "edgewait": h / "wait.raw"})
    with alsa_home(h):
        yield h


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("daemon-broker")).start()
    yield b
    b.stop()


class NotifyListener:
    """The service manager's end of $NOTIFY_SOCKET: records every datagram."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = str(path)
        self.lines: list[list[str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.lines.append(self.sock.recv(4096).decode().split("\n"))
            except socket.timeout:
                continue
            except OSError:
                return

    def seen(self, line: str) -> int:
        return sum(line in d for d in self.lines)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def start_in_thread(daemon):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", daemon.run()), daemon=True)
    t.start()
    return t, result


def lines(buf):
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_output_equals_the_offline_pipeline_and_reaches_mqtt(home, broker, offline, tmp_path):
    sub = Subscriber(broker.port, ["edge-msl/e2e/#"], client_id="daemon-e2e")
    notify = NotifyListener(tmp_path / "notify.sock")
    overrides = [("device.name", "edgedaemon"), ("mqtt.host", "127.0.0.1"), ("mqtt.port", broker.port),
                 ("mqtt.node_id", "e2e"), ("device.period_frames", 800), ("device.pace_realtime", True)]
    out = io.StringIO()
    daemon = Daemon(lambda: load_config(None, overrides),
                    notifier=Notifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}), stdout=out)
    thread, result = start_in_thread(daemon)
    try:
        n = len(offline)
        # paced like a capture device: unpaced, the file-over-null PCM serves minutes of audio in the
        # first read, and the test would wait for all of it to be analysed
        assert wait_for(lambda: daemon.messages >= n, 60)
        assert wait_for(lambda: len(sub.messages("/sources")) >= n, 10)
    finally:
        daemon.request_stop()
        thread.join(30)
        notify.close()
        sub.close()
    assert result["rc"] == 0
    got = lines(out)[:n]
    assert got == offline  # same windows, same detections, same track ids as `edge-msl locate`
    assert sub.payloads("/sources")[:n] == offline
    statuses = [p for _, p, _ in sub.messages("/status")]
    assert statuses[0] == b"online" and statuses[-1] == b"offline"
    ready = [i for i, d in enumerate(notify.lines) if "READY=1" in d]
    assert len(ready) == 1 and notify.seen("WATCHDOG=1") >= 1 and notify.seen("STOPPING=1") == 1
    assert any(x.startswith("STATUS=") and "messages" in x for d in notify.lines for x in d)


def test_missing_device_is_waited_for_and_ready_comes_only_when_it_opens(home, tmp_path):
    wait_raw = home / "wait.raw"
    wait_raw.unlink(missing_ok=True)
    notify = NotifyListener(tmp_path / "notify.sock")
    # no start-up channel check: it would hold the first seconds back, analysed as fast as the unpaced PCM
    # serves them, before the first message this test waits for
    overrides = [("device.name", "edgewait"), ("device.retry_min_delay_s", 0.05),
                 ("device.retry_max_delay_s", 0.2), ("device.channel_check", "off")]
    out = io.StringIO()
    daemon = Daemon(lambda: load_config(None, overrides), notifier=Notifier({"NOTIFY_SOCKET": notify.path}),
                    stdout=out)
    thread, result = start_in_thread(daemon)
    try:
        assert wait_for(lambda: any(x.startswith("STATUS=waiting for capture device edgewait")
                                    for d in notify.lines for x in d), 20)
        time.sleep(0.5)
        assert notify.seen("READY=1") == 0 and daemon.messages == 0 and thread.is_alive()
        np.zeros((16000, 8), "<i2").tofile(wait_raw)  # the device "is plugged in"
        assert wait_for(lambda: notify.seen("READY=1") == 1 and daemon.messages > 0, 20)
    finally:
        daemon.request_stop()
        thread.join(15)
        notify.close()
    assert result["rc"] == 0 and daemon.capture.stats.failures >= 2


def test_reload_keeps_the_stream_and_refuses_a_bad_config(home, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[device]\nname = "edgedaemon"\npace_realtime = true\n[logging]\nlevel = "info"\n')
    out = io.StringIO()
    daemon = Daemon(lambda: load_config(cfg), stdout=out)
    thread, result = start_in_thread(daemon)
    try:
        assert wait_for(lambda: daemon.messages >= 3, 20)
        capture, model = daemon.capture, daemon.engine.model
        cfg.write_text('threshold = 0.6\n[device]\nname = "edgedaemon"\npace_realtime = true\n'
                       '[device.nope]\n')
        assert not daemon.reload()  # a broken file: logged, the running configuration stays
        assert daemon.engine.model is model
        cfg.write_text('threshold = 0.6\n[device]\nname = "edgedaemon"\npace_realtime = true\n'
                       'retry_max_delay_s = 5.0\n')
        before = daemon.messages
        daemon.request_reload()
        assert wait_for(lambda: daemon.reloads == 1 and daemon.messages >= before + 8, 20)
        assert daemon.capture is capture and capture.stats.opens == 1  # the audio stream was not reopened
        assert daemon.engine.pipeline.threshold == 0.6 and daemon.capture.settings.retry_max_delay_s == 5.0
        pipeline = daemon.engine.pipeline
        cfg.write_text('threshold = 0.6\n[device]\nname = "edgedaemon"\npace_realtime = true\n'
                       'retry_max_delay_s = 7.0\n')
        assert daemon.reload()  # only a retry delay changed: same pipeline, same stream
        assert daemon.engine.pipeline is pipeline and daemon.capture.settings.retry_max_delay_s == 7.0
    finally:
        daemon.request_stop()
        thread.join(15)
    assert result["rc"] == 0
    t = [m["t_s"] for m in lines(out)]
    assert t == sorted(t) and len(set(t)) == len(t)  # stream time goes on across the reload
    # a new pipeline (the threshold changed) fills one window (0.5 s) before its first message, plus
    # what the old one had read past its last window (0 or one 0.05 s period, by when the reload lands)
    gaps = np.round(np.diff(t), 3)
    other = [g for g in gaps if g != 0.1]
    assert len(other) == 1 and other[0] in (0.5, 0.55), gaps


def run_cli(args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "edge_msl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_signals_in_a_real_process(home, tmp_path):
    notify = NotifyListener(tmp_path / "notify.sock")
    env = alsa_env(home)
    env["NOTIFY_SOCKET"] = notify.path
    cfg = tmp_path / "c.toml"
    cfg.write_text('[device]\nname = "edgedaemon"\npace_realtime = true\n')
    proc = run_cli(["run", "--config", str(cfg), "--log-level", "info"], env=env)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: notify.seen("READY=1") == 1 and len(out) >= 2, 30)
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: notify.seen("READY=1") == 2 and notify.seen("RELOADING=1") == 1, 20)
        n = len(out)
        assert wait_for(lambda: len(out) >= n + 2, 20)  # still streaming after the reload
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        reader.join(5)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    assert proc.returncode == 0, stderr
    msgs = [json.loads(x) for x in out]
    assert msgs and all(m["schema"] == "edge-msl/sources-v2" for m in msgs)  # stdout is data only
    assert "reloaded" in stderr and "capture kept" in stderr and "SIGTERM: stopping" in stderr
    assert notify.seen("STOPPING=1") == 1


@pytest.mark.parametrize("args, needle", [
    (["--set", "mqtt.qos=7"], "[mqtt] qos = 7"),
    (["--model", "/nonexistent/m.tflite"], "/nonexistent/m.tflite"),
    (["--array", "respeaker-6mic", "--model", str(default_model_path("uca8-r10"))], "different geometry"),
])
def test_bad_configuration_exits_78_at_once(home, args, needle):
    proc = run_cli(["run", "--device", "edgedaemon", *args], env=alsa_env(home))
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EX_CONFIG and stdout == ""
    assert needle in stderr and len([x for x in stderr.splitlines() if "edge-msl" in x and needle in x]) == 1


def test_a_reader_that_leaves_ends_a_stdout_only_daemon_with_0(home):
    proc = run_cli(["run", "--device", "edgedaemon", "--set", "device.pace_realtime=true"], env=alsa_env(home))
    try:
        first = [proc.stdout.readline() for _ in range(3)]
        proc.stdout.close()  # like `edge-msl run ... | head -n 3`
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0 and all(json.loads(x)["schema"] == "edge-msl/sources-v2" for x in first)
    assert "Traceback" not in proc.stderr.read()


def test_the_daemon_prefers_a_calibrated_model_in_its_state_directory(tmp_path, monkeypatch):
    import shutil

    from edge_msl.daemon import build_engine, model_path

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = load_config(None, [("array.name", "uca8-r10")])
    packaged = default_model_path("uca8-r10")
    assert model_path(config) == packaged  # nothing calibrated yet
    calibrated = tmp_path / "state" / "models" / "uca8-r10.tflite"
    calibrated.parent.mkdir(parents=True)
    shutil.copy(packaged, calibrated)
    side = json.loads(packaged.with_suffix(".json").read_text())
    side.pop("temporal_head", None)  # as a calibrated model's sidecar (python -m convert writes none)
    calibrated.with_suffix(".json").write_text(json.dumps(side))
    assert model_path(config) == calibrated
    assert build_engine(config).model.info.path.resolve() == calibrated.resolve()
    explicit = load_config(None, [("array.name", "uca8-r10"), ("model", str(packaged))])
    assert model_path(explicit) == packaged  # a configured model always wins


def test_channel_check_is_a_validated_device_setting():
    from edge_msl.config import ConfigError

    assert load_config(None, []).device.channel_check == "warn"
    assert load_config(None, [("device.channel_check", "remap")]).device.channel_check == "remap"
    with pytest.raises(ConfigError, match="channel_check"):
        load_config(None, [("device.channel_check", "fix")])


def test_stdout_on_a_full_disk_keeps_the_daemon_and_mqtt_going(home, broker):
    """``edge-msl run > /dev/full``: every stdout write fails with ENOSPC; the daemon says so once and goes on
    publishing to MQTT (issue 30, fault 3)."""
    sub = Subscriber(broker.port, ["edge-msl/devfull/#"], client_id="daemon-devfull")
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen([sys.executable, "-m", "edge_msl", "run", "--device", "edgedaemon", "--set",
                                 "mqtt.host=127.0.0.1", "--set", f"mqtt.port={broker.port}", "--set",
                                 "mqtt.node_id=devfull", "--set", "device.pace_realtime=true"], stdout=full,
                                stderr=subprocess.PIPE, text=True,
                                env=alsa_env(home))
    try:
        assert wait_for(lambda: len(sub.messages("/sources")) >= 20 or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert len([x for x in stderr.splitlines() if "cannot write JSON lines" in x]) == 1
    assert "No space left on device" in stderr
    assert len(sub.messages("/sources")) >= 20


def test_reload_with_changed_mqtt_settings_keeps_the_queue_and_does_not_block(home, tmp_path):
    """SIGHUP with a changed [mqtt] key while the broker is down: every queued message reaches the broker after it
    comes back, and the reload itself takes well under a second (issue 30, fault 4)."""
    b = Broker(tmp_path / "broker").start()
    sub = Subscriber(b.port, ["edge-msl/hup/sources"], client_id="daemon-hup")
    cfg = tmp_path / "c.toml"

    def write(keepalive):
        cfg.write_text(f'[device]\nname = "edgedaemon"\npace_realtime = true\n[mqtt]\nhost = "127.0.0.1"\n'
                       f'port = {b.port}\nnode_id = "hup"\nreconnect_max_delay_s = 1\nkeepalive_s = {keepalive}\n'
                       )

    write(30)
    daemon = Daemon(lambda: load_config(cfg), stdout=io.StringIO())
    thread, result = start_in_thread(daemon)
    try:
        assert wait_for(lambda: len(sub.messages("/sources")) >= 3, 30)
        b.stop()
        mqtt = next(s for s in daemon.sinks if s.name == "mqtt")
        assert wait_for(lambda: not mqtt.connected and mqtt.queued >= 10, 30)
        write(40)
        t0 = time.monotonic()
        queued = mqtt.queued
        assert daemon.reload()
        took = time.monotonic() - t0
        new = next(s for s in daemon.sinks if s.name == "mqtt")
        assert new is not mqtt and new.settings.keepalive_s == 40 and new.queued >= queued
        b.start()
        assert wait_for(lambda: new.connected and new.queued == 0, 30)
        n = daemon.messages
        assert wait_for(lambda: len({m["t_s"] for m in sub.payloads("/sources")}) >= n, 20)
    finally:
        daemon.request_stop()
        thread.join(30)
        sub.close()
        b.stop()
    assert result["rc"] == 0
    assert took < 1.0, took
    got = {m["t_s"] for m in sub.payloads("/sources")}
    sent = [m["t_s"] for m in lines(daemon.stdout)][:n]  # stdout has every message
    assert len(sent) == n and not set(sent) - got  # MQTT lost none of them, the outage and the reload included


@pytest.mark.parametrize("ca", ["missing", "junk"])
def test_check_refuses_the_tls_files_run_would_refuse(home, tmp_path, ca):
    """``run --check`` (and so install.sh) passed a missing CA file that ``run`` then refused (issue 30, fault 10)."""
    ca_file = tmp_path / "ca.pem"
    if ca == "junk":
        ca_file.write_text("not a certificate\n")
    args = ["--device", "edgedaemon", "--set", "mqtt.host=127.0.0.1", "--set", "mqtt.tls=true", "--set",
            f"mqtt.ca_file={ca_file}"]
    for mode in (["--check"], []):
        proc = run_cli(["run", *args, *mode], env=alsa_env(home))
        try:
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == EX_CONFIG, (mode, stderr)
        assert stdout == "" and "ca_file" in stderr and "Traceback" not in stderr


def test_a_second_daemon_on_the_same_mqtt_identity_exits_78(home, broker, tmp_path):
    """Two daemons on one config (the second still waiting for its device, even) took turns on the fixed MQTT
    client id and flapped the retained status every 2 s (issue 30, fault 8)."""
    sub = Subscriber(broker.port, ["edge-msl/twice/status"], client_id="daemon-twice")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[device]\nname = "edgewait2"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                   'node_id = "twice"\n')  # a device that never comes: both would wait
    first = run_cli(["run", "--config", str(cfg)], env=alsa_env(home))
    try:
        assert wait_for(lambda: [p for _, p, _ in sub.messages("/status")][-1:] == [b"online"], 30)
        second = run_cli(["run", "--config", str(cfg)], env=alsa_env(home))
        try:
            _, stderr = second.communicate(timeout=60)
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == EX_CONFIG, stderr
        assert f"pid {first.pid}" in stderr and "node_id" in stderr and "Traceback" not in stderr
        time.sleep(3)
        assert first.poll() is None
        assert [p for _, p, _ in sub.messages("/status")] == [b"online"]  # no flapping
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
        sub.close()


FROZEN_DAEMON = """
import logging, os, sys
from edge_msl.config import load_config
from edge_msl.daemon import run_daemon
logging.basicConfig(level=logging.INFO)
r, w = os.pipe()

class Frozen:
    # a PCM whose read hangs after 20 periods, as one on a frozen PulseAudio does (os.read resumes after a
    # signal, like alsa-lib's wait)
    n = 0

    def read(self):
        self.n += 1
        if self.n > 20:
            logging.info("capture read blocks now")
            os.read(r, 1)
        return 800, bytes(800 * 8 * 2)

    def close(self):
        pass

sys.exit(run_daemon(lambda: load_config(None, [("device.name", "frozen"), ("device.period_frames", 800)]),
                    pcm_factory=Frozen))
"""


def test_sigterm_ends_a_daemon_whose_capture_read_hangs(tmp_path):
    """SIGTERM while an ALSA read blocks (PulseAudio frozen): the daemon was still alive after 45 s; now it ends
    within 2 s, exit 0 (issue 30, fault 11)."""
    proc = subprocess.Popen([sys.executable, "-c", FROZEN_DAEMON], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any("capture read blocks now" in x for x in err), 60), "".join(err)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.returncode == 0 and took <= 2.5, (proc.returncode, took, "".join(err)[-2000:])
    assert any("exiting without waiting" in x for x in err)
