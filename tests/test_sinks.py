"""edge_msl.sinks with real peers: stdout into a real pipe whose reader left, and MQTT against a real
mosquitto broker on a free loopback port (stopped and restarted mid-run, last will, Home Assistant
discovery, username/password)."""

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("paho.mqtt.client")

from daemon_helpers import MOSQUITTO, Broker, Subscriber, wait_for  # noqa: E402
from edge_msl.config import ConfigError, StdoutSettings, load_config  # noqa: E402
from edge_msl.sinks import MqttSink, StdoutSink  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto is not installed")


def msg(i):
    return {"schema": "edge-msl/sources-v2", "t_s": round(0.5 + 0.1 * i, 3),
            "sources": [{"id": 1, "azimuth_deg": float(i % 360), "confidence": 0.9}]}


def mqtt_config(port, node="t", **extra):
    over = [("mqtt.host", "127.0.0.1"), ("mqtt.port", port), ("mqtt.node_id", node),
            ("mqtt.reconnect_max_delay_s", 1)] + list(extra.items())
    return load_config(None, [(k if "." in k else f"mqtt.{k}", v) for k, v in over], env=extra.pop("env", None))


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def test_stdout_lines_and_a_reader_that_leaves():
    buf = io.StringIO()
    s = StdoutSink(StdoutSettings(), buf)
    s.publish(msg(0))
    s.publish(msg(1))
    assert [json.loads(line)["t_s"] for line in buf.getvalue().splitlines()] == [0.5, 0.6]
    r, w = os.pipe()
    os.close(r)
    with os.fdopen(w, "w") as pipe:
        s = StdoutSink(StdoutSettings(), pipe)
        s.publish(msg(0))  # EPIPE: the sink closes itself, nothing is raised
        s.publish(msg(1))
        assert s.closed and s.written == 0
        try:
            pipe.close()
        except BrokenPipeError:
            pass


def test_stdout_odas_format():
    buf = io.StringIO()
    StdoutSink(StdoutSettings(format="odas"), buf).publish(msg(90))
    frame = json.loads(buf.getvalue())
    # ODAS's own multi-line layout, timeStamp from 1 as ODAS counts (tests/test_odas.py checks it byte for byte)
    assert buf.getvalue().startswith('{\n    "timeStamp": 1,\n    "src": [\n        { "id": ')
    assert frame["timeStamp"] == 1 and len(frame["src"]) == 4 and frame["src"][0]["y"] == pytest.approx(1.0)


def test_messages_in_order_status_online_then_offline_retained(broker):
    sub = Subscriber(broker.port, ["edge-msl/#"], client_id="sub-order")
    sink = MqttSink(mqtt_config(broker.port, node="order").mqtt)
    sink.start()
    try:
        assert wait_for(lambda: sink.connected)
        for i in range(200):
            sink.publish(msg(i))
        assert wait_for(lambda: len(sub.messages("/sources")) == 200)
        assert [m["t_s"] for m in sub.payloads("/sources")] == [msg(i)["t_s"] for i in range(200)]
        assert all(not r for _, _, r in sub.messages("/sources"))  # sources are not retained
    finally:
        sink.close()
        sub.close()
    assert sink.delivered == 200 and sink.dropped == 0
    late = Subscriber(broker.port, ["edge-msl/order/status"], client_id="sub-late")
    assert wait_for(lambda: late.messages("/status"))
    assert late.messages("/status")[-1] == ("edge-msl/order/status", b"offline", True)
    late.close()


