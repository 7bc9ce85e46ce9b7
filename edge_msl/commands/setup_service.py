"""Install the systemd service for a board: /etc/edge-msl/config.toml and the edge-msl.service unit.

  sudo /opt/edge-msl/bin/edge-msl setup-service --array respeaker-6mic --mqtt-host localhost
  edge-msl setup-service --array respeaker-6mic --dry-run      (say what it would write; writes nothing)
  edge-msl setup-service --array matrix-voice --prefix /tmp/img (write under /tmp/img/etc instead; no root)

Writes the config from the packaged template with the board filled in (array, its ALSA device by card id
where the board has a fixed one, MQTT host) after checking it as `edge-msl run --check` does, keeps a
config that is already there (the new one goes next to it as config.toml.dist; --force replaces it and
keeps the old as config.toml.bak), and installs the unit with ExecStart at this edge-msl. It does not
call systemctl: it prints the commands. stdout: one JSON object (what was or would be written).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

UNIT_NAME = "edge-msl.service"
TEMPLATE_UNIT_BIN = "/usr/local/bin/edge-msl"
# boards whose driver gives the capture card a fixed id (README's board table); others keep "default"
BOARD_DEVICES = {
    "respeaker-6mic": "hw:CARD=seeed8micvoicec,DEV=0",
    "respeaker-usb-v2": "plughw:CARD=ArrayUAC10,DEV=0",
    "matrix-voice": "hw:CARD=MATRIXIOSOUND,DEV=0",
    "matrix-creator": "hw:CARD=MATRIXIOSOUND,DEV=0",
}
EX_NOPERM = 77


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl setup-service``."""
    parser.add_argument("--array", required=True, help="built-in array name (edge-msl arrays lists them)")
    parser.add_argument("--device", default=None,
                        help="ALSA capture PCM by card id (default: the board's, else \"default\"; see edge-msl devices)")
    parser.add_argument("--mqtt-host", default=None, help="MQTT broker host (default: none, MQTT off)")
    parser.add_argument("--bin", default=None,
                        help="the edge-msl executable for ExecStart (default: the one running this command)")
    parser.add_argument("--prefix", default="/", help="install under this directory instead of / (images, tests)")
    parser.add_argument("--dry-run", action="store_true", help="check and print what would be written; write nothing")
    parser.add_argument("--force", action="store_true", help="replace an existing config.toml (kept as .bak)")


def _fail(message: str, code: int) -> int:
    print(f"edge-msl setup-service: {message}", file=sys.stderr)
    return code


def packaged_file(name: str) -> str:
    """Text of a file of ``systemd/``, from the installed package (wheel) or the source checkout."""
    try:
        return (resources.files("edge_msl") / "systemd" / name).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return (Path(__file__).resolve().parents[2] / "systemd" / name).read_text()


def render_config(template: str, array: str, device: str | None, mqtt_host: str | None) -> str:
    """The template with ``array``, ``[device] name`` and ``[mqtt] host`` set; the rest (comments included) as is."""
    out = template
    for section, key, value in ((None, "array", array), ("device", "name", device), ("mqtt", "host", mqtt_host)):
        if value is None:
            continue
        # the first `key = ...` line of the section (top level: before the first table)
        start = 0 if section is None else out.find(f"\n[{section}]\n")
        end = out.find("\n[", start + 1) if section is not None else out.find("\n[")
        end = len(out) if end < 0 else end
        pattern = re.compile(rf"^{key} = \"[^\"\n]*\"", re.M)
        m = pattern.search(out, start if start >= 0 else len(out), end)
        if start < 0 or not m:
            raise RuntimeError(f"the packaged config template has no {key} = \"...\" line"
                               f"{f' in [{section}]' if section else ''}; reinstall edge-msl")
        out = out[:m.start()] + f"{key} = {json.dumps(value)}" + out[m.end():]
    return out


def render_unit(template: str, exe: str) -> str:
    """The packaged unit with ExecStart at ``exe``."""
    line = f"ExecStart={TEMPLATE_UNIT_BIN} "
    if template.count(line) != 1:
        raise RuntimeError(f"the packaged {UNIT_NAME} has no '{line}...' line; reinstall edge-msl")
    return template.replace(line, f"ExecStart={exe} ")


def this_executable() -> str:
    """The edge-msl console script of this environment (what pip installed next to this Python)."""
    beside = Path(sys.executable).parent / "edge-msl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("edge-msl") or ""


