"""edge_msl.config: the shipped default config loads, every bad key or value is a one-line ConfigError
naming the key, the value and what is allowed, secrets stay out of repr/to_dict, and a fuzzed loader
never fails any other way."""

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_msl.arrays import get_array
from edge_msl.config import (ConfigError, DeviceSettings, MqttSettings, load_config, parse_assignment,
                             parse_config)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "systemd" / "config.toml"


def test_shipped_default_config_is_valid_and_matches_the_defaults():
    cfg = load_config(SHIPPED)
    assert cfg.array.name == "uca8-r10"
    assert cfg.device == DeviceSettings(rate_hz=16000)  # rate: the array's native one (uca8-r10: 16 kHz)
    assert cfg.model is None and cfg.hop_s == pytest.approx(0.1)
    # the service template turns stdout off (the journal is no data path); the library default stays on
    assert not cfg.mqtt.enabled and not cfg.stdout.enabled
    assert load_config(None).stdout.enabled


def test_every_option_can_come_from_the_command_line(tmp_path):
    (tmp_path / "pw").write_text("s3cret\nignored second line\n")
    cfg = load_config(None, [("device.name", "hw:CARD=seeed8micvoicec,DEV=0"), ("array", "respeaker-6mic"),
                             ("device.format", "S32_LE"), ("mqtt.host", "localhost"), ("mqtt.qos", 2),
                             ("mqtt.username", "pi"), ("mqtt.password_file", str(tmp_path / "pw")),
                             ("decode.gate_deg", 30.0), ("hop_s", 0.2), ("stdout.enabled", False)])
    assert cfg.device.name.startswith("hw:CARD=seeed") and cfg.device.format == "S32_LE"
    assert cfg.array == get_array("respeaker-6mic") and cfg.mqtt.qos == 2 and cfg.decode["gate_deg"] == 30.0
    assert cfg.mqtt.password == "s3cret" and cfg.hop_s == 0.2 and not cfg.stdout.enabled
    assert cfg.source == "command line"


def test_file_then_overrides_and_relative_model_path(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('model = "models/mine.tflite"\n[mqtt]\nhost = "broker.lan"\nqos = 0\n')
    cfg = load_config(p, [("mqtt.qos", 1)])
    assert cfg.model == tmp_path / "models" / "mine.tflite"
    assert cfg.mqtt.host == "broker.lan" and cfg.mqtt.qos == 1
    assert cfg.source == f"{p} + command line"


def test_custom_array_table():
    cfg = parse_config({"array": {"name": "tri", "positions_m": [[0.03, 0, 0], [-0.015, 0.026, 0],
                                                                 [-0.015, -0.026, 0]],
                                  "channel_map": [2, 0, 1], "n_channels": 4}})
    assert cfg.array.n_mics == 3 and cfg.array.channel_map == (2, 0, 1) and cfg.array.n_channels == 4


@pytest.mark.parametrize("overrides, needles", [
    ([("mqtt.qos", 3)], ["[mqtt] qos", "3", "[0, 2]"]),
    ([("device.format", "S24_LE")], ["[device] format", "S24_LE", "S16_LE", "S32_LE"]),
    ([("mqtt.hots", "x")], ["hots", "'x'", "host"]),
    ([("device.rate_hz", 1000)], ["[device] rate_hz", "1000", "[8000, 192000]"]),
    ([("device.period_frames", True)], ["period_frames", "True", "integer"]),
    ([("hop_s", "fast")], ["hop_s", "'fast'", "seconds in [0.001, 60]"]),
    ([("threshold", 1.5)], ["threshold", "1.5", "(0, 1]"]),
    ([("pool_s", 1.0)], ["pool_s", "edge-msl 0.2", "remove pool_s"]),
    ([("tracking.gate_deg", 30.0)], ["[tracking] became [decode]", "docs/decode.md"]),
    ([("array", "nope")], ["array", "nope", "respeaker-6mic"]),
    ([("decode.gate_deg", 400)], ["decode.gate_deg", "400", "(0, 180)"]),
    ([("decode.bogus", 1)], ["decode", "bogus", "gate_deg"]),
    ([("decode.keep_threshold", 0.9)], ["decode.keep_threshold", "0.9", "birth_threshold"]),
    ([("mqtt.node_id", "a/b")], ["node_id", "a/b", "letters"]),
    ([("mqtt.password", "x")], ["password", "password_file", "password_env"]),
    ([("mqtt.password_env", "EDGE_MSL_NO_SUCH_VAR")], ["password_env", "EDGE_MSL_NO_SUCH_VAR", "not set"]),
    ([("mqtt.password_file", "/nonexistent/pw")], ["password_file", "/nonexistent/pw", "readable"]),
    ([("mqtt.ca_file", "/x.pem")], ["tls = false", "tls = true"]),
    ([("device.retry_min_delay_s", 10.0), ("device.retry_max_delay_s", 5.0)], ["retry_min_delay_s", "10"]),
    ([("logging.level", "loud")], ["[logging] level", "loud", "'debug'"]),
    ([("stdout", 3)], ["[stdout]", "3", "table"]),
    ([("bogus", 1)], ["bogus", "allowed", "mqtt"]),
])
def test_bad_values_name_key_value_and_allowed(overrides, needles):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides, env={})
    text = str(e.value)
    assert "\n" not in text
    for n in needles:
        assert n in text, (n, text)


