"""Home Assistant done right (issue 32), against a real mosquitto: the discovery payloads validated against the
options Home Assistant documents for MQTT sensors and binary sensors (default_entity_id, never the deprecated
object_id), their templates rendered with Jinja2 as Home Assistant renders them on the state actually
published, and that state retained, sent on a change and at most state_max_rate_hz."""

from __future__ import annotations

import json
import os
import time

import pytest

from edge_msl.config import load_config
from edge_msl.ha import StateLimiter, state_of
from edge_msl.sinks import MqttSink

from daemon_helpers import MOSQUITTO, Broker, Subscriber, wait_for

jsonschema = pytest.importorskip("jsonschema")
jinja2 = pytest.importorskip("jinja2")

pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="mosquitto is not installed")

# The configuration variables of https://www.home-assistant.io/integrations/sensor.mqtt/ and
# .../binary_sensor.mqtt/ (2025.10+: default_entity_id, "domain.object_id"; object_id is deprecated and left out
# here on purpose), with the device and origin maps of https://www.home-assistant.io/integrations/mqtt/
_DEVICE = {"type": "object", "additionalProperties": False, "minProperties": 1,
           "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
           "properties": {k: {"type": "string"} for k in (
               "configuration_url", "hw_version", "manufacturer", "model", "model_id", "name", "serial_number",
               "suggested_area", "sw_version", "via_device")}
           | {"identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
              "connections": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}}}
_ORIGIN = {"type": "object", "required": ["name"], "additionalProperties": False,
           "properties": {"name": {"type": "string"}, "sw_version": {"type": "string"},
                          "support_url": {"type": "string"}}}
_COMMON = {
    "availability_topic": {"type": "string"}, "availability_template": {"type": "string"},
    "availability_mode": {"enum": ["all", "any", "latest"]}, "payload_available": {"type": "string"},
    "payload_not_available": {"type": "string"}, "device": _DEVICE, "origin": _ORIGIN,
    "enabled_by_default": {"type": "boolean"}, "encoding": {"type": "string"},
    "entity_category": {"enum": ["diagnostic"]}, "entity_picture": {"type": "string"},
    "expire_after": {"type": "integer", "minimum": 0}, "force_update": {"type": "boolean"},
    "icon": {"type": "string", "pattern": "^mdi:[a-z0-9-]+$"}, "json_attributes_template": {"type": "string"},
    "json_attributes_topic": {"type": "string"}, "name": {"type": ["string", "null"]}, "platform": {"const": "mqtt"},
    "qos": {"enum": [0, 1, 2]}, "state_topic": {"type": "string"}, "unique_id": {"type": "string"},
    "value_template": {"type": "string"},
}
SCHEMAS = {
    "sensor": {"type": "object", "required": ["state_topic"], "additionalProperties": False, "properties": _COMMON | {
        "default_entity_id": {"type": "string", "pattern": r"^sensor\.[a-z0-9_]+$"},
        "device_class": {"enum": ["distance", "duration", "sound_pressure", "signal_strength", "enum", "timestamp"]},
        "last_reset_value_template": {"type": "string"}, "options": {"type": "array"},
        "suggested_display_precision": {"type": "integer"},
        "state_class": {"enum": ["measurement", "measurement_angle", "total", "total_increasing"]},
        "unit_of_measurement": {"type": "string"}}},
    "binary_sensor": {"type": "object", "required": ["state_topic"], "additionalProperties": False,
                      "properties": _COMMON | {
        "default_entity_id": {"type": "string", "pattern": r"^binary_sensor\.[a-z0-9_]+$"},
        "device_class": {"enum": ["battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
                                  "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
                                  "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
                                  "smoke", "sound", "tamper", "update", "vibration", "window"]},
        "off_delay": {"type": "integer", "minimum": 0}, "payload_off": {"type": "string"},
        "payload_on": {"type": "string"}}},
}


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def sink_for(port, node="den", **mqtt):
    overrides = [("mqtt.host", "127.0.0.1"), ("mqtt.port", port), ("mqtt.node_id", node),
                 ("mqtt.discovery", True), *((f"mqtt.{k}", v) for k, v in mqtt.items())]
    return MqttSink(load_config(None, overrides).mqtt, array_name="respeaker-6mic")


def msg(t, *talkers):
    return {"schema": "edge-msl/sources-v2", "t_s": t, "sources": [
        {"id": i, "azimuth_deg": az, "elevation_deg": None, "distance_m": 1.62, "x_m": 0.0, "y_m": 0.0,
         "confidence": c, "region": 1, "active": True, "azimuth_rate_deg_s": None} for i, az, c in talkers]}


def render(template: str, payload: bytes) -> str:
    # Home Assistant renders value templates with value_json bound to the parsed payload (tojson is Jinja2's)
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload), value=payload.decode())


