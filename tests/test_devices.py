"""edge-msl devices: cards from /proc/asound named by card id, PCMs from the ALSA configuration, and a
probe through the real ALSA API (a file-plugin PCM defined in a temporary ~/.asoundrc)."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("alsaaudio")

from daemon_helpers import alsa_env, write_asoundrc  # noqa: E402
from edge_msl.commands.devices import hardware_capture_devices  # noqa: E402


def test_proc_asound_capture_devices_are_named_by_card_id(tmp_path):
    proc = tmp_path / "asound"
    (proc / "card0").mkdir(parents=True)
    (proc / "card1").mkdir()
    (proc / "card0" / "id").write_text("vc4hdmi\n")
    (proc / "card1" / "id").write_text("seeed8micvoicec\n")
    (proc / "pcm").write_text(
        "00-00: MAI PCM i2s-hifi-0 : MAI PCM i2s-hifi-0 : playback 1\n"
        "01-00: bcm2835-i2s-ac10x-codec0 ac10x-codec0-0 : bcm2835-i2s-ac10x-codec0 ac10x-codec0-0 : "
        "playback 1 : capture 1\n")
    devs = hardware_capture_devices(proc)
    assert [d["name"] for d in devs] == ["hw:CARD=seeed8micvoicec,DEV=0"]
    assert devs[0]["card"] == "seeed8micvoicec" and devs[0]["device"] == 0
    assert hardware_capture_devices(tmp_path / "missing") == []


def test_lists_configured_pcms_and_probes_one_by_name(tmp_path):
    raw = tmp_path / "x.raw"
    raw.write_bytes(b"\0" * 64000)
    write_asoundrc(tmp_path, {"edgeprobe": raw})
    out = subprocess.run([sys.executable, "-m", "edge_msl", "devices", "--json", "--probe", "edgeprobe",
                          "--probe", "no-such-pcm"], capture_output=True, text=True, timeout=120,
                         env=alsa_env(tmp_path))
    assert out.returncode == 0, out.stderr
    devs = {d["name"]: d for d in map(json.loads, out.stdout.splitlines())}
    probed = devs["edgeprobe"]
    assert 8 in probed["channels"] and 16000 in probed["rates_hz"] and probed["formats"] == ["S16_LE", "S32_LE"]
    assert "No such file or directory" in devs["no-such-pcm"]["error"]
    table = subprocess.run([sys.executable, "-m", "edge_msl", "devices"], capture_output=True, text=True,
                           timeout=120, env=alsa_env(tmp_path))
    assert table.returncode == 0 and "edgeprobe" in table.stdout and table.stdout.startswith("name")
