"""The daemon's configuration: one TOML file (plus command-line overrides) validated into frozen dataclasses.

A wrong key or value is a :class:`ConfigError` naming the key, the value and what is allowed; the
daemon exits with :data:`EX_CONFIG` (78) on it. This module reads files only; it opens no device or socket.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .arrays import DEFAULT_ARRAY, MicArray, from_dict, get_array
from .channel_check import CHECK_MODES
from .settings_check import (SettingError, Settings, boolean, checked_fields, choice, integer, invalid, number, optional,
                             setting, text)
from .temporal import DecodeSettings

EX_CONFIG = 78
"""Exit code for a configuration error (sysexits.h EX_CONFIG); the unit's RestartPreventExitStatus."""

DEFAULT_CONFIG_PATH = Path("/etc/edge-msl/config.toml")
"""Where the systemd unit and ``edge-msl run`` without ``--config`` look for the configuration."""

SAMPLE_FORMATS = ("S16_LE", "S32_LE")
"""ALSA sample formats the capture reads (S32_LE also carries 24-bit boards, left-justified)."""

LOG_LEVELS = ("debug", "info", "warning", "error")
"""Values of ``[logging] level``."""

_NODE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOPIC_RE = re.compile(r"^[^#+\x00]{1,128}$")


ConfigError = SettingError
"""The configuration is invalid (the one settings error, :class:`edge_msl.settings_check.SettingError`); ``str()``
is one line naming the key, the value and what is allowed."""

HOP_S = number(0.001, 60.0, noun="seconds")
"""hop_s, for the config and the pipeline alike."""
THRESHOLD = optional(number(0.0, 1.0, lo_open=True, noun="a probability"))
"""threshold (none: the model's), for the config and the pipeline alike."""


# ----------------------------------------------------------------------------------------------
# the settings


@dataclass(frozen=True)
class DeviceSettings(Settings):
    """The ALSA capture device."""

    KEY = "[device] {}"
    TABLE = "[device]"

    name: str = setting("default", text(256, what="an ALSA PCM name such as 'hw:CARD=seeed8micvoicec,DEV=0', "
                                                  "'plughw:CARD=ArrayUAC10,DEV=0' or 'default'", empty=False))
    """ALSA PCM name; name the card (``hw:CARD=<id>,DEV=0``), not its index, which changes between boots."""
    rate_hz: int | None = setting(None, optional(integer(8000, 192000)))
    """Capture rate; none = the array's native rate (48 kHz for MATRIX and UMA-8). Resampled to the model's."""
    format: str = setting("S16_LE", choice(*SAMPLE_FORMATS))
    """Sample format the device is opened with."""
    period_frames: int = setting(800, integer(32, 65536))
    """Frames per ALSA read (800 = 50 ms at 16 kHz)."""
    periods: int = setting(4, integer(2, 64))
    """ALSA buffer size in periods; more survive longer stalls before an overrun."""
    pace_realtime: bool = setting(False, boolean)
    """Sleep so reads never run ahead of the clock: for the ALSA ``file`` plugin and tests, never for hardware."""
    retry_min_delay_s: float = setting(1.0, number(0.0, 3600.0, lo_open=True))
    """First delay before reopening a missing or busy device; doubles on each failure."""
    retry_max_delay_s: float = setting(30.0, number(0.0, 3600.0, lo_open=True))
    """Longest delay between reopening attempts (the daemon retries forever)."""
    channel_check: str = setting("warn", choice(*CHECK_MODES))
    """Check the channel order on the first 2 s after each open: "warn" logs a problem and its fix, "remap"
    also follows a clear rotation (the seeed-voicecard driver's), "off" skips it."""

    def check_together(self) -> None:
        """retry_min_delay_s at most retry_max_delay_s."""
        if self.retry_min_delay_s > self.retry_max_delay_s:
            raise invalid("[device] retry_min_delay_s", self.retry_min_delay_s,
                          f"at most retry_max_delay_s = {self.retry_max_delay_s}")

    def capture_key(self, rate_hz: int, n_channels: int) -> tuple:
        """What must stay equal for a reload to keep the open audio stream."""
        return (self.name, rate_hz, n_channels, self.format, self.period_frames, self.periods, self.pace_realtime)