def test_broker_stopped_and_restarted_loses_nothing_within_the_bound(broker, caplog):
    sub = Subscriber(broker.port, ["edge-msl/restart/sources"], client_id="sub-restart")
    sink = MqttSink(mqtt_config(broker.port, node="restart", queue_max_messages=100).mqtt)
    sink.start()
    try:
        assert wait_for(lambda: sink.connected)
        with caplog.at_level(logging.INFO, logger="edge_msl.sinks"):
            for i in range(30):
                sink.publish(msg(i))
            assert wait_for(lambda: sink.queued == 0)
            broker.stop()
            assert wait_for(lambda: not sink.connected)
            for i in range(30, 180):  # 150 while the broker is down; the bound keeps the newest 100
                sink.publish(msg(i))
            assert sink.queued == 100 and sink.dropped == 50
            broker.start()
            assert wait_for(lambda: sink.connected and sink.queued == 0, 20)
            assert wait_for(lambda: len({m["t_s"] for m in sub.payloads("/sources")}) >= 130, 10)
    finally:
        sink.close()
        sub.close()
    got = [m["t_s"] for m in sub.payloads("/sources")]
    want = [msg(i)["t_s"] for i in list(range(30)) + list(range(80, 180))]
    assert sorted(set(got)) == want  # everything within the bound, nothing else
    first = list(dict.fromkeys(got))  # QoS 1 is at least once: a redelivered duplicate may follow
    assert first == sorted(first)  # in order
    logs = " ".join(r.getMessage() for r in caplog.records)
    assert "lost" in logs and "dropping the oldest" in logs and "50 dropped" in logs


def test_last_will_says_offline_when_the_process_dies(broker):
    sub = Subscriber(broker.port, ["edge-msl/will/status"], client_id="sub-will")
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from daemon_helpers import wait_for
        from edge_msl.config import load_config
        from edge_msl.sinks import MqttSink
        cfg = load_config(None, [("mqtt.host", "127.0.0.1"), ("mqtt.port", {broker.port}), ("mqtt.node_id", "will"),
                                 ("mqtt.keepalive_s", 5)])
        s = MqttSink(cfg.mqtt); s.start()
        assert wait_for(lambda: s.connected)
        print("up", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        assert wait_for(lambda: [p for _, p, _ in sub.messages("/status")] == [b"online"])
        proc.kill()  # no clean shutdown: the broker publishes the will
        proc.wait()
        assert wait_for(lambda: [p for _, p, _ in sub.messages("/status")][-1:] == [b"offline"], 15)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_home_assistant_discovery_is_republished_when_ha_comes_online(broker):
    sub = Subscriber(broker.port, ["homeassistant/sensor/#"], client_id="sub-ha")
    sink = MqttSink(mqtt_config(broker.port, node="ha", discovery=True).mqtt, array_name="uca8-r10")
    sink.start()
    try:
        assert wait_for(lambda: len(sub.messages("/config")) == 3)
        configs = {t: json.loads(p) for t, p, _ in sub.messages("/config")}
        for topic, cfg in configs.items():
            assert topic.startswith("homeassistant/sensor/ha/")
            assert cfg["state_topic"] == "edge-msl/ha/state" and cfg["availability_topic"] == "edge-msl/ha/status"
            assert cfg["unique_id"].startswith("edge-msl-ha-") and cfg["device"]["model"] == "uca8-r10"
        ha = Subscriber(broker.port, [], client_id="fake-home-assistant")
        ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        assert wait_for(lambda: len(sub.messages("/config")) == 6)
        ha.close()
    finally:
        sink.close()
        sub.close()
    late = Subscriber(broker.port, ["homeassistant/sensor/#"], client_id="sub-ha-late")
    assert wait_for(lambda: len(late.messages("/config")) == 3)  # retained for a Home Assistant that starts later
    assert all(r for _, _, r in late.messages("/config"))
    late.close()


def test_username_and_password_from_env_never_logged(tmp_path, caplog):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "pi", "correct-horse-7"], check=True,
                   capture_output=True)
    b = Broker(tmp_path / "auth", extra_conf=f"password_file {pwfile}\n").start()
    try:
        sub = Subscriber(b.port, ["edge-msl/auth/sources"], client_id="sub-auth", auth=("pi", "correct-horse-7"))
        with caplog.at_level(logging.DEBUG):
            bad = MqttSink(load_config(None, [("mqtt.host", "127.0.0.1"), ("mqtt.port", b.port),
                                              ("mqtt.node_id", "auth"), ("mqtt.username", "pi"),
                                              ("mqtt.password_env", "EDGE_PW")], env={"EDGE_PW": "wrong-pass-9"}).mqtt)
            bad.start()
            assert wait_for(lambda: any("refused" in r.getMessage() for r in caplog.records))
            assert not bad.connected
            bad.close(timeout_s=0.1)
            good = MqttSink(load_config(None, [("mqtt.host", "127.0.0.1"), ("mqtt.port", b.port),
                                               ("mqtt.node_id", "auth"), ("mqtt.username", "pi"),
                                               ("mqtt.password_env", "EDGE_PW")],
                                        env={"EDGE_PW": "correct-horse-7"}).mqtt)
            good.start()
            good.publish(msg(1))
            assert wait_for(lambda: len(sub.messages("/sources")) == 1)
            good.close()
        sub.close()
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "correct-horse-7" not in text and "wrong-pass-9" not in text
    finally:
        b.stop()


