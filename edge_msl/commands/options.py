"""The option table shared by ``edge-msl run`` and ``edge-msl locate``: each knob once, named by its config key.

``run`` turns the options into config overrides (``--set KEY=VALUE``); ``locate`` reads them with the config's
defaults. Only argparse: it must not load a model or a configuration.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One command-line knob: a shortcut for ``--set key=VALUE``."""

    flag: str
    """The option, e.g. ``--hop-s``."""
    key: str
    """The config key it sets, e.g. ``hop_s`` or ``stdout.format``."""
    type: Any
    """Type of its value; None for a flag, which sets ``value``."""
    help: str
    """One line for ``--help``."""
    value: Any = None
    """What a flag sets the key to."""

    @property
    def dest(self) -> str:
        """Attribute name in the parsed arguments."""
        return self.flag.lstrip("-").replace("-", "_")


SHARED: tuple[Option, ...] = (
    Option("--array", "array", str, "built-in array name (edge-msl arrays lists them)"),
    Option("--model", "model", str, "int8 .tflite with its .json next to it (default: the packaged model for the "
                                    "array)"),
    Option("--hop-s", "hop_s", float, "seconds between analysed windows"),
    Option("--threshold", "threshold", float, "region probability at which a new talker is born (default: the "
                                              "model's)"),
    Option("--decode", "decode", str, "a temporal decode setting over the model's, e.g. keep_threshold=0.3 or "
                                      "miss_windows=0 (repeatable; keys in docs/decode.md)"),
    Option("--threads", "num_threads", int, "TFLite interpreter threads"),
    Option("--no-track", "track", None, "raw per-window detections (id null), no tracking", value=False),
    Option("--stdout-format", "stdout.format", str, "json: edge-msl/sources-v2 lines; odas: ODAS sst frames (id, "
           "tag, x/y/z, activity), odas-ssl: ODAS ssl frames (x/y/z, E), both in ODAS's own multi-line layout"),
)
"""The knobs ``run`` and ``locate`` share."""

ODAS_TARGETS: tuple[Option, ...] = (
    Option("--odas-sst", "odas.sst", str, "ODAS sst frames to socket:HOST:PORT (e.g. odas_web's "
           "socket:127.0.0.1:9000) or file:PATH"),
    Option("--odas-ssl", "odas.ssl", str, "ODAS ssl frames likewise (odas_web: socket:127.0.0.1:9001)"),
)
"""Where ODAS frames go ([odas] sst/ssl), for ``locate`` and ``run`` alike."""


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...] | list[Option],
                defaults: dict[str, Any] | None = None, aliases: dict[str, tuple[str, ...]] | None = None,
                helps: dict[str, str] | None = None) -> None:
    """Register ``options``; ``defaults`` (by config key) become argparse defaults and are named in the help
    (without them an unset option is None: the configuration decides); ``aliases`` add option strings and
    ``helps`` replaces a help line where one command does more with the knob."""
    defaults, aliases, helps = defaults or {}, aliases or {}, helps or {}
    for o in options:
        names = (*aliases.get(o.key, ()), o.flag)
        text = helps.get(o.key, o.help)
        if o.type is None:
            parser.add_argument(*names, dest=o.dest, action="store_true", help=text)
        elif o.key == "decode":
            parser.add_argument(*names, dest=o.dest, action="append", default=[], metavar="KEY=VALUE", help=text)
        else:
            default = defaults.get(o.key)
            shown = f" (default {default})" if default is not None and "(default" not in text else ""
            parser.add_argument(*names, dest=o.dest, type=o.type, default=default, help=text + shown)


def overrides(args: argparse.Namespace, options: tuple[Option, ...] | list[Option]) -> list[tuple[str, Any]]:
    """``(config key, value)`` for each option given, in table order (``--decode k=v`` sets ``decode.k``)."""
    from ..config import ConfigError, parse_assignment

    out: list[tuple[str, Any]] = []
    for o in options:
        given = getattr(args, o.dest, None)
        if o.type is None:
            if given:
                out.append((o.key, o.value))
        elif o.key == "decode":
            for item in given or []:
                if "=" not in item:
                    raise ConfigError(f"{o.flag} {item!r} is not KEY=VALUE; e.g. {o.flag} keep_threshold=0.3")
                key, value = parse_assignment(item)
                out.append((f"decode.{key}", value))
        elif given is not None:
            out.append((o.key, given))
    return out


__all__ = ["Option", "SHARED", "ODAS_TARGETS", "add_options", "overrides"]
