"""Real peers for the daemon tests and benchmark: a mosquitto broker on a free loopback port, an MQTT
subscriber that records what it receives, and an ALSA ``file``-plugin PCM serving a raw recording."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


class Broker:
    """mosquitto on 127.0.0.1:<free port> with a generated config; persistent sessions survive restarts."""

    def __init__(self, workdir: Path, *, extra_conf: str = "", port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        anonymous = "false" if "password_file" in extra_conf else "true"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {anonymous}\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            # as root, mosquitto would drop to user 'mosquitto', who cannot read pytest's 0700 tmp dirs
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        if not wait_for(listening, 10.0):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """A paho client with a persistent session (QoS 1) that records (topic, payload, retained)."""

    def __init__(self, port: int, topics: list[str], client_id: str = "test-subscriber",
                 auth: tuple[str, str] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.received: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(1, 1)
        self.topics = topics

        def on_connect(client, userdata, flags, rc, props):
            for t in topics:
                client.subscribe(t, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.received.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("subscriber could not connect")

    def messages(self, topic_suffix: str = "") -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.received if m[0].endswith(topic_suffix)]

    def payloads(self, topic_suffix: str) -> list[dict]:
        return [json.loads(p) for _, p, _ in self.messages(topic_suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_asoundrc(home: Path, pcms: dict[str, Path]) -> Path:
    """A ~/.asoundrc in ``home`` defining each PCM name of ``pcms`` as the ALSA ``file`` plugin reading
    its raw file (interleaved frames in the format the PCM is opened with) over a ``null`` slave: the
    real ALSA API with no sound card. alsa-lib re-reads it when $HOME changes."""
    home.mkdir(parents=True, exist_ok=True)
    rc = home / ".asoundrc"
    rc.write_text("".join(
        f"pcm.{name} {{\n"
        "  type file\n"
        '  slave.pcm "null"\n'
        '  file "/dev/null"\n'
        f'  infile "{raw}"\n'
        '  format "raw"\n'
        "}\n" for name, raw in pcms.items()))
    return rc


ALSA_CONF = next((p for p in ("/usr/share/alsa/alsa.conf", "/usr/local/share/alsa/alsa.conf") if os.path.exists(p)),
                 "/usr/share/alsa/alsa.conf")


def alsa_env(home: Path) -> dict[str, str]:
    """Environment that makes alsa-lib read ``home``'s .asoundrc: $HOME, and $ALSA_CONFIG_PATH naming the
    file too, because alsa-lib caches its configuration per process and reads it again only when that
    file list changes (a new $HOME alone is not noticed once a PCM was opened)."""
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["ALSA_CONFIG_PATH"] = f"{ALSA_CONF}:{Path(home) / '.asoundrc'}"
    return env


@contextlib.contextmanager
def alsa_home(home: Path):
    """Use ``home``'s .asoundrc in this process (see :func:`alsa_env`); the old environment comes back after."""
    old = {k: os.environ.get(k) for k in ("HOME", "ALSA_CONFIG_PATH")}
    os.environ.update({k: alsa_env(home)[k] for k in old})
    try:
        yield Path(home)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