@dataclass(frozen=True)
class StdoutSettings(Settings):
    """JSON lines on standard output."""

    KEY = "[stdout] {}"
    TABLE = "[stdout]"

    enabled: bool = setting(True, boolean)
    """Write one JSON line per analysed window on stdout (the journal, under systemd)."""
    format: str = setting("json", choice("json", "odas", "odas-ssl"))
    """json: edge-msl/sources-v2 messages; odas: ODAS sst frames, odas-ssl: ODAS ssl frames (in ODAS's layout)."""


def _default_node_id() -> str:
    node = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64].strip("-")
    return node or "edge-msl"


@dataclass(frozen=True)
class MqttSettings(Settings):
    """Publishing to an MQTT broker (paho-mqtt 2); off while ``host`` is empty."""

    KEY = "[mqtt] {}"
    TABLE = "[mqtt]"

    host: str = setting("", text(253, re.compile(r"^[A-Za-z0-9_.:\[\]-]+$"), "a host name or IP address "
                                                                            "(empty: MQTT off)"))
    """Broker host name or address; empty turns MQTT off."""
    port: int | None = setting(None, optional(integer(1, 65535)))
    """Broker port; none = 1883, or 8883 with TLS."""
    node_id: str = setting("", text(64, _NODE_ID_RE, "letters, digits, '-' and '_' (up to 64; empty: the host name)"))
    """Names this device in topics (``edge-msl/<node_id>/...``); empty = the host name."""
    topic_prefix: str = setting("edge-msl", text(128, _TOPIC_RE, "a topic without '+', '#' (up to 128 characters)",
                                                empty=False))
    """First level of every topic."""
    client_id: str = setting("", text(128, what="a string (up to 128 characters; empty: edge-msl-<node_id>)"))
    """MQTT client id; empty = ``edge-msl-<node_id>``."""
    qos: int = setting(1, integer(0, 2))
    """QoS of the sources messages; 1 or 2 needed for the no-loss guarantee across broker outages."""
    keepalive_s: int = setting(30, integer(5, 3600))
    """MQTT keepalive; a dead broker is noticed after about 1.5 times this."""
    tls: bool = setting(False, boolean)
    """Connect with TLS (system CA store unless ca_file is given)."""
    ca_file: str = setting("", text(what="a file path (empty: system CAs)"))
    """CA certificate bundle (PEM) for TLS."""
    cert_file: str = setting("", text(what="a file path (empty: no client certificate)"))
    """Client certificate (PEM) for TLS client authentication."""
    key_file: str = setting("", text(what="a file path (empty: no client certificate)"))
    """Private key (PEM) of cert_file."""
    username: str = setting("", text(256, what="a string (empty: no authentication)"))
    """User name for the broker; empty = anonymous."""
    password_file: str = setting("", text(what="a file path whose first line is the password"))
    """File whose first line is the password (e.g. a systemd credential); the password is never logged."""
    password_env: str = setting("", text(128, re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"),
                                        "an environment variable name"))
    """Environment variable holding the password (used when password_file is empty)."""
    discovery: bool = setting(False, boolean)
    """Publish Home Assistant MQTT discovery (retained), again whenever Home Assistant comes online."""
    discovery_prefix: str = setting("homeassistant", text(128, _TOPIC_RE, "a topic without '+', '#'", empty=False))
    """Home Assistant's discovery prefix."""
    queue_max_messages: int = setting(6000, integer(1, 10_000_000))
    """Messages kept while the broker is away (newest kept; 6000 = 10 min at a 0.1 s hop)."""
    reconnect_min_delay_s: int = setting(1, integer(1, 3600))
    """First reconnect delay; doubles up to reconnect_max_delay_s."""
    reconnect_max_delay_s: int = setting(60, integer(1, 3600))
    """Longest delay between reconnect attempts (retries forever)."""
    state_max_rate_hz: float = setting(2.0, number(0.0, 50.0, lo_open=True))
    """Most updates a second of the Home Assistant state topic (``<prefix>/<node>/state``), sent only on a change."""
    state_min_move_deg: float = setting(5.0, number(0.0, 180.0))
    """How far a talker's azimuth must move before the state topic reports it again (0: any change)."""
    password: str = field(default="", repr=False, compare=False)
    """The resolved password (from password_file or password_env); not a config key, never printed."""

    def check_together(self) -> None:
        """Reconnect delays in order, TLS client files in pairs, TLS on where its files are set."""
        if self.reconnect_min_delay_s > self.reconnect_max_delay_s:
            raise invalid("[mqtt] reconnect_min_delay_s", self.reconnect_min_delay_s,
                          f"at most reconnect_max_delay_s = {self.reconnect_max_delay_s}")
        if bool(self.cert_file) != bool(self.key_file):
            raise SettingError(f"[mqtt] cert_file = {self.cert_file!r} and key_file = {self.key_file!r} are invalid; "
                               f"allowed: both set (TLS client certificate) or both empty", key="[mqtt] cert_file",
                               value=self.cert_file, allowed="both set or both empty")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise SettingError("[mqtt] tls = false is invalid with ca_file/cert_file set; allowed: tls = true",
                               key="[mqtt] tls", value=False, allowed="tls = true")

    @property
    def enabled(self) -> bool:
        """True when a broker host is configured."""
        return bool(self.host)

    @property
    def node(self) -> str:
        """node_id, or the host name when it is empty."""
        return self.node_id or _default_node_id()

    @property
    def effective_port(self) -> int:
        """port, or the MQTT default for the transport."""
        return self.port if self.port is not None else (8883 if self.tls else 1883)

    def topic(self, leaf: str) -> str:
        """``<topic_prefix>/<node>/<leaf>``."""
        return f"{self.topic_prefix}/{self.node}/{leaf}"


