"""systemd/edge-msl.service, systemd/install.sh and `edge-msl setup-service`: the installed unit passes
`systemd-analyze verify` with no warnings, `systemd-analyze security --offline=true` rates it <= 2.5, and the runtime works
under the unit's MemoryDenyWriteExecute=yes (the kernel's PR_SET_MDWE, the same rule)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_msl.config import load_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edge-msl.service"
INSTALL = REPO / "systemd" / "install.sh"
EDGE_MSL = Path(sys.executable).parent / "edge-msl"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")


def unit_settings(text):
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The unit and config as install.sh puts them, with ExecStart at this environment's edge-msl."""
    root = tmp_path_factory.mktemp("root")
    out = subprocess.run(["sh", str(INSTALL), "--root", str(root), "--bin", str(EDGE_MSL)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return root


def test_install_puts_unit_and_default_config_in_place_and_keeps_an_edited_config(installed):
    unit = installed / "etc/systemd/system/edge-msl.service"
    conf = installed / "etc/edge-msl/config.toml"
    assert unit_settings(unit.read_text())["ExecStart"] == [f"{EDGE_MSL} run --config /etc/edge-msl/config.toml"]
    assert conf.read_text() == (REPO / "systemd/config.toml").read_text()
    conf.write_text(conf.read_text() + "\n# edited by the user\n")
    out = subprocess.run(["sh", str(INSTALL), "--root", str(installed), "--bin", str(EDGE_MSL)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "kept your" in out.stdout
    assert conf.read_text().endswith("# edited by the user\n")
    assert (installed / "etc/edge-msl/config.toml.dist").read_text() == (REPO / "systemd/config.toml").read_text()


def test_install_refuses_a_missing_binary(tmp_path):
    out = subprocess.run(["sh", str(INSTALL), "--root", str(tmp_path), "--bin", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "--bin" in out.stderr and not (tmp_path / "etc/systemd").exists()


def test_unit_has_the_promised_service_settings():
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["78"]
    assert s["WatchdogSec"] and s["DynamicUser"] == ["yes"] and s["SupplementaryGroups"] == ["audio"]
    assert s["DeviceAllow"] == ["char-alsa rw"] and s["DevicePolicy"] == ["closed"]
    assert s["ProtectSystem"] == ["strict"] and s["StateDirectory"] == ["edge-msl"]
    assert s["ConfigurationDirectory"] == ["edge-msl"] and s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["StartLimitIntervalSec"] == ["0"]  # restarts never give up
    # the daemon pings at half the watchdog period; TimeoutStartSec covers a slow Pi Zero start
    assert re.fullmatch(r"\d+min", s["TimeoutStartSec"][0]) and int(s["TimeoutStartSec"][0][:-3]) >= 2


@needs_analyze
def test_systemd_analyze_verify_has_no_warnings(installed):
    unit = installed / "etc/systemd/system/edge-msl.service"
    out = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "" and out.stdout.strip() == ""


@needs_analyze
def test_systemd_analyze_security_exposure_is_ok(installed):
    unit = installed / "etc/systemd/system/edge-msl.service"
    out = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                         text=True, timeout=120)
    m = re.search(r"Overall exposure level for edge-msl\.service: ([0-9.]+) (\w+)", out.stdout)
    assert m, out.stdout[-2000:] + out.stderr
    assert float(m.group(1)) <= 2.5, out.stdout


def test_runtime_works_without_writable_executable_memory(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0))"])
    if probe.returncode != 0:
        pytest.skip("the kernel has no PR_SET_MDWE (Linux >= 6.3)")
    example = REPO / "edge_msl/examples/uca8-r10-3talkers.wav"
    code = ("import ctypes, mmap, sys\n"
            "assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0\n"  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            "try:\n"
            "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "    sys.exit('W+X memory is still allowed')\n"
            "except OSError:\n"
            "    pass\n"
            "import paho.mqtt.client, alsaaudio\n"
            "from edge_msl.cli import main\n"
            f"sys.exit(main(['locate', {str(example)!r}]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) > 10  # the int8 model ran on every window


def setup_service(*args, user=None):
    cmd = [str(EDGE_MSL), "setup-service", *map(str, args)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_setup_service_writes_the_board_config_and_a_unit_that_verifies(tmp_path):
    out = setup_service("--array", "matrix-voice", "--mqtt-host", "broker.lan", "--prefix", tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    unit = tmp_path / "etc/systemd/system/edge-msl.service"
    conf = tmp_path / "etc/edge-msl/config.toml"
    assert result["unit"] == str(unit) and result["config"] == str(conf) and not result["kept_config"]
    assert unit_settings(unit.read_text())["ExecStart"] == [f"{EDGE_MSL} run --config /etc/edge-msl/config.toml"]
    cfg = load_config(conf)
    assert cfg.array.name == "matrix-voice" and cfg.device.name == "hw:CARD=MATRIXIOSOUND,DEV=0"
    assert cfg.mqtt.host == "broker.lan" and cfg.stdout.enabled is False
    # everything but the three filled-in lines is the template, comments included
    template = (REPO / "systemd/config.toml").read_text().splitlines()
    changed = [a for a, b in zip(template, conf.read_text().splitlines()) if a != b]
    assert len(changed) == 3 and len(template) == len(conf.read_text().splitlines())
    if ANALYZE:
        v = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=120)
        assert v.returncode == 0 and v.stderr.strip() == "", v.stderr


def test_setup_service_keeps_an_edited_config_unless_forced(tmp_path):
    assert setup_service("--array", "respeaker-6mic", "--prefix", tmp_path).returncode == 0
    conf = tmp_path / "etc/edge-msl/config.toml"
    conf.write_text(conf.read_text() + "\n# edited\n")
    out = setup_service("--array", "respeaker-4mic", "--prefix", tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["kept_config"] and "kept your" in out.stderr
    assert conf.read_text().endswith("# edited\n")
    assert load_config(conf.with_name("config.toml.dist")).array.name == "respeaker-4mic"
    out = setup_service("--array", "respeaker-4mic", "--prefix", tmp_path, "--force")
    assert out.returncode == 0 and load_config(conf).array.name == "respeaker-4mic"
    assert conf.with_name("config.toml.bak").read_text().endswith("# edited\n")


def test_setup_service_dry_run_writes_nothing_and_says_what_it_would(tmp_path):
    out = setup_service("--array", "respeaker-usb-v2", "--prefix", tmp_path, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["device"] == "plughw:CARD=ArrayUAC10,DEV=0" and "would write" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_setup_service_refuses_clearly(tmp_path):
    out = setup_service("--array", "no-such-board", "--dry-run")
    assert out.returncode == 2 and out.stdout == "" and "respeaker-6mic" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = setup_service("--array", "uca8-r10", "--bin", tmp_path / "nope", "--dry-run")
    assert out.returncode == 2 and "--bin" in out.stderr
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("setpriv is not installed: cannot drop root to test the refusal")
        out = setup_service("--array", "uca8-r10", user=65534)
    else:
        out = setup_service("--array", "uca8-r10")
    assert out.returncode == 77 and out.stdout == "", out.stderr
    assert "needs root" in out.stderr and "sudo" in out.stderr and "--dry-run" in out.stderr