def test_broken_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[mqtt\nhost = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_password_from_env_is_never_shown(tmp_path):
    cfg = load_config(None, [("mqtt.host", "h"), ("mqtt.username", "u"), ("mqtt.password_env", "PW")],
                      env={"PW": "hunter2-secret"})
    assert cfg.mqtt.password == "hunter2-secret"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.to_dict())


def test_set_assignment_parses_toml_values():
    assert parse_assignment("mqtt.qos=2") == ("mqtt.qos", 2)
    assert parse_assignment("stdout.enabled=false") == ("stdout.enabled", False)
    assert parse_assignment("device.name=hw:CARD=x,DEV=0") == ("device.name", "hw:CARD=x,DEV=0")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("novalue")


def test_mqtt_topics_and_ports():
    m = MqttSettings(host="h", node_id="kitchen", tls=True)
    assert m.topic("sources") == "edge-msl/kitchen/sources" and m.effective_port == 8883
    assert MqttSettings(host="h").node  # the host name stands in for an empty node_id


# ---- fuzzing: any document either loads or raises ConfigError with one line ------------------------

_KEYS = ["device", "array", "model", "hop_s", "threshold", "decode", "track", "num_threads", "keep_threshold", "stdout",
         "mqtt", "miss_windows",
         "logging", "name", "rate_hz", "format", "period_frames", "periods", "host", "port", "qos", "node_id",
         "discovery", "queue_max_messages", "level", "gate_deg", "positions_m", "channel_map", "n_channels",
         "password", "password_env", "password_file", "tls", "enabled", "x"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(string.printable, max_size=12), st.sampled_from(["S16_LE", "uca8-r10", "info", "hw:0"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)),
                       max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_KEYS), _values, max_size=6))
def test_fuzzed_documents_load_or_raise_config_error(doc):
    try:
        parse_config(doc, env={})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_toml_text_loads_or_raises_config_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fuzz") / "c.toml"
    p.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_config(p, env={})
    except ConfigError as exc:
        assert str(exc)


@pytest.mark.parametrize("section, key", [("mqtt", "pasword"), ("mqtt", "pass"), ("mqtt", "passwd"), ("mqtt", "pw"),
                                          ("device", "api_token"), ("stdout", "secret")])