def test_discovery_payloads_follow_the_documented_schema_and_templates_render(broker):
    sub = Subscriber(broker.port, ["homeassistant/#", "edge-msl/den/state"], client_id="sub-ha-schema")
    sink = sink_for(broker.port)
    sink.start()
    try:
        assert wait_for(lambda: len(sub.messages("/config")) == 4)
        configs = {t: json.loads(p) for t, p, retained in sub.messages("/config")}
        components = sorted(t.split("/")[1] for t in configs)
        assert components == ["binary_sensor", "sensor", "sensor", "sensor"]
        for topic, cfg in configs.items():
            component, node, object_id = topic.split("/")[1:4]
            jsonschema.validate(cfg, SCHEMAS[component])
            assert "object_id" not in cfg and cfg["default_entity_id"] == f"{component}.{object_id}"
            assert node == "den" and cfg["state_topic"] == "edge-msl/den/state"
            assert cfg["availability_topic"] == "edge-msl/den/status" and cfg["device"]["model"] == "respeaker-6mic"
        assert len({c["unique_id"] for c in configs.values()}) == 4
        # 0.2's sources sensor keeps its unique_id and entity id, so dashboards built on it go on working
        by_id = {c["default_entity_id"]: c for c in configs.values()}
        assert by_id["sensor.edge_msl_den_sources"]["unique_id"] == "edge-msl-den-sources"
        talking = by_id["binary_sensor.edge_msl_den_talking"]
        count, azimuth = by_id["sensor.edge_msl_den_sources"], by_id["sensor.edge_msl_den_azimuth"]

        sink.publish(msg(1.0, (4, 41.7, 0.93), (7, 200.2, 0.61)))
        assert wait_for(lambda: sub.messages("edge-msl/den/state"))
        (_, payload, _), = sub.messages("edge-msl/den/state")
        assert render(talking["value_template"], payload) == talking["payload_on"] == "ON"
        assert render(count["value_template"], payload) == "2"
        assert render(azimuth["value_template"], payload) == "42"
        attrs = json.loads(render(count["json_attributes_template"], payload))
        assert attrs == {"talkers": [{"id": 4, "azimuth_deg": 42, "distance_m": 1.6, "confidence": 0.93},
                                     {"id": 7, "azimuth_deg": 200, "distance_m": 1.6, "confidence": 0.61}]}
        time.sleep(0.55)
        sink.publish(msg(1.6))
        assert wait_for(lambda: len(sub.messages("edge-msl/den/state")) == 2)
        payload = sub.messages("edge-msl/den/state")[-1][1]
        assert render(talking["value_template"], payload) == talking["payload_off"] == "OFF"
        assert render(count["value_template"], payload) == "0" and render(azimuth["value_template"], payload) == "None"
    finally:
        sink.close()
        sub.close()


def test_state_is_rate_limited_sent_on_change_and_retained(broker):
    sub = Subscriber(broker.port, ["edge-msl/den/state", "edge-msl/den/sources"], client_id="sub-ha-rate")
    sink = sink_for(broker.port)
    sink.start()
    try:
        assert wait_for(lambda: sink.connected)
        t0 = time.monotonic()
        # 3 s at the 0.1 s hop: a talker who holds still (jitter < 5 deg), then two who take turns every window
        for k in range(30):
            if k < 15:
                sink.publish(msg(k / 10, (1, 90.0 + (k % 3), 0.9)))
            else:
                sink.publish(msg(k / 10, (2 + k % 2, 180.0, 0.8)))
            time.sleep(max(0.0, t0 + (k + 1) / 10 - time.monotonic()))
        for k in range(30, 40):  # silence: the change is sent after the interval
            sink.publish(msg(k / 10))
            time.sleep(max(0.0, t0 + (k + 1) / 10 - time.monotonic()))
        assert wait_for(lambda: len(sub.messages("/sources")) == 40)  # the full-rate data path is untouched
        states = sub.payloads("edge-msl/den/state")
        assert states[0]["talkers"][0]["id"] == 1 and states[-1] == {"talking": False, "count": 0, "talkers": [],
                                                                     "t_s": states[-1]["t_s"]}
        still = [s for s in states if s["t_s"] < 1.5]
        assert len(still) == 1  # one talker holding still: one message, not 15
        turns = [s for s in states if 1.5 <= s["t_s"] < 3.0]
        assert 2 <= len(turns) <= 4  # a change every window for 1.5 s, at most 2 Hz
        assert all(len(json.dumps(s)) < 200 for s in states)  # compact
    finally:
        sink.close()
        sub.close()
    late = Subscriber(broker.port, ["edge-msl/den/state"], client_id="sub-ha-late-state")
    assert wait_for(lambda: late.messages())
    (_, payload, retained), = late.messages()
    assert retained and json.loads(payload)["talking"] is False  # Home Assistant starting later sees it at once
    late.close()


def test_state_limiter_rules():
    lim = StateLimiter(max_rate_hz=2.0, min_move_deg=5.0)
    assert lim.offer(msg(0.0, (1, 10.0, 0.9)), now=0.0) is not None
    assert lim.offer(msg(0.1, (1, 14.0, 0.9)), now=0.6) is None  # moved 4 deg: no change
    assert lim.offer(msg(0.2, (1, 15.6, 0.9)), now=0.7) is not None  # moved 6 deg
    assert lim.offer(msg(0.3, (1, 30.0, 0.9), (2, 90.0, 0.5)), now=0.8) is None  # a change, but within 0.5 s
    payload = lim.offer(msg(0.4, (1, 30.0, 0.9), (2, 90.0, 0.5)), now=1.21)  # sent with the next window
    assert json.loads(payload)["count"] == 2
    assert lim.offer(msg(0.5, (1, 358.0, 0.9), (2, 90.0, 0.5)), now=5.0) is not None  # 30 -> 358 moved 32 deg
    assert lim.offer(msg(0.6, (1, 2.0, 0.9), (2, 90.0, 0.5)), now=6.0) is None  # across 0: moved 4 deg
    assert state_of(msg(1.0, (3, 359.6, 0.5)))["talkers"][0]["azimuth_deg"] == 0
