"""Run the localization daemon on an ALSA capture device: JSON lines on stdout and/or MQTT.

Configuration: a TOML file (--config; default /etc/edge-msl/config.toml when it exists, see
systemd/config.toml for every key), then --set section.key=value and the shortcut options below,
in that order. A bad key or value exits at once with code 78 naming the key, the value and what
is allowed. A missing or unplugged device, or a broker that is down, is waited for, never fatal.
Signals: SIGTERM/SIGINT stop (outputs flushed, MQTT status 'offline'); SIGHUP reloads the config
and the model, keeping the audio stream when the device settings did not change.

Examples:
  edge-msl run --device hw:CARD=seeed8micvoicec,DEV=0 --array respeaker-6mic
  edge-msl run --config /etc/edge-msl/config.toml --mqtt-host localhost --no-stdout
  edge-msl run --config my.toml --check          (validate + load the model, print the effective config)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .options import ODAS_TARGETS, SHARED, Option, add_options, overrides

OPTIONS: tuple[Option, ...] = (
    Option("--device", "device.name", str, "ALSA PCM name, e.g. hw:CARD=seeed8micvoicec,DEV=0"),
    Option("--rate", "device.rate_hz", int, "capture rate in Hz (default: the model's)"),
    Option("--format", "device.format", str, "S16_LE or S32_LE"),
    Option("--period-frames", "device.period_frames", int, "frames per ALSA read"),
    *SHARED,
    Option("--mqtt-host", "mqtt.host", str, "MQTT broker host (turns MQTT on)"),
    Option("--mqtt-port", "mqtt.port", int, "MQTT broker port"),
    Option("--node-id", "mqtt.node_id", str, "topic level naming this device (default: host name)"),
    Option("--qos", "mqtt.qos", int, "MQTT QoS of the sources messages (0, 1, 2)"),
    Option("--mqtt-username", "mqtt.username", str, "MQTT user name"),
    Option("--mqtt-password-file", "mqtt.password_file", str, "file whose first line is the MQTT password"),
    *ODAS_TARGETS,
    Option("--log-level", "logging.level", str, "debug, info, warning or error"),
    Option("--mqtt-tls", "mqtt.tls", None, "connect to the broker with TLS", value=True),
    Option("--discovery", "mqtt.discovery", None, "publish Home Assistant MQTT discovery", value=True),
    Option("--no-stdout", "stdout.enabled", None, "no JSON lines on stdout", value=False),
    Option("--live", "live.enabled", None, "serve the live view ([live] host:port, default 127.0.0.1:8077)",
           value=True),
    Option("--pace-realtime", "device.pace_realtime", None, "pace reads to the clock (ALSA file plugin, tests)",
           value=True),
)
"""Each a shortcut for ``--set KEY=VALUE``; the knobs shared with ``locate`` come from :data:`SHARED`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl run``."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML configuration (default: /etc/edge-msl/config.toml if it exists)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="assignments",
                        help="set any config key, e.g. --set mqtt.queue_max_messages=20000 (repeatable)")
    add_options(parser, OPTIONS)
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration and load the model, print the effective configuration "
                             "as JSON, exit (0, or 78 on an error)")


def overrides_from_args(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs from --set and the shortcut options, in that order."""
    from ..config import parse_assignment

    return [parse_assignment(a) for a in args.assignments] + overrides(args, OPTIONS)


class _JournalFormatter(logging.Formatter):
    """``<priority>message`` lines: journald reads the syslog priority (SyslogLevelPrefix) and adds the time."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = self._PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup_logging(level_name: str, verbose: int = 0) -> None:
    """Logs on stderr: plain lines with a time stamp, or journald priorities when run by systemd."""
    level = getattr(logging, level_name.upper())
    if verbose:
        level = min(level, logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s edge-msl %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(args: argparse.Namespace) -> int:
    """Validate the configuration, then run the daemon until stopped."""
    from ..config import DEFAULT_CONFIG_PATH, EX_CONFIG, ConfigError, load_config

    name = "edge-msl run"
    path: Path | None = Path(args.config) if args.config else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file()
                                                                 else None)
    try:
        overrides = overrides_from_args(args)
        config = load_config(path, overrides)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(config.logging.level, getattr(args, "verbose", 0))

    from ..daemon import build_engine, run_daemon

    if args.check:
        try:
            engine = build_engine(config)
            from ..sinks import make_sinks

            # built as `run` builds them (TLS files loaded, paho present), not started: no connection is made
            make_sinks(config.stdout, config.mqtt, array_name=config.array.name)
        except ConfigError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return EX_CONFIG
        out = config.to_dict()
        info = engine.model.info
        out["model"] = {"path": str(info.path), "sha256": info.sha256, "sample_rate_hz": info.sample_rate_hz,
                        "window_samples": info.window_samples, "array": info.array.name,
                        "threshold": info.threshold, "decode": engine.pipeline.settings.to_dict()
                        if engine.pipeline.settings else None, "runtime": engine.model.runtime}
        out["source"] = config.source
        print(json.dumps(out, indent=2))
        return 0

    first = [config]

    def loader():
        # the config validated above is used for the start; SIGHUP reads the file again
        return first.pop() if first else load_config(path, overrides)

    return run_daemon(loader)