def test_a_mistyped_secret_key_is_never_echoed(tmp_path, section, key):
    """``pasword = "..."`` or ``--set mqtt.pass=...``: the error names the key, never its value (issue 30,
    fault 6)."""
    import subprocess
    import sys

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[{section}]\n{key} = "hunter2-xyzzy"\n')
    with pytest.raises(ConfigError, match=key) as err:
        load_config(cfg, env={})
    assert "hunter2" not in str(err.value) and "redacted" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, [(f"{section}.{key}", "hunter2-xyzzy")], env={})
    assert "hunter2" not in str(err.value)
    r = subprocess.run([sys.executable, "-m", "edge_msl", "run", "--check", "--set", f"{section}.{key}=hunter2-xyzzy"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and key in r.stderr and "hunter2" not in r.stderr + r.stdout


def _mutants(n, seed=30):
    """Seeded hostile variants of the shipped config: deep nesting, integers past Python's 4,300-digit limit,
    arrays and tables where names and numbers go, byte flips."""
    import random

    rng = random.Random(seed)
    base = SHIPPED.read_text()
    keys = ["model", "hop_s", "threshold", "array", "num_threads", "[device] name", "[device] rate_hz",
            "[mqtt] host", "[mqtt] port", "[mqtt] node_id", "[decode] gate_deg", "[array] name", "[array] positions_m",
            "[array] channel_map", "[logging] level", "[stdout] format"]
    for i in range(n):
        kind = i % 6
        depth = rng.choice([10, 50, 400, 3000])
        value = [("[" * depth + "1" + "]" * depth), ("{a = " * depth + "1" + "}" * depth),
                 rng.choice("123456789") * rng.choice([4301, 5000, 20000]), "[[1], {a = 2}]",
                 "{name = [1, 2]}", "-" + "9" * 4400][rng.randrange(6) if kind < 5 else 5]
        key = rng.choice(keys)
        section, _, name = key.rpartition(" ")
        text = (f"{name} = {value}\n" + base) if not section else f"{section}\n{name} = {value}\n" + (
            base.replace(section + "\n", "") if rng.random() < 0.5 else "")
        if kind == 5:
            b = bytearray(text.encode())
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.choice(b"[]{}=\"'9\n.")
            text = b.decode(errors="replace")
        yield text


def test_hostile_configs_are_one_line_config_errors(tmp_path):
    """1,200 seeded hostile configs (the hostile test's count): each loads or is a one-line ConfigError, never a
    RecursionError, a ValueError from the integer digit limit or a TypeError (issue 30, fault 9)."""
    p = tmp_path / "c.toml"
    failures = []
    for i, text in enumerate(_mutants(1200)):
        p.write_text(text)
        try:
            load_config(p, env={})
        except ConfigError as exc:
            assert "\n" not in str(exc)
        except BaseException as exc:  # noqa: BLE001 (counting them is the point)
            failures.append((i, type(exc).__name__, str(exc)[:80]))
    assert not failures, f"{len(failures)} tracebacks, e.g. {failures[:3]}"
    for value in ["1" * 5000, "[" * 3000 + "]" * 3000]:  # --set values go through TOML too
        with pytest.raises(ConfigError):
            load_config(None, [parse_assignment(f"mqtt.port={value}")], env={})


@pytest.mark.parametrize("text", ["hop_s = " + "1" * 5000, "x = " + "[" * 3000 + "]" * 3000,
                                  "[decode]\ngate_deg = " + "{a = " * 20 + "1" + "}" * 20])
def test_hostile_config_exits_78_with_one_line(tmp_path, text):
    import subprocess
    import sys

    p = tmp_path / "c.toml"
    p.write_text(text + "\n")
    r = subprocess.run([sys.executable, "-m", "edge_msl", "run", "--check", "--config", str(p)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 78 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory", "huge"])
def test_config_reads_are_bounded_and_never_block(tmp_path, kind):
    """``--config /dev/zero`` took 3.8 GB and a FIFO hung the start (issue 30, fault 13): only regular files of at
    most 1 MiB are read, for the config and the password file alike."""
    import subprocess
    import sys

    path = {"dev_zero": Path("/dev/zero"), "fifo": tmp_path / "fifo", "directory": tmp_path,
            "huge": tmp_path / "huge.toml"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "huge":
        path.write_text("# padding\n" * 110_000 + 'hop_s = 0.1\n')  # 1.1 MB of valid TOML
    with pytest.raises(ConfigError, match="regular file|larger than"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="password_file.*cannot be read"):
        load_config(None, [("mqtt.host", "h"), ("mqtt.username", "u"), ("mqtt.password_file", str(path))], env={})
    r = subprocess.run([sys.executable, "-m", "edge_msl", "run", "--check", "--config", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and len(r.stderr.strip().splitlines()) == 1, r.stderr