def _target(key: str, v: Any) -> str:
    allowed = "'' (off), 'socket:HOST:PORT' (connects to a listener there, as ODAS does) or 'file:PATH'"
    if not isinstance(v, str) or len(v) > 1024 or "\x00" in v:
        raise invalid(key, v, allowed)
    m = re.match(r"^socket:([A-Za-z0-9_.\[\]:-]+):([0-9]{1,5})$", v)
    if v and not (m and 1 <= int(m.group(2)) <= 65535) and not (v.startswith("file:") and len(v) > 5):
        raise invalid(key, v, allowed)
    return v


@dataclass(frozen=True)
class OdasSettings(Settings):
    """ODAS-compatible frames (sst: tracked sources, ssl: potential sources) in ODAS's own layout, to a socket
    or a file as ODAS's sinks write them (odas_web listens on 9000 for sst and 9001 for ssl)."""

    KEY = "[odas] {}"
    TABLE = "[odas]"

    sst: str = setting("", _target)
    """Where sst frames go: '' (off), 'socket:HOST:PORT' (e.g. odas_web's 'socket:127.0.0.1:9000') or 'file:PATH'."""
    ssl: str = setting("", _target)
    """Where ssl frames go, likewise (odas_web: 'socket:127.0.0.1:9001')."""
    reconnect_delay_s: float = setting(1.0, number(0.0, 3600.0, lo_open=True))
    """Delay between attempts to connect a socket target (the daemon retries forever)."""

    @property
    def enabled(self) -> bool:
        """True when a target is set."""
        return bool(self.sst or self.ssl)


@dataclass(frozen=True)
class LiveSettings(Settings):
    """The live view: a web page with a radar of the talkers and a time strip, served while the daemon runs."""

    KEY = "[live] {}"
    TABLE = "[live]"

    enabled: bool = setting(False, boolean)
    """Serve the live view (off by default)."""
    host: str = setting("127.0.0.1", text(253, re.compile(r"^[A-Za-z0-9_.:-]+$"), "an address to listen on "
                                         "('127.0.0.1': this machine only, '0.0.0.0': every interface)", empty=False))
    """Address the page is served on; 127.0.0.1 keeps it on this machine."""
    port: int = setting(8077, integer(0, 65535))
    """TCP port of the page (0: any free port, logged)."""
    history_s: float = setting(30.0, number(1.0, 600.0))
    """Seconds of history a newly opened page starts with (the time strip's width)."""


@dataclass(frozen=True)
class LoggingSettings(Settings):
    """Log lines (always on stderr, so stdout stays data)."""

    KEY = "[logging] {}"
    TABLE = "[logging]"

    level: str = setting("info", choice(*LOG_LEVELS))
    """Lowest level logged."""
    status_interval_s: float = setting(60.0, number(0.0, 86400.0))
    """Seconds between one-line summaries (windows, sources, overruns, MQTT queue) in the log; 0 = never."""


