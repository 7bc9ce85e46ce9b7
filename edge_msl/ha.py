"""Home Assistant over MQTT: the discovery configs (a "someone talking" binary sensor, a talker count with the
talkers as compact attributes, the strongest talker's azimuth and distance) and the rate-limited state they
read, so Home Assistant records a row when something changes, not every window.

It builds payloads only; :class:`edge_msl.mqtt_sink.MqttSink` publishes them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import __version__
from .config import MqttSettings

STATE_LEAF = "state"
"""Topic leaf of the state Home Assistant reads: ``<prefix>/<node>/state`` (retained)."""


def discovery_messages(s: MqttSettings, *, status_topic: str, array_name: str = "") -> dict[str, dict[str, Any]]:
    """Topic -> retained discovery config of each entity (Home Assistant's MQTT discovery, ``default_entity_id``
    instead of the ``object_id`` deprecated in 2025.10)."""
    node = s.node
    state_topic = s.topic(STATE_LEAF)
    device = {"identifiers": [f"edge-msl-{node}"], "name": f"edge-msl {node}", "manufacturer": "edge-msl",
              "model": array_name or "microphone array", "sw_version": __version__}
    common = {"state_topic": state_topic, "availability_topic": status_topic, "payload_available": "online",
              "payload_not_available": "offline", "device": device,
              "origin": {"name": "edge-msl", "sw_version": __version__}}
    strongest = "{{ value_json.talkers[0].FIELD if value_json.talkers else None }}"
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("binary_sensor", "talking"): {
            "name": "Someone talking", "device_class": "sound", "icon": "mdi:account-voice",
            "value_template": "{{ 'ON' if value_json.talking else 'OFF' }}", "payload_on": "ON", "payload_off": "OFF"},
        # unique_id and entity id of 0.2's "Sources" sensor are kept, so existing dashboards go on working
        ("sensor", "sources"): {
            "name": "Talkers", "value_template": "{{ value_json.count }}", "state_class": "measurement",
            "icon": "mdi:account-multiple", "json_attributes_topic": state_topic,
            "json_attributes_template": "{{ {'talkers': value_json.talkers} | tojson }}"},
        ("sensor", "azimuth"): {
            "name": "Strongest talker azimuth", "value_template": strongest.replace("FIELD", "azimuth_deg"),
            "unit_of_measurement": "°", "icon": "mdi:compass"},
        ("sensor", "distance"): {
            "name": "Strongest talker distance", "value_template": strongest.replace("FIELD", "distance_m"),
            "unit_of_measurement": "m", "device_class": "distance"},
    }
    out = {}
    for (component, key), cfg in entities.items():
        object_id = f"edge_msl_{node}_{key}".replace("-", "_").lower()
        out[f"{s.discovery_prefix}/{component}/{node}/{object_id}/config"] = {
            **cfg, **common, "unique_id": f"edge-msl-{node}-{key}", "default_entity_id": f"{component}.{object_id}"}
    return out


def state_of(msg: dict[str, Any]) -> dict[str, Any]:
    """The compact state of one message: talking, count, and per talker (strongest first) id, azimuth (whole
    degrees), distance and confidence."""
    talkers = [{"id": s["id"], "azimuth_deg": int(round(s["azimuth_deg"])) % 360,
                "distance_m": round(s["distance_m"], 1) if s.get("distance_m") is not None else None,
                "confidence": round(s["confidence"], 2)}
               for s in sorted(msg["sources"], key=lambda s: -s["confidence"])]
    return {"talking": bool(talkers), "count": len(talkers), "talkers": talkers, "t_s": msg["t_s"]}


def _moved_deg(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


class StateLimiter:
    """Decides when the state topic is published: on a change (someone starts or stops talking, the count or
    the ids change, a talker moves by ``min_move_deg``) and then at most ``max_rate_hz``; a change held back by
    the rate is sent with the first message after the interval."""

    def __init__(self, max_rate_hz: float = 2.0, min_move_deg: float = 5.0) -> None:
        self.min_interval_s = 1.0 / max_rate_hz
        self.min_move_deg = min_move_deg
        self.last: dict[str, Any] | None = None
        self._last_sent = -float("inf")
        self.sent = 0
        self.seen = 0

    def changed(self, state: dict[str, Any]) -> bool:
        """True when ``state`` differs enough from the last one sent."""
        last = self.last
        if last is None or state["talking"] != last["talking"] or state["count"] != last["count"]:
            return True
        before = {t["id"]: t for t in last["talkers"]}
        for t in state["talkers"]:
            old = before.get(t["id"])
            if old is None or _moved_deg(t["azimuth_deg"], old["azimuth_deg"]) >= max(self.min_move_deg, 1e-9):
                return True
        return False

    def offer(self, msg: dict[str, Any], now: float | None = None) -> bytes | None:
        """The payload to publish now for this message, or None."""
        self.seen += 1
        state = state_of(msg)
        now = time.monotonic() if now is None else now
        if not self.changed(state) or now - self._last_sent < self.min_interval_s:
            return None
        self.last = state
        self._last_sent = now
        self.sent += 1
        return json.dumps(state, separators=(",", ":")).encode()

    def current(self) -> bytes | None:
        """The last state sent (published again after a reconnect), None before the first."""
        return None if self.last is None else json.dumps(self.last, separators=(",", ":")).encode()


__all__ = ["STATE_LEAF", "discovery_messages", "state_of", "StateLimiter"]
