"""benchmarks/odas_cpu.py's board runs without ODAS: the board's ODAS config changed only in its input and sinks,
the recording laid out as the board delivers it. The one run against a real odaslive is skipped without one."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import odas_cpu
from benchmarks.odas_cpu import (BOARD_CFGS, board_odas_config, board_recording, odas_cfg_facts, scene_mics,
                                 write_pcm_wav)
from edge_msl.arrays import get_array, list_arrays
from edge_msl.audio_io import open_audio, write_wav

ODASLIVE = Path(os.environ.get("ODASLIVE", "/tmp/odas-build/bin/odaslive"))
ODAS_CFG_DIRS = [Path(p) for p in (os.environ.get("ODAS_CONFIG_DIR", ""), "/tmp/odas-src/config/odaslive",
                                   "/tmp/odas-cfg") if p]

# Shaped like ODAS's config/odaslive/respeaker_usb_4_mic_array.cfg (trimmed): comments that hold keys and
# braces, sinks on sockets, one commented-out alternative inside an interface.
CFG = """# Configuration file for a test board { not a group }
version = "2.1";
raw:
{
    fS = 16000;
    hopSize = 128;
    nBits = 16;
    nChannels = 6;
    # Input with raw signal from microphones: interface: { type = "file"; }
    interface: {
        type = "soundcard";
        card = 1;
        device = 0;
    }
}
mapping: { map: (2, 3, 4, 5); }
general:
{
    epsilon = 1E-20;
    size: { hopSize = 128; frameSize = 256; };
    samplerate: { mu = 16000; sigma2 = 0.01; };
    speedofsound: { mu = 343.0; sigma2 = 25.0; };
    mics = (
        { mu = ( -0.032, +0.000, +0.000 ); sigma2 = ( +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000 ); direction = ( +0.000, +0.000, +1.000 ); angle = ( 80.0, 100.0 ); },
        { mu = ( +0.000, -0.032, +0.000 ); sigma2 = ( +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000 ); direction = ( +0.000, +0.000, +1.000 ); angle = ( 80.0, 100.0 ); },
        { mu = ( +0.032, +0.000, +0.000 ); sigma2 = ( +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000 ); direction = ( +0.000, +0.000, +1.000 ); angle = ( 80.0, 100.0 ); },
        { mu = ( +0.000, +0.032, +0.000 ); sigma2 = ( +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000 ); direction = ( +0.000, +0.000, +1.000 ); angle = ( 80.0, 100.0 ); }
    );
    spatialfilters = ( { direction = ( +0.000, +0.000, +1.000 ); angle = (80.0, 100.0); } );
    nThetas = 181;
    gainMin = 0.25;
};
sne: { b = 3; alphaS = 0.1; L = 150; delta = 3.0; alphaD = 0.1; }
ssl:
{
    nPots = 4; nMatches = 10; probMin = 0.5; nRefinedLevels = 1; interpRate = 4;
    scans = ( { level = 2; delta = -1; }, { level = 4; delta = -1; } );
    # Output to export potential sources
    potential: {
        # format = "undefined";
        format = "json";
        interface: {
            # type = "blackhole";
            type = "socket"; ip = "127.0.0.1"; port = 9001;
        };
    };
};
sst:
{
    mode = "kalman";
    add = "dynamic";
    active = ( { weight = 1.0; mu = 0.4; sigma2 = 0.0025 } );
    inactive = ( { weight = 1.0; mu = 0.25; sigma2 = 0.0025 } );
    N_inactive = ( 250, 250, 250, 250 );
    tracked: {
        format = "json";
        interface: { type = "socket"; ip = "127.0.0.1"; port = 9000; };
    };
}
sss:
{
    mode_sep = "dds";
    mode_pf = "ms";
    separated: { fS = 16000; hopSize = 128; nBits = 16; interface: { type = "file"; path = "separated.raw"; }; };
    postfiltered: { fS = 16000; hopSize = 128; nBits = 16; gain = 10.0;
                    interface: { type = "file"; path = "postfiltered.raw"; }; };
};
classify:
{
    frameSize = 4096;
    category: { format = "undefined"; interface: { type = "blackhole"; } }
}
"""


def _outside_interfaces(text: str) -> list[str]:
    """The lines that are neither a sink's or the input's interface/format nor comments (what must not change)."""
    text = re.sub(r"#[^\n]*", "", text)
    text = re.sub(r"interface\s*:\s*\{[^}]*\}", "", text)
    text = re.sub(r"\bformat\s*=\s*[^;]+;", "", text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_every_builtin_board_has_its_odas_config():
    assert sorted(BOARD_CFGS) == sorted(set(list_arrays()) - {"uca8-r10"})


def test_facts_of_an_odas_config():
    facts = odas_cfg_facts(CFG)
    assert (facts["fs_hz"], facts["hop"], facts["n_bits"], facts["n_channels"]) == (16000, 128, 16, 6)
    assert facts["map"] == [2, 3, 4, 5]
    assert (facts["proc_fs_hz"], facts["proc_hop"], facts["frame"]) == (16000, 128, 256)
    np.testing.assert_allclose(facts["mics_m"], get_array("respeaker-usb-v2").positions(), atol=1e-9)
    assert facts["sinks"] == {"potential": "socket", "tracked": "socket", "separated": "file",
                              "postfiltered": "file", "category": "blackhole"}


def test_localize_config_reads_the_raw_file_and_tracks_to_a_file_only(tmp_path):
    raw, out = tmp_path / "rec.raw", tmp_path / "out"
    cfg = board_odas_config(CFG, raw, out, "config/odaslive/test.cfg", "localize")
    facts = odas_cfg_facts(cfg)
    assert facts["sinks"] == {"potential": "blackhole", "tracked": "file", "separated": "blackhole",
                              "postfiltered": "blackhole", "category": "blackhole"}
    assert f'interface: {{ type = "file"; path = "{raw}"; }}' in cfg
    assert f'path = "{out / "tracked.json"}"' in cfg
    assert "soundcard" not in re.sub(r"#[^\n]*", "", cfg)
    # ODAS takes sources to a blackhole only as "undefined", to a file only as JSON
    pots = cfg[cfg.index("potential: {"):cfg.index("sst:")]
    assert 'format = "undefined";' in re.sub(r"#[^\n]*", "", pots)
    # geometry, rates, frame/hop, SSL and SST settings: every other line as it was
    assert _outside_interfaces(cfg) == _outside_interfaces(CFG)
    assert {k: v for k, v in facts.items() if k != "sinks"} == {k: v for k, v in odas_cfg_facts(CFG).items()
                                                                 if k != "sinks"}


def test_configured_config_writes_every_sink_its_config_enables(tmp_path):
    cfg = board_odas_config(CFG, tmp_path / "rec.raw", tmp_path / "out", "config/odaslive/test.cfg", "configured")
    facts = odas_cfg_facts(cfg)
    assert facts["sinks"] == {"potential": "file", "tracked": "file", "separated": "file",
                              "postfiltered": "file", "category": "blackhole"}
    for name in ("potential.json", "tracked.json", "separated.raw", "postfiltered.raw"):
        assert f'path = "{tmp_path / "out" / name}"' in cfg
    assert _outside_interfaces(cfg) == _outside_interfaces(CFG)
    with pytest.raises(ValueError):
        board_odas_config(CFG, tmp_path / "rec.raw", tmp_path / "out", "x", "everything")


@pytest.mark.parametrize("cfg_dir", [d for d in ODAS_CFG_DIRS if d.is_dir()][:1] or
                         [pytest.param(None, marks=pytest.mark.skip(reason="no ODAS config/odaslive folder"))])
@pytest.mark.parametrize("board", sorted(BOARD_CFGS))
def test_odas_own_board_config_fits_the_board(cfg_dir, board, tmp_path):
    """ODAS's own config of each board reads what the board delivers, with edge-msl's geometry."""
    text = (cfg_dir / f"{BOARD_CFGS[board]}.cfg").read_text()
    a, facts = get_array(board), odas_cfg_facts(text)
    assert (facts["fs_hz"], facts["n_channels"]) == (a.native_rate_hz, a.n_channels)
    assert facts["map"] == [c + 1 for c in a.channel_map]
    np.testing.assert_allclose(facts["mics_m"], a.positions(), atol=5e-4)
    for stages in ("localize", "configured"):
        changed = board_odas_config(text, tmp_path / "rec.raw", tmp_path, "x", stages)
        assert _outside_interfaces(changed) == _outside_interfaces(text)
        assert odas_cfg_facts(changed)["sinks"]["tracked"] == "file"


def _sine_mics(n_mics: int, seconds: float, rate_hz: int, freq_hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return np.stack([1000.0 * np.sin(2 * np.pi * freq_hz * t + k) for k in range(n_mics)], axis=1)


def test_usb_board_recording_is_laid_out_as_the_board_delivers_it():
    usb = get_array("respeaker-usb-v2")
    mics = _sine_mics(usb.n_mics, 1.0, 16000)
    rec = board_recording(usb, mics, 16000, 2.5, 16000, 16)
    assert rec.shape == (40000, 6) and rec.dtype == np.int16
    # tiled: the second second repeats the first
    np.testing.assert_array_equal(rec[16000:32000], rec[:16000])
    np.testing.assert_array_equal(rec[:16000, 1:5], np.round(mics).astype(np.int16))
    assert not rec[:, 5].any()  # the playback reference: digital zero, nothing playing
    np.testing.assert_allclose(rec[:, 0], rec[:, 1:5].astype(float).mean(axis=1), atol=1.0)  # processed audio


def test_uma8_recording_at_48k_in_32_bits_keeps_the_level_and_the_tone():
    uma8 = get_array("minidsp-uma8")
    mics = _sine_mics(uma8.n_mics, 1.0, 16000)
    rec = board_recording(uma8, mics, 16000, 1.0, 48000, 32)
    assert rec.shape == (48000, 8) and rec.dtype == np.int32
    assert not rec[:, 7].any()  # unused channel
    mid = rec[4800:-4800, 1].astype(float) / 65536.0
    assert abs(np.abs(mid).max() - 1000.0) < 20.0
    spectrum = np.abs(np.fft.rfft(mid))
    assert abs(np.fft.rfftfreq(len(mid), 1 / 48000)[spectrum.argmax()] - 1000.0) < 2.0


def test_scene_mics_reads_mics_alone_or_the_whole_capture(tmp_path):
    six = get_array("respeaker-6mic")
    mics = np.round(_sine_mics(six.n_mics, 0.5, 16000)).astype(np.int16)
    write_wav(tmp_path / "a.wav", mics, 16000)
    write_wav(tmp_path / "b.wav", board_recording(six, mics, 16000, 0.5, 16000, 16), 16000)
    got, rate = scene_mics(six, [tmp_path / "a.wav", tmp_path / "b.wav"])
    assert rate == 16000
    np.testing.assert_array_equal(got, np.concatenate([mics, mics]))
    write_wav(tmp_path / "c.wav", mics[:, :3], 16000)
    with pytest.raises(SystemExit, match="3 channels"):
        scene_mics(six, [tmp_path / "c.wav"])


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_pcm_wav_reads_back_as_written(tmp_path, dtype):
    x = (np.arange(24, dtype=np.int64).reshape(6, 4) * (7 if dtype == np.int16 else 7 << 16) - 50).astype(dtype)
    write_pcm_wav(tmp_path / "x.wav", x, 48000)
    with open_audio(tmp_path / "x.wav") as r:
        assert r.info.sample_rate_hz == 48000 and r.info.n_channels == 4
        np.testing.assert_array_equal(np.concatenate(list(r.blocks(48000))), x)


def test_boards_need_odas_configs(tmp_path, monkeypatch):
    fake = tmp_path / "odaslive"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    with pytest.raises(SystemExit, match="--odas-config-dir"):
        odas_cpu.main(["--odaslive", str(fake), "--array", "respeaker-4mic"])
    with pytest.raises(SystemExit, match="boards with an ODAS config"):
        odas_cpu.main(["--odaslive", str(fake), "--array", "uca8-r10", "--odas-config-dir", str(tmp_path)])


@pytest.mark.skipif(not (ODASLIVE.is_file() and any(d.is_dir() for d in ODAS_CFG_DIRS)),
                    reason="needs an odaslive binary and ODAS's config/odaslive")
def test_a_short_board_run_against_odaslive(tmp_path, capsys):
    cfg_dir = next(d for d in ODAS_CFG_DIRS if d.is_dir())
    board = get_array("respeaker-4mic")
    scenes = tmp_path / "scenes" / "val-turns-respeaker-4mic"
    scenes.mkdir(parents=True)
    noise = np.random.default_rng(0).normal(0, 300, (16000, board.n_mics))
    write_wav(scenes / "scene-000.wav", np.round(noise).astype(np.int16), 16000)
    out = tmp_path / "out.json"
    assert odas_cpu.main(["--odaslive", str(ODASLIVE), "--array", "respeaker-4mic", "--odas-config-dir", str(cfg_dir),
                          "--scenes-dir", str(tmp_path / "scenes"), "--seconds", "2", "--repeat", "1",
                          "--json", str(out)]) == 0
    res = json.loads(out.read_text())["boards"][0]
    assert res["board"] == "respeaker-4mic" and res["n_bits"] == 32 and res["same_input"]
    assert [r["frames"] >= 0.99 * res["expected_frames"] for r in res["rows"][1:]] == [True] * 3
    assert "| respeaker-4mic | 16000 | 4 (32) |" in capsys.readouterr().out


def test_measured_processes_keep_edge_msl_bytecode_as_a_pip_install_does(tmp_path, monkeypatch):
    """Even where PYTHONDONTWRITEBYTECODE is set, a measured process writes edge-msl's bytecode to the benchmark's
    own cache (a pip install compiles it), so the timed runs after the untimed check do not compile it again."""
    import subprocess
    import sys

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(odas_cpu, "PYCACHE", tmp_path / "pycache")
    env = odas_cpu.program_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pycache")
    subprocess.run([sys.executable, "-c", "import edge_msl.temporal"], cwd=odas_cpu.REPO, env=env, check=True)
    assert list((tmp_path / "pycache").rglob("edge_msl/temporal.*.pyc"))