def test_tls_files_that_cannot_be_read_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="ca_file .*does not exist"):  # refused by the config already
        load_config(None, [("mqtt.host", "h"), ("mqtt.tls", True), ("mqtt.ca_file", str(tmp_path / "no.pem"))])
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cfg = load_config(None, [("mqtt.host", "h"), ("mqtt.tls", True), ("mqtt.ca_file", str(tmp_path / "junk.pem"))])
    with pytest.raises(ConfigError, match="ca_file"):
        MqttSink(cfg.mqtt)


def test_stdout_write_errors_drop_lines_and_never_raise(caplog):
    """A full disk under stdout (``> /dev/full``) is one error line, counted losses, and recovery; never an
    exception into the daemon's loop (issue 30, fault 3)."""
    import errno

    class Flaky(io.StringIO):
        fail = True

        def write(self, text):
            if self.fail:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(text)

    stream = Flaky()
    s = StdoutSink(StdoutSettings(), stream)
    with caplog.at_level("INFO", logger="edge_msl.sinks"):
        for i in range(5):
            s.publish(msg(i))
        stream.fail = False
        s.publish(msg(5))
    assert not s.closed and s.lost == 5 and s.written == 1
    assert [json.loads(x)["t_s"] for x in stream.getvalue().splitlines()] == [1.0]
    errors = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert any("writable again: 5 JSON lines were lost" in r.getMessage() for r in caplog.records)
    with open("/dev/full", "w") as full:  # the real thing: sys.stdout's own file descriptor
        old = os.dup(1)
        os.dup2(full.fileno(), 1)
        try:
            s = StdoutSink(StdoutSettings())
            import sys
            real, sys.stdout = sys.stdout, sys.__stdout__
            try:
                s.publish(msg(0))
                s.publish(msg(1))
            finally:
                sys.stdout = real
        finally:
            os.dup2(old, 1)
            os.close(old)
    assert s.lost == 2 and not s.closed


def test_a_failed_connect_says_why_once_per_outage(broker, caplog):
    """Nothing listening, and TLS to a plain port: one ERROR line naming the cause and what to check, not one
    per retry, and none of paho's "Client is not connected" (issue 30, fault 5). Both sinks retry at once (each
    needs seconds of retries)."""
    from daemon_helpers import free_port

    cases = {"connection refused": (free_port(), False), "TLS handshake failed": (broker.port, True)}
    sinks = [MqttSink(mqtt_config(port, node=f"why{i}", tls=tls, reconnect_min_delay_s=1).mqtt)
             for i, (port, tls) in enumerate(cases.values())]
    with caplog.at_level(logging.DEBUG):
        for sink in sinks:
            sink.start()
        time.sleep(3.5)  # three or four attempts
        for sink in sinks:
            assert not sink.connected
            sink.publish(msg(0))
            sink.close(timeout_s=0.1)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any("Client is not connected" in e for e in errors), errors
    why = [e for e in errors if "cannot connect" in e]
    assert len(why) == len(cases), errors
    for needle, (port, _) in cases.items():
        mine = [e for e in why if f":{port}" in e]
        assert len(mine) == 1 and needle in mine[0], errors