@dataclass(frozen=True)
class Config:
    """Everything ``edge-msl run`` needs; see ``systemd/config.toml`` for a commented example."""

    device: DeviceSettings = DeviceSettings()
    """[device]: the ALSA capture device."""
    array: MicArray = field(default_factory=lambda: get_array(DEFAULT_ARRAY))
    """array: a built-in array name, or an [array] table describing a custom one."""
    model: Path | None = None
    """model: .tflite path (its .json next to it); none = the packaged model for the array."""
    hop_s: float = setting(0.1, HOP_S)
    """hop_s: seconds between analysed windows."""
    threshold: float | None = setting(None, THRESHOLD)
    """threshold: region probability at which a new talker is born; none = the model's."""
    track: bool = setting(True, boolean)
    """track: stable source ids over time (false: raw per-window detections with id null)."""
    num_threads: int = setting(1, integer(1, 64))
    """num_threads: TFLite interpreter threads."""
    decode: Mapping[str, Any] = field(default_factory=dict)
    """[decode]: temporal decode settings over the model's (keys of edge_msl.temporal.DecodeSettings)."""
    stdout: StdoutSettings = StdoutSettings()
    """[stdout]: JSON lines on standard output."""
    mqtt: MqttSettings = MqttSettings()
    """[mqtt]: publishing to a broker."""
    odas: OdasSettings = OdasSettings()
    """[odas]: ODAS-compatible frames to a socket or a file."""
    live: LiveSettings = LiveSettings()
    """[live]: the live view web page."""
    separate: Mapping[str, Any] = field(default_factory=dict)
    """[separate]: per-talker audio, a WAV per track id in ``dir`` (off while empty); other keys are
    edge_msl.separate.SeparateSettings."""
    logging: LoggingSettings = LoggingSettings()
    """[logging]: log level and periodic summaries."""
    source: str = "defaults"
    """Where this configuration came from (file path and/or command line)."""

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration as plain data (secrets left out), e.g. for ``--print-config``."""
        out: dict[str, Any] = {
            "model": str(self.model) if self.model else None,
            "hop_s": self.hop_s, "threshold": self.threshold, "track": self.track, "num_threads": self.num_threads,
            "array": self.array.to_dict(),
            "device": self.device.to_dict(),
            "decode": dict(self.decode),
            "stdout": self.stdout.to_dict(), "mqtt": self.mqtt.to_dict(), "odas": self.odas.to_dict(),
            "live": self.live.to_dict(),
            "separate": dict(self.separate),
            "logging": self.logging.to_dict(),
        }
        return out


_TOP_KEYS = ("device", "array", "model", "hop_s", "threshold", "track", "num_threads", "decode", "stdout",
             "mqtt", "odas", "live", "separate", "logging")
_RETIRED = {"pool_s": "pooling is gone since edge-msl 0.2 (the temporal decode integrates evidence per talker); "
                      "remove pool_s",
            "tracking": "[tracking] became [decode] in edge-msl 0.2 (keys in docs/decode.md: birth_threshold, "
                        "keep_threshold, miss_windows, resume_s, ...); rename the table and its keys"}
_MODEL_PATH = text(what="a path to a .tflite file (empty: the packaged model for the array)")


def _resolve_password(m: MqttSettings, env: Mapping[str, str]) -> MqttSettings:
    if m.password_file:
        try:
            text = read_bounded(m.password_file, 64 * 1024).decode("utf-8")
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else (
                "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc).replace(m.password_file, "it"))
            raise ConfigError(f"[mqtt] password_file = {m.password_file!r} cannot be read ({why}); "
                              f"allowed: a readable file whose first line is the password") from None
        lines = text.splitlines()
        return dataclasses.replace(m, password=lines[0] if lines else "")
    if m.password_env:
        if m.password_env not in env:
            raise ConfigError(f"[mqtt] password_env = {m.password_env!r} is invalid; allowed: the name of a set "
                              f"environment variable (it is not set; e.g. Environment= or EnvironmentFile= in a "
                              f"systemd drop-in)")
        return dataclasses.replace(m, password=env[m.password_env])
    return m


def parse_config(data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "command line",
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config` (``base_dir`` anchors a relative model path)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"the configuration must be a TOML table, got {type(data).__name__}")
    for key, fix in _RETIRED.items():
        if key in data:
            raise ConfigError(f"{key}: {fix}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    top = {f.name: f.metadata["check"](f.name, data[f.name]) for f in checked_fields(Config) if f.name in data}
    model_text = _MODEL_PATH("model", data["model"]) if "model" in data else ""

    raw_array = data.get("array", DEFAULT_ARRAY)
    if isinstance(raw_array, str):
        array = get_array(raw_array)
    elif isinstance(raw_array, Mapping):
        array = from_dict(raw_array)
    else:
        raise invalid("array", raw_array, "a built-in array name or an [array] table")

    mqtt_table = data.get("mqtt", {})
    if isinstance(mqtt_table, Mapping) and "password" in mqtt_table:
        raise ConfigError("[mqtt] password is not read from the config file (it would be world-readable); "
                          "allowed: password_file = \"/path\" or password_env = \"VARIABLE\"")
    mqtt = MqttSettings.from_dict(mqtt_table)
    for key in ("ca_file", "cert_file", "key_file"):
        # checked here, not first when connecting, so `run --check` (and install.sh) refuses what `run` would
        value = getattr(mqtt, key)
        if value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            why = "does not exist" if not os.path.exists(value) else (
                "is not a regular file" if not os.path.isfile(value) else "is not readable by this user")
            raise ConfigError(f"[mqtt] {key} = {value!r} is invalid ({why}); allowed: a readable PEM file")
    mqtt = _resolve_password(mqtt, os.environ if env is None else env)
    if mqtt.password and not mqtt.username:
        raise ConfigError("[mqtt] username = '' is invalid with a password set; allowed: the broker user name")

    device = DeviceSettings.from_dict(data.get("device", {}))
    array, device = _board_defaults(data, array, device)

    decode = data.get("decode", {})
    DecodeSettings.from_dict(decode)

    separate = _separate_table(data.get("separate", {}), base_dir)

    model = _beside(model_text, base_dir) if model_text else None
    return Config(
        device=device, array=array, model=model, decode=dict(decode),
        stdout=StdoutSettings.from_dict(data.get("stdout", {})),
        mqtt=mqtt,
        odas=OdasSettings.from_dict(data.get("odas", {})),
        live=LiveSettings.from_dict(data.get("live", {})), separate=separate,
        logging=LoggingSettings.from_dict(data.get("logging", {})),
        source=source, **top,
    )


def _beside(value: str, base_dir: Path | None) -> Path:
    """A path the config file names: ``~`` expanded, and a relative one taken relative to the file's directory."""
    path = Path(value).expanduser()
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def _separate_table(table: Any, base_dir: Path | None) -> dict[str, Any]:
    """[separate]: ``dir`` (a directory for the per-track WAVs, '' = off; relative to the config file) and the
    keys of :class:`edge_msl.separate.SeparateSettings`."""
    from .separate import SeparateSettings

    @dataclass(frozen=True)
    class SeparateTable(SeparateSettings):
        dir: str = setting("", text(what="a directory for per-track WAV files ('' = off)"))
        """A WAV per track id goes there ('' = off)."""

    directory = SeparateTable.from_dict(table).dir
    table = {k: v for k, v in table.items() if k != "dir"}
    if directory:
        directory = str(_beside(directory, base_dir))
    if table.get("learned_weights"):
        from .separate_nn import PostfilterNet

        path = _beside(table["learned_weights"], base_dir)
        PostfilterNet.load_setting(path, table["learned_weights"], " (relative to the config file)")
        table = {**table, "learned_weights": str(path)}
    return {"dir": directory, **table} if directory or table else {}