def check_config(text: str) -> dict:
    """Validate ``text`` as `edge-msl run --check` does (keys, the model for the array, the sinks); returns
    the model's facts. Raises ConfigError."""
    from ..config import load_config
    from ..daemon import build_engine
    from ..sinks import make_sinks

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.toml"
        path.write_text(text)
        config = load_config(path)
        engine = build_engine(config)
        make_sinks(config.stdout, config.mqtt, array_name=config.array.name)
    info = engine.model.info
    return {"array": config.array.name, "device": config.device.name, "model": str(info.path),
            "mqtt_host": config.mqtt.host}


def main(args: argparse.Namespace) -> int:
    """Render, check, then write (or with --dry-run only print) the config and the unit."""
    from ..arrays import list_arrays
    from ..config import EX_CONFIG, ConfigError

    if args.array not in list_arrays():
        return _fail(f"--array {args.array!r} is not a built-in array (known: {', '.join(list_arrays())}); "
                     "a custom [array] table goes into the config by hand (docs/boards.md)", 2)
    prefix = Path(args.prefix)
    if not prefix.is_absolute():
        return _fail(f"--prefix {args.prefix}: give an absolute directory", 2)
    if not args.dry_run and prefix == Path("/") and os.geteuid() != 0:
        return _fail("writing /etc needs root: run it with sudo and the full path (sudo "
                     f"{this_executable() or 'edge-msl'} setup-service ...), or add --dry-run to see what it "
                     "would write", EX_NOPERM)
    exe = args.bin or this_executable()
    if not exe or not os.path.isabs(exe) or not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return _fail(f"no edge-msl executable at {exe or '(none on PATH)'!r}; pass --bin with its absolute path "
                     "(e.g. /opt/edge-msl/bin/edge-msl)", 2)
    if any(c.isspace() or c in "%$\\\"'" for c in exe):
        return _fail(f"--bin {exe!r}: a path with spaces, quotes, '%' or '$' would need escaping in the unit; "
                     "install edge-msl under a plain path", 2)
    device = args.device or BOARD_DEVICES.get(args.array)
    try:
        config_text = render_config(packaged_file("config.toml"), args.array, device, args.mqtt_host)
        unit_text = render_unit(packaged_file(UNIT_NAME), exe)
    except (OSError, RuntimeError) as exc:
        return _fail(str(exc), 1)
    try:
        checked = check_config(config_text)
    except ConfigError as exc:
        return _fail(f"the config for {args.array} does not pass the check: {str(exc).splitlines()[0]}", EX_CONFIG)

    unit = prefix / "etc/systemd/system" / UNIT_NAME
    conf = prefix / "etc/edge-msl/config.toml"
    conf_target = conf
    if conf.exists() and not args.force:
        conf_target = conf.with_name("config.toml.dist")
    result = {"array": args.array, "device": checked["device"], "model": checked["model"],
              "mqtt_host": checked["mqtt_host"], "exec_start": f"{exe} run --config /etc/edge-msl/config.toml",
              "unit": str(unit), "config": str(conf_target), "kept_config": conf_target != conf,
              "dry_run": bool(args.dry_run)}
    say = "would write" if args.dry_run else "wrote"
    if not args.dry_run:
        try:
            _write(unit, unit_text, 0o644)
            if conf_target == conf and conf.exists():
                shutil.copy2(conf, conf.with_name("config.toml.bak"))
            _write(conf_target, config_text, 0o644)
        except OSError as exc:
            return _fail(f"cannot write {exc.filename or prefix}: {exc.strerror or exc}; run as root or pick another "
                         "--prefix", EX_NOPERM if isinstance(exc, PermissionError) else 1)
    print(f"{say} {unit} (ExecStart={result['exec_start']})", file=sys.stderr)
    if result["kept_config"]:
        print(f"kept your {conf}; the new one for {args.array} {'would go' if args.dry_run else 'is'} in "
              f"{conf_target}", file=sys.stderr)
    else:
        print(f"{say} {conf} (array {args.array}, device {checked['device']}, "
              f"mqtt {checked['mqtt_host'] or 'off'})", file=sys.stderr)
    nxt = ["systemctl daemon-reload", "systemctl enable --now edge-msl", "journalctl -u edge-msl -f"]
    result["next"] = nxt
    if prefix == Path("/"):
        print("next: sudo " + " && sudo ".join(nxt[:2]) + f"; {nxt[2]}", file=sys.stderr)
    else:
        print(f"files staged under {prefix}; on the target: " + " && ".join(nxt[:2]), file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