def _board_defaults(data: Mapping[str, Any], array: MicArray, device: DeviceSettings) -> tuple[MicArray, DeviceSettings]:
    """The board the device's card id names when [array] is not set (refused when it names two, or another
    built-in board than [array]); the array's native rate when [device] rate_hz is not set."""
    from .arrays import boards_for_device, list_arrays

    boards = boards_for_device(device.name)
    if boards and "array" not in data:
        if len(boards) > 1:
            raise ConfigError(f"[device] name = {device.name!r} is the card of {' or '.join(boards)} and array is not "
                              f"set; allowed: " + " or ".join(f'array = "{b}"' for b in boards))
        array = get_array(boards[0])
    elif boards and array.name in list_arrays() and array.name not in boards:
        raise ConfigError(f"array = {array.name!r} is invalid with [device] name = {device.name!r}, the card of "
                          f"{' or '.join(boards)}; allowed: " + " or ".join(f'array = "{b}"' for b in boards))
    if device.rate_hz is None:
        device = dataclasses.replace(device, rate_hz=array.native_rate_hz)
    return array, device


MAX_CONFIG_BYTES = 1 << 20
"""Largest configuration file read (the commented example is 6 kB)."""


def read_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else (a FIFO, /dev/zero, a directory, a
    larger file) is refused without blocking or reading more. Raises OSError or ConfigError."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path} is not a regular file; allowed: a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"{path} is larger than {max_bytes} bytes; allowed: at most {max_bytes} bytes")
    return data


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing, malformed, oversized or non-regular file is a :class:`ConfigError`."""
    import tomllib  # here, not at the top: commands without a config file do not load the parser

    path = Path(path)
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES)
        return tomllib.loads(data.decode("utf-8"))
    except ConfigError as exc:
        raise ConfigError(f"config file {exc}") from None
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; allowed: an existing TOML file "
                          f"(edge-msl/systemd/config.toml is a commented example)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests arrays or tables too deeply; allowed: the tables of "
                          "systemd/config.toml") from None
    except ValueError as exc:  # tomllib's 4,300-digit limit on integers, and the like
        raise ConfigError(f"config file {path} holds a value that cannot be read ({_one_line(exc)})") from None


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.key`` (or a top-level key) in a parsed document, creating the table if needed."""
    parts = dotted.split(".")
    if not all(parts) or len(parts) > 2:
        raise ConfigError(f"--set {dotted}: the key must be 'key' or 'section.key' (e.g. mqtt.qos)")
    table = data
    for p in parts[:-1]:
        sub = table.get(p)
        if sub is None or isinstance(sub, str) and p == "array":
            sub = table[p] = {} if sub is None else {"name": sub}
        if not isinstance(sub, dict):
            raise ConfigError(f"--set {dotted}: {p} is not a table in this configuration")
        table = sub
    table[parts[-1]] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--set``: the value is read as TOML (``1``, ``true``, ``"x"``), else taken as a string."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set mqtt.qos=1")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):  # taken as text; validation says what is wrong
        parsed = value.strip()
    return key.strip(), parsed


def load_config(path: str | Path | None = None, overrides: list[tuple[str, Any]] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (none: defaults only), apply ``(dotted key, value)`` overrides in order, validate."""
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    for key, value in overrides or []:
        set_key(data, key, value)
    where = str(path) if path is not None else ""
    if overrides:
        where = f"{where} + command line" if where else "command line"
    base_dir = Path(path).resolve().parent if path is not None else None
    try:
        depth = _depth(data)
        if depth > MAX_DEPTH:
            raise ConfigError(f"values nest {depth} levels deep; allowed: at most {MAX_DEPTH} (tables of "
                              "systemd/config.toml)")
        return parse_config(data, base_dir=base_dir, source=where or "defaults", env=env)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None
    except (TypeError, ValueError, KeyError, OverflowError, RecursionError, AttributeError) as exc:
        # a value of a type no check expected (the checks name key and value; this is the net under them)
        raise ConfigError(f"{where or 'config'}: invalid configuration ({type(exc).__name__}: {_one_line(exc)}); "
                          "allowed: the keys and values of systemd/config.toml") from None


MAX_DEPTH = 8
"""Deepest nesting of tables and arrays in a configuration (the deepest real one, [array] positions_m, is 3)."""


def _depth(value: Any) -> int:
    """Nesting depth of tables/arrays, without recursion (a hostile document must not exhaust the stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            break
        if isinstance(v, Mapping):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = [
    "EX_CONFIG", "DEFAULT_CONFIG_PATH", "SAMPLE_FORMATS", "LOG_LEVELS", "ConfigError", "DeviceSettings",
    "StdoutSettings", "MqttSettings", "OdasSettings", "LiveSettings", "LoggingSettings", "Config", "parse_config", "read_toml", "load_config",
    "set_key", "parse_assignment",
]
