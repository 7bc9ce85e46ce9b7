"""Whole-process CPU of ``edge-msl locate`` against ODAS's ``odaslive`` (SRP-PHAT + Kalman tracking)
on the same 60 s recording, both pinned to one core, interleaved in one run.

    .venv/bin/python -m benchmarks.odas_cpu --odaslive /tmp/odas-build/bin/odaslive --repeat 3 --json out/odas_cpu.json
    .venv/bin/python -m benchmarks.odas_cpu --odaslive /tmp/odas-build/bin/odaslive --repeat 3 \
        --array all --odas-config-dir /tmp/odas-src/config/odaslive --json out/board_cpu.json

Without ``--array``: uca8-r10 on the bundled example tiled (8 channels, 16 kHz), ODAS with a config derived
from its matrix_creator.cfg. With ``--array NAME`` (a built-in board, repeatable, or ``all``): a board
validation scene set (data/scenes/val-turns-<board>) tiled to 60 s and laid out as the board delivers it
(its capture channels, native rate, loopback/processed/unused channels as it fills them), against ODAS
with that board's own config/odaslive/<name>.cfg, of which only the input (a raw file) and the sinks
(files or blackholes) are changed.

ODAS is not part of edge-msl: build it yourself from its public source (github.com/introlab/odas,
cmake) and pass the binary; this script neither builds nor ships it. Needs /usr/bin/time (GNU) and
taskset. Prints a markdown table on stdout; figures are medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.locate_bench import cpu_name
from edge_msl.arrays import MicArray, get_array, to_capture
from edge_msl.audio_io import open_audio, write_wav

REPO = Path(__file__).resolve().parents[1]

EXAMPLE = REPO / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"
ARRAY = "uca8-r10"
SAMPLE_RATE_HZ = 16000
ODAS_HOP = 128
"""ODAS's STFT hop in samples (matrix_creator.cfg: hopSize 128, frameSize 256 at 16 kHz)."""
EDGE_HOP_S = 0.1
SST_PRIORS = {
    # ODAS's prior on a pot's SRP-PHAT energy: active source, inactive, and frames before a silent track ends.
    "respeaker_6_mic_array": {"active_mu": 0.3, "inactive_mu": 0.15, "n_inactive": (150, 200, 250, 250)},
    "matrix_creator": {"active_mu": 0.4, "inactive_mu": 0.25, "n_inactive": (250, 250, 250, 250)},
}
"""SST activity priors from ODAS's config/odaslive/<name>.cfg. With matrix_creator's, ODAS never tracks the
example's 77 deg talker (the farthest, 2.4 m, and the quietest), so the default takes
respeaker_6_mic_array's, with which ODAS tracks all three talkers: both programs then do the same job."""
BOARD_CFGS = {
    "respeaker-4mic": "respeaker_4_mic_array",
    "respeaker-6mic": "respeaker_6_mic_array",
    "respeaker-usb-v2": "respeaker_usb_4_mic_array",
    "matrix-voice": "matrix_voice",
    "matrix-creator": "matrix_creator",
    "minidsp-uma8": "minidsp",
}
"""Each built-in board's own ODAS config, config/odaslive/<name>.cfg in ODAS's source (see docs/boards.md)."""
BOARD_SCENES = REPO / "data" / "scenes"
"""Where the board validation scenes are (val-turns-<board>: 12 s turn-taking scenes, 16 kHz, mics only)."""
BUILD_HINT = ("build ODAS from its public source: git clone https://github.com/introlab/odas && "
              "cmake -S odas -B odas-build -DCMAKE_BUILD_TYPE=Release && cmake --build odas-build "
              "(needs libfftw3-dev libconfig-dev libasound2-dev libpulse-dev), then pass "
              "--odaslive odas-build/bin/odaslive")


# --------------------------------------------------------------------------- inputs

def tile_example(seconds: float, wav: Path, raw: Path) -> int:
    """The bundled example repeated to ``seconds``, as a WAV for edge-msl and raw s16le for ODAS."""
    with open_audio(EXAMPLE) as r:
        x = np.concatenate(list(r.blocks(SAMPLE_RATE_HZ)))
    n = int(round(seconds * SAMPLE_RATE_HZ))
    y = np.concatenate([x] * (n // len(x) + 1))[:n]
    write_wav(wav, y, SAMPLE_RATE_HZ)
    np.ascontiguousarray(y, dtype="<i2").tofile(raw)
    return y.shape[1]


def _mic_block(k: int, p: np.ndarray) -> str:
    return (f"        {{ # microphone {k + 1}\n"
            f"            mu = ( {p[0]:+.6f}, {p[1]:+.6f}, {p[2]:+.6f} );\n"
            "            sigma2 = ( +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000 );\n"
            "            direction = ( +0.000, +0.000, +1.000 );\n"
            "            angle = ( 80.0, 100.0 );\n"
            "        }")


def odas_config(array: MicArray, n_channels: int, raw: Path, tracked: Path, priors: str) -> str:
    """An odaslive config for ``array`` reading ``raw``: SSL + SST only, tracks to ``tracked`` as JSON.

    Everything but the input, the geometry, the sinks and the SST activity priors (``SST_PRIORS[priors]``)
    is ODAS's own config/odaslive/matrix_creator.cfg (an 8-mic circular board, 16 kHz, hop 128, frame 256).
    ODAS enables a stage only when a sink after it is not a blackhole, so separation, post-filtering and
    classification (which edge-msl does not do) stay off.
    """
    pos = array.positions()
    sst = SST_PRIORS[priors]
    # ODAS's mapping lists, per microphone, the 1-based input channel that carries it.
    mapping = ", ".join(str(c + 1) for c in array.channel_map)
    mics = ",\n\n".join(_mic_block(k, p) for k, p in enumerate(pos))
    return f"""# generated by edge-msl benchmarks/odas_cpu.py from ODAS config/odaslive/matrix_creator.cfg
# (SST activity priors from {priors}.cfg)
version = "2.1";

raw: {{
    fS = {SAMPLE_RATE_HZ};
    hopSize = {ODAS_HOP};
    nBits = 16;
    nChannels = {n_channels};
    interface: {{ type = "file"; path = "{raw}"; }};
}};

mapping: {{ map: ({mapping}); }};

general: {{
    epsilon = 1E-20;
    size: {{ hopSize = {ODAS_HOP}; frameSize = {2 * ODAS_HOP}; }};
    samplerate: {{ mu = {SAMPLE_RATE_HZ}; sigma2 = 0.01; }};
    speedofsound: {{ mu = 343.0; sigma2 = 25.0; }};
    mics = (
{mics}
    );
    spatialfilters = (
        {{ direction = ( +0.000, +0.000, +1.000 ); angle = ( 80.0, 100.0 ); }}
    );
    nThetas = 181;
    gainMin = 0.25;
}};

sne: {{ b = 3; alphaS = 0.1; L = 150; delta = 3.0; alphaD = 0.1; }};

ssl: {{
    nPots = 4;
    nMatches = 10;
    probMin = 0.5;
    nRefinedLevels = 1;
    interpRate = 4;
    scans = (
        {{ level = 2; delta = -1; }},
        {{ level = 4; delta = -1; }}
    );
    potential: {{ format = "undefined"; interface: {{ type = "blackhole"; }}; }};
}};

sst: {{
    mode = "kalman";
    add = "dynamic";
    active = ( {{ weight = 1.0; mu = {sst["active_mu"]}; sigma2 = 0.0025; }} );
    inactive = ( {{ weight = 1.0; mu = {sst["inactive_mu"]}; sigma2 = 0.0025; }} );
    sigmaR2_prob = 0.0025;
    sigmaR2_active = 0.0225;
    sigmaR2_target = 0.0025;
    Pfalse = 0.1;
    Pnew = 0.1;
    Ptrack = 0.8;
    theta_new = 0.9;
    N_prob = 5;
    theta_prob = 0.8;
    N_inactive = ( {", ".join(str(n) for n in sst["n_inactive"])} );
    theta_inactive = 0.9;
    kalman: {{ sigmaQ = 0.001; }};
    particle: {{
        nParticles = 1000;
        st_alpha = 2.0; st_beta = 0.04; st_ratio = 0.5;
        ve_alpha = 0.05; ve_beta = 0.2; ve_ratio = 0.3;
        ac_alpha = 0.5; ac_beta = 0.2; ac_ratio = 0.2;
        Nmin = 0.7;
    }};
    target: ();
    tracked: {{ format = "json"; interface: {{ type = "file"; path = "{tracked}"; }}; }};
}};

sss: {{
    mode_sep = "dds";
    mode_pf = "ss";
    gain_sep = 1.0;
    gain_pf = 10.0;
    dds: {{ }};
    dgss: {{ mu = 0.01; lambda = 0.5; }};
    dmvdr: {{ }};
    ms: {{
        alphaPmin = 0.07; eta = 0.5; alphaZ = 0.8; thetaWin = 0.3; alphaWin = 0.3; maxAbsenceProb = 0.9;
        Gmin = 0.01; winSizeLocal = 3; winSizeGlobal = 23; winSizeFrame = 256;
    }};
    ss: {{ Gmin = 0.01; Gmid = 0.5; Gslope = 10.0; }};
    separated: {{ fS = {SAMPLE_RATE_HZ}; hopSize = {ODAS_HOP}; nBits = 16; interface: {{ type = "blackhole"; }}; }};
    postfiltered: {{ fS = {SAMPLE_RATE_HZ}; hopSize = {ODAS_HOP}; nBits = 16; gain = 10.0;
                    interface: {{ type = "blackhole"; }}; }};
}};

classify: {{
    frameSize = 4096; winSize = 3; tauMin = 88; tauMax = 551; deltaTauMax = 20;
    alpha = 0.3; gamma = 0.05; phiMin = 0.5; r0 = 0.2;
    category: {{ format = "undefined"; interface: {{ type = "blackhole"; }}; }};
}};
"""



# --------------------------------------------------------------------------- boards: recording

def scene_mics(array: MicArray, wavs: list[Path]) -> tuple[np.ndarray, int]:
    """The microphone signals (n, n_mics) of board scenes, concatenated, in mic order, and their rate.
    A scene holds either the mics alone (as the simulator's scene sets do) or the board's whole capture."""
    parts, rates = [], set()
    for wav in wavs:
        with open_audio(wav) as r:
            rate = r.info.sample_rate_hz
            x = np.concatenate(list(r.blocks(rate)))
        if x.shape[1] == array.n_channels and x.shape[1] != array.n_mics:
            x = array.select_channels(x)
        elif x.shape[1] != array.n_mics:
            raise SystemExit(f"{wav}: {x.shape[1]} channels, but {array.name} has {array.n_mics} mics "
                             f"({array.n_channels} capture channels)")
        parts.append(x)
        rates.add(rate)
    if len(rates) != 1:
        raise SystemExit(f"scenes at several rates ({sorted(rates)}); give scenes of one rate")
    return np.concatenate(parts), rates.pop()


def board_recording(array: MicArray, mics: np.ndarray, rate_in_hz: int, seconds: float, rate_hz: int,
                    n_bits: int) -> np.ndarray:
    """``mics`` (n, n_mics) at ``rate_in_hz`` tiled to ``seconds``, resampled to ``rate_hz`` and laid out as
    the board delivers it (``arrays.to_capture``: loopback/unused digital zero, processed = mean of the mics),
    as int16 (n_bits 16) or int32 (n_bits 32, the same level: int16 full scale shifted up 16 bits)."""
    from math import gcd

    from scipy.signal import resample_poly

    n_in = int(round(seconds * rate_in_hz))
    x = np.concatenate([mics] * (n_in // len(mics) + 1))[:n_in].astype(np.float64)
    if rate_hz != rate_in_hz:
        g = gcd(int(rate_hz), int(rate_in_hz))
        x = resample_poly(x, rate_hz // g, rate_in_hz // g, axis=0)
    n = int(round(seconds * rate_hz))
    x = x[:n]
    cap = to_capture(array, x)
    if n_bits == 16:
        return np.clip(np.round(cap), -32768, 32767).astype(np.int16)
    if n_bits == 32:
        return np.clip(np.round(cap * 65536.0), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    raise SystemExit(f"nBits {n_bits}: only 16 and 32 are written")


def write_pcm_wav(path: Path, frames: np.ndarray, sample_rate_hz: int) -> None:
    """int16 or int32 frames (n, channels) as a plain PCM WAV (edge_msl.audio_io.write_wav writes int16 only)."""
    x = np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("<"))
    n, c = x.shape
    width = x.dtype.itemsize
    data = x.tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, c, int(sample_rate_hz), int(sample_rate_hz) * width * c,
                                    width * c, 8 * width)
    header += b"data" + struct.pack("<I", len(data))
    with open(path, "wb") as f:
        f.write(header)
        f.write(data)


# --------------------------------------------------------------------------- boards: ODAS's own config

def _code_only(text: str) -> str:
    """``text`` with every libconfig comment (# to the end of the line) blanked, same length, for searching."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), text)


def _block(code: str, key: str, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Span (from the key to its closing brace) of the first ``key: { ... }`` group in code[start:end]."""
    m = re.compile(rf"\b{re.escape(key)}\s*:\s*\{{").search(code, start, len(code) if end is None else end)
    if not m:
        raise SystemExit(f"ODAS config: no '{key}: {{ ... }}' group")
    depth = 0
    for i in range(m.end() - 1, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return m.start(), i + 1
    raise SystemExit(f"ODAS config: '{key}' group is not closed")


def _scalar(code: str, key: str, start: int, end: int) -> str:
    m = re.compile(rf"\b{re.escape(key)}\s*=\s*([^;]+);").search(code, start, end)
    if not m:
        raise SystemExit(f"ODAS config: no {key} = ...; where expected")
    return m.group(1).strip().strip('"')


SINKS = ("potential", "tracked", "separated", "postfiltered", "category")
"""ODAS's sinks (ssl.potential, sst.tracked, sss.separated, sss.postfiltered, classify.category). odaslive
runs a stage only if a sink after it is not a blackhole."""


def odas_cfg_facts(text: str) -> dict:
    """What an odaslive config reads and computes at: the raw input's rate, hop, sample width and channels,
    the 1-based channel of each mic, the mics' positions (m), the processing rate and hop, and which sinks
    are blackholes."""
    code = _code_only(text)
    r0, r1 = _block(code, "raw")
    g0, g1 = _block(code, "general")
    s0, s1 = _block(code, "size", g0, g1)
    m0, m1 = _block(code, "mapping")
    mapping = re.search(r"map\s*:\s*\(([^)]*)\)", code[m0:m1])
    mics = re.findall(r"\bmu\s*=\s*\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)", code[g0:g1])
    sr0, sr1 = _block(code, "samplerate", g0, g1)
    sinks = {}
    for name in SINKS:
        k0, k1 = _block(code, name)
        i0, i1 = _block(code, "interface", k0, k1)
        sinks[name] = _scalar(code, "type", i0, i1)
    return {"fs_hz": int(_scalar(code, "fS", r0, r1)), "hop": int(_scalar(code, "hopSize", r0, r1)),
            "n_bits": int(_scalar(code, "nBits", r0, r1)), "n_channels": int(_scalar(code, "nChannels", r0, r1)),
            "map": [int(c) for c in mapping.group(1).split(",")] if mapping else [],
            "mics_m": [[float(v) for v in p] for p in mics],
            "proc_fs_hz": int(float(_scalar(code, "mu", sr0, sr1))),
            "proc_hop": int(_scalar(code, "hopSize", s0, s1)), "frame": int(_scalar(code, "frameSize", s0, s1)),
            "sinks": sinks}


def board_odas_config(text: str, raw: Path, out_dir: Path, source: str, stages: str = "localize") -> str:
    """``text`` (an odaslive config) reading ``raw`` instead of its sound card, its sinks writing files in
    ``out_dir`` or nothing; every other line as it is (geometry, rates, frame/hop, SSL, SST, SSS settings).

    ``stages="localize"``: tracked sources as JSON to out_dir/tracked.json, every other sink a blackhole, so
    ODAS runs SSL + SST only (what ``edge-msl locate`` does). ``stages="configured"``: every sink the config
    does not blackhole writes a file (potentials and tracks as JSON, separated and post-filtered audio raw),
    so ODAS runs every stage its config enables (separation and post-filtering too).
    """
    if stages not in ("localize", "configured"):
        raise ValueError(f"stages {stages!r}: 'localize' or 'configured'")
    facts = odas_cfg_facts(text)
    code = _code_only(text)
    edits: list[tuple[int, int, str]] = []
    r0, r1 = _block(code, "raw")
    i0, i1 = _block(code, "interface", r0, r1)
    edits.append((i0, i1, f'interface: {{ type = "file"; path = "{raw}"; }}'))
    for name in SINKS:
        k0, k1 = _block(code, name)
        i0, i1 = _block(code, "interface", k0, k1)
        on = name == "tracked" or (stages == "configured" and facts["sinks"][name] != "blackhole")
        if name == "category":
            on = False  # no config of a board enables the classifier; keep it so
        if on:
            path = out_dir / (name + (".json" if name in ("potential", "tracked") else ".raw"))
            edits.append((i0, i1, f'interface: {{ type = "file"; path = "{path}"; }}'))
        else:
            edits.append((i0, i1, 'interface: { type = "blackhole"; }'))
        if name in ("potential", "tracked"):
            # ODAS takes sources to a file only as JSON, and to a blackhole only as "undefined"
            f = re.compile(r"\bformat\s*=\s*[^;]+;").search(code, k0, i0)
            if f:
                edits.append((f.start(), f.end(), 'format = "json";' if on else 'format = "undefined";'))
    out = text
    for a, b, new in sorted(edits, reverse=True):
        out = out[:a] + new + out[b:]
    what = "SSL + SST only" if stages == "localize" else "every stage the config enables"
    return (f"# generated by edge-msl benchmarks/odas_cpu.py from ODAS {source}: input from a raw file, sinks to "
            f"files or blackholes ({what}); nothing else changed\n" + out)

# --------------------------------------------------------------------------- runs

PYCACHE = Path(tempfile.gettempdir()) / "edge-msl-odas-cpu-pycache"
"""Where the measured processes keep Python bytecode (``PYTHONPYCACHEPREFIX``)."""


def program_env(**extra: str) -> dict[str, str]:
    """The environment of every measured process: edge-msl from this checkout, with its bytecode cached as a pip
    install has it (pip compiles the modules when it installs them). A machine that sets
    ``PYTHONDONTWRITEBYTECODE`` (this project's development machine does) would otherwise make each start compile
    every edge-msl module again, about 0.06 s that users do not pay; the untimed whole-file check before the timed
    runs (:func:`edge_lines`) fills the cache. ODAS, a compiled program, is not affected."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=str(PYCACHE), **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_timed(cmd: list[str], report: Path, cwd: Path, allow_fail: bool = False) -> dict:
    """One run of ``cmd`` on core 0 under GNU time: user+sys CPU, wall time, peak RSS; stdout to /dev/null.
    A failed run exits, or with ``allow_fail`` comes back as ``{"failed": "exit N ..."}``."""
    full = ["/usr/bin/time", "-v", "-o", str(report), "taskset", "-c", "0", *cmd]
    p = subprocess.run(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=program_env(OMP_NUM_THREADS="1"))
    if p.returncode != 0 and allow_fail:
        # GNU time reports a child killed by a signal as "Command terminated by signal N"
        sig = re.search(r"terminated by signal (\d+)", p.stderr + (report.read_text() if report.exists() else ""))
        return {"failed": f"killed by signal {sig.group(1)}" if sig else f"exit {p.returncode}"}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise SystemExit(f"{' '.join(cmd)} exited with {p.returncode}: {tail}")
    text = report.read_text()

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}: (\S+)", text)
        if not m:
            raise SystemExit(f"/usr/bin/time wrote no {name!r} (is it GNU time?)")
        return m.group(1)

    h, _, rest = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").rpartition(":")
    wall_s = float(rest) + sum(float(v) * 60 ** (i + 1) for i, v in enumerate(reversed(h.split(":"))) if v)
    return {"cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
            "wall_s": wall_s, "rss_mb": float(field("Maximum resident set size (kbytes)")) / 1024.0}


def odas_frames(tracked: Path) -> dict:
    """Frames in an odaslive JSON tracks file, how many hold a track, and the azimuths tracked (10 deg bins)."""
    frames = re.split(r'"timeStamp"', tracked.read_text())[1:]
    track = re.compile(r'"id": ([1-9][0-9]*), "tag": "[^"]*", "x": ([-0-9.]+), "y": ([-0-9.]+)')
    bins: dict[int, int] = {}
    with_track = 0
    for f in frames:
        hits = track.findall(f)
        with_track += bool(hits)
        for _, x, y in hits:
            b = int(round(np.degrees(np.arctan2(float(y), float(x))) % 360.0 / 10.0)) * 10 % 360
            bins[b] = bins.get(b, 0) + 1
    total = sum(bins.values())
    # Only directions held for at least 5 % of the track-frames: the talkers, not a stray short track.
    azimuths = {b: n for b, n in sorted(bins.items()) if n >= 0.05 * total}
    return {"frames": len(frames), "frames_with_track": with_track, "track_azimuths_deg": azimuths}


def edge_lines(wav: Path, extra: tuple[str, ...] = ()) -> tuple[int, float]:
    """Lines ``edge-msl locate`` (with ``extra`` arguments) prints on ``wav`` and the last one's t_s (an untimed
    whole-file check)."""
    p = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(wav), *extra], cwd=REPO, capture_output=True,
                       text=True, env=program_env())
    lines = p.stdout.splitlines()
    if p.returncode != 0 or not lines:
        raise SystemExit(f"edge-msl locate failed: {(p.stderr.strip().splitlines() or [''])[-1]}")
    return len(lines), float(json.loads(lines[-1])["t_s"])



# --------------------------------------------------------------------------- boards: the run

def board_programs(odaslive: Path, board: str) -> dict:
    """The programs timed on a board's recording: name -> (wav, cfg_localize, cfg_configured) -> command."""
    odas = str(odaslive.resolve())
    return {
        f"edge-msl locate --array {board}": lambda wav, loc, conf: [sys.executable, "-m", "edge_msl", "locate",
                                                                    str(wav), "--array", board],
        "odaslive (threaded)": lambda wav, loc, conf: [odas, "-c", str(loc)],
        "odaslive -s": lambda wav, loc, conf: [odas, "-s", "-c", str(loc)],
        "odaslive -s, every stage its config enables": lambda wav, loc, conf: [odas, "-s", "-c", str(conf)],
    }


def prepare_board(board: str, cfg_dir: Path, scenes_dir: Path, n_scenes: int, seconds: float, tmp: Path) -> dict:
    """Everything one board's run needs, written under ``tmp``: the recording as the board delivers it (WAV for
    edge-msl) and as ODAS's own config reads it (raw), the two configs, and what differs between them."""
    array = get_array(board)
    cfg_name = BOARD_CFGS[board]
    cfg_path = cfg_dir / f"{cfg_name}.cfg"
    if not cfg_path.is_file():
        raise SystemExit(f"no {cfg_path}: give --odas-config-dir, ODAS's config/odaslive folder "
                         f"(git clone https://github.com/introlab/odas)")
    text = cfg_path.read_text()
    facts = odas_cfg_facts(text)
    scene_dir = scenes_dir / f"val-turns-{board}"
    wavs = sorted(scene_dir.glob("*.wav"))[:n_scenes]
    if not wavs:
        raise SystemExit(f"{scene_dir}: no scenes; make them with python -m train_tf.scenes (see docs/decode.md)")
    mics, rate_in = scene_mics(array, wavs)
    notes = []
    if len(facts["mics_m"]) != array.n_mics or len(facts["map"]) != array.n_mics:
        raise SystemExit(f"{cfg_path}: {len(facts['mics_m'])} mics / {len(facts['map'])} mapped, "
                         f"{board} has {array.n_mics}")
    geometry_mm = float(np.abs(np.asarray(facts["mics_m"]) - array.positions()).max() * 1000.0)
    if geometry_mm > 0.5:
        notes.append(f"ODAS's mic positions differ from edge-msl's by up to {geometry_mm:.1f} mm (each uses its own)")
    same_input = (facts["fs_hz"] == array.native_rate_hz and facts["n_channels"] == array.n_channels
                  and facts["map"] == [c + 1 for c in array.channel_map])
    board_dir = tmp / board
    board_dir.mkdir()
    wav, raw = board_dir / "capture.wav", board_dir / "capture.raw"
    # edge-msl gets the board's native capture; ODAS the same bytes (in the sample width its config reads) when
    # its config reads what the board delivers, else its own config's input (its rate, channels and map)
    rec = board_recording(array, mics, rate_in, seconds, array.native_rate_hz, facts["n_bits"] if same_input else 16)
    write_pcm_wav(wav, rec, array.native_rate_hz)
    odas_rec = rec
    if not same_input:
        notes.append(f"ODAS's {cfg_name}.cfg reads {facts['n_channels']} channels at {facts['fs_hz']} Hz (mics on "
                     f"{facts['map']}), the board delivers {array.n_channels} at {array.native_rate_hz} Hz (mics on "
                     f"{[c + 1 for c in array.channel_map]}): each program got its own layout of the same scenes")
        from dataclasses import replace
        as_cfg = replace(array, name=f"{board}-odas", channel_map=tuple(c - 1 for c in facts["map"]),
                         n_channels=facts["n_channels"])
        odas_rec = board_recording(as_cfg, mics, rate_in, seconds, facts["fs_hz"], facts["n_bits"])
    np.ascontiguousarray(odas_rec, dtype=odas_rec.dtype.newbyteorder("<")).tofile(raw)
    loc_dir, conf_dir = board_dir / "localize", board_dir / "configured"
    loc_dir.mkdir()
    conf_dir.mkdir()
    source = f"config/odaslive/{cfg_name}.cfg"
    loc, conf = board_dir / "localize.cfg", board_dir / "configured.cfg"
    loc.write_text(board_odas_config(text, raw.resolve(), loc_dir.resolve(), source, "localize"))
    conf.write_text(board_odas_config(text, raw.resolve(), conf_dir.resolve(), source, "configured"))
    return {"board": board, "cfg": cfg_name, "facts": facts, "wav": wav, "raw": raw, "loc": loc, "conf": conf,
            "loc_dir": loc_dir, "conf_dir": conf_dir, "rate_hz": array.native_rate_hz,
            "n_channels": array.n_channels, "n_bits": facts["n_bits"] if same_input else 16,
            "same_input": same_input, "scenes": [str(w) for w in wavs], "notes": notes,
            "geometry_diff_mm": geometry_mm}


def run_board(prep: dict, odaslive: Path, repeat: int, seconds: float) -> dict:
    """``repeat`` interleaved rounds of the board's programs, checked to have processed the whole recording."""
    board = prep["board"]
    facts = prep["facts"]
    expected = int(seconds * facts["proc_fs_hz"]) // facts["proc_hop"]
    lines, last_t_s = edge_lines(prep["wav"], ("--array", board))
    if abs(last_t_s - seconds) > EDGE_HOP_S + 1e-6:
        raise SystemExit(f"{board}: edge-msl locate's last line is at t_s {last_t_s}, not at the end ({seconds:g} s)")
    programs = board_programs(odaslive, board)
    runs: dict[str, list[dict]] = {name: [] for name in programs}
    load_before = os.getloadavg()
    for _ in range(repeat):
        for name, cmd in programs.items():
            out_dir = prep["conf_dir"] if "every stage" in name else prep["loc_dir"]
            for f in out_dir.iterdir():
                f.unlink()
            # ODAS's separation can crash (introlab/odas#229); the SSL + SST runs must not
            r = run_timed(cmd(prep["wav"], prep["loc"], prep["conf"]), prep["wav"].parent / "time.txt", REPO,
                          allow_fail="every stage" in name)
            if "failed" in r:
                tracks = out_dir / "tracked.json"
                r["frames"] = odas_frames(tracks)["frames"] if tracks.exists() else 0  # as far as it got (buffered)
            elif name.startswith("odaslive"):
                r.update(odas_frames(out_dir / "tracked.json"))
                if r["frames"] < 0.99 * expected:
                    raise SystemExit(f"{board}: {name} wrote {r['frames']} frames, expected about {expected}")
            runs[name].append(r)
    load_after = os.getloadavg()
    rows = summarize_runs(runs, seconds)
    keep = ("board", "cfg", "rate_hz", "n_channels", "n_bits", "same_input", "scenes", "notes", "geometry_diff_mm")
    return {**{k: prep[k] for k in keep}, "odas_input": {k: facts[k] for k in ("fs_hz", "hop", "n_bits", "n_channels",
                                                                              "map", "proc_fs_hz", "proc_hop")},
            "edge_lines": lines, "edge_last_t_s": last_t_s, "expected_frames": expected, "rows": rows,
            "load_before": load_before, "load_after": load_after,
            "odas_config_localize": prep["loc"].read_text(), "odas_config_configured": prep["conf"].read_text()}


def summarize_runs(runs: dict[str, list[dict]], seconds: float) -> list[dict]:
    """One row per program (the first is edge-msl's): median CPU and wall time, peak RSS, ODAS's frames, the
    rounds' CPU, the failed rounds, and edge-msl's CPU over each other program's (``ratio``). A program with no
    finished round has ``cpu_s`` None."""
    rows = []
    for name, all_rs in runs.items():
        rs = [r for r in all_rs if "failed" not in r]
        row = {"program": name, "runs": all_rs, "failed": [r["failed"] for r in all_rs if "failed" in r],
               "cpu_s_rounds": [r.get("cpu_s") for r in all_rs]}
        if rs:
            row.update({"cpu_s": statistics.median(r["cpu_s"] for r in rs),
                        "wall_s": statistics.median(r["wall_s"] for r in rs), "rss_mb": max(r["rss_mb"] for r in rs)})
            row["cpu_s_per_audio_s"] = row["cpu_s"] / seconds
            if "frames" in rs[0]:
                row.update({k: rs[0][k] for k in ("frames", "frames_with_track", "track_azimuths_deg")})
        else:
            row.update({"cpu_s": None, "frames": all_rs[0].get("frames")})
        rows.append(row)
    for r in rows[1:]:
        r["ratio"] = None if r["cpu_s"] is None else rows[0]["cpu_s"] / r["cpu_s"]
    return rows


def _fmt_cpu(row: dict) -> str:
    """A row's median CPU, or what became of its runs when none finished."""
    if row.get("cpu_s") is None:
        return "crashed: " + ", ".join(sorted(set(row.get("failed") or ["no run"])))
    return f"{row['cpu_s']:.2f}"


def fmt_board_summary(results: list[dict]) -> str:
    lines = ["| board | rate Hz | channels (bits) | edge-msl CPU s | `odaslive -s` CPU s | edge-msl / `-s` | "
             "`odaslive` CPU s | edge-msl / `odaslive` | `-s`, every stage CPU s | peak RSS MB edge-msl / `-s` |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for res in results:
        edge, thr, single, full = res["rows"]
        lines.append(f"| {res['board']} | {res['rate_hz']} | {res['n_channels']} ({res['n_bits']}) | {edge['cpu_s']:.2f} | "
                     f"{single['cpu_s']:.2f} | {single['ratio']:.2f} | {thr['cpu_s']:.2f} | {thr['ratio']:.2f} | "
                     f"{_fmt_cpu(full)} | {edge['rss_mb']:.0f} / {single['rss_mb']:.0f} |")
    return "\n".join(lines)


def main_boards(args: argparse.Namespace, odaslive: Path) -> int:
    boards = list(BOARD_CFGS) if "all" in args.array else list(dict.fromkeys(args.array))
    unknown = [b for b in boards if b not in BOARD_CFGS]
    if unknown:
        raise SystemExit(f"--array {unknown[0]}: boards with an ODAS config are {', '.join(BOARD_CFGS)} (or all)")
    if args.odas_config_dir is None:
        raise SystemExit("--array needs --odas-config-dir, ODAS's config/odaslive folder "
                         "(git clone https://github.com/introlab/odas)")
    cfg_dir = Path(args.odas_config_dir)
    machine = f"{os.cpu_count()} cores, {cpu_name()}"
    results = []
    with tempfile.TemporaryDirectory() as d:
        for board in boards:
            prep = prepare_board(board, cfg_dir, Path(args.scenes_dir), args.scenes, args.seconds, Path(d))
            res = run_board(prep, odaslive, args.repeat, args.seconds)
            results.append(res)
            print(f"## {board}: {args.seconds:g} s, {res['n_channels']} channels, {res['rate_hz']} Hz, "
                  f"{res['n_bits']}-bit; ODAS {res['cfg']}.cfg reads {res['odas_input']['n_channels']} channels at "
                  f"{res['odas_input']['fs_hz']} Hz, {res['odas_input']['n_bits']}-bit (load {res['load_before'][0]:.1f} "
                  f"-> {res['load_after'][0]:.1f})\n")
            print(fmt_table(res["rows"]))
            odas = res["rows"][1:]
            print(f"\nedge-msl printed {res['edge_lines']} lines, the last at t_s {res['edge_last_t_s']:g}; ODAS frames "
                  + ", ".join(f"{r['frames']} ({r['frames_with_track']} with a track)" if "frames_with_track" in r
                              else f"{r['frames']} before it crashed" for r in odas)
                  + f", expected {res['expected_frames']}; CPU s by round: "
                  + "; ".join(f"{r['program']} " + ", ".join("crashed" if c is None else f"{c:.2f}"
                                                             for c in r["cpu_s_rounds"]) for r in res["rows"]))
            for note in res["notes"]:
                print(f"note: {note}")
            print(flush=True)
    print(f"# edge-msl locate vs ODAS odaslive per board, whole-process CPU ({machine}; each pinned to core 0 with "
          f"taskset -c 0; median of {args.repeat} interleaved runs; edge-msl {_git_head()})\n")
    print(fmt_board_summary(results))
    met = [r["board"] for r in results if r["rows"][0]["cpu_s"] <= min(x["cpu_s"] for x in r["rows"][1:3])]
    print(f"\nedge-msl at most the CPU of ODAS's cheaper SSL+SST mode on: {', '.join(met) or 'none'} "
          f"({len(met)} of {len(results)})")
    if args.json:
        out = {"machine": machine, "seconds": args.seconds, "repeat": args.repeat, "edge_msl": _git_head(),
               "odaslive": str(odaslive), "odas_config_dir": str(cfg_dir), "boards": results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


def fmt_table(rows: list[dict]) -> str:
    lines = ["| program | CPU s (user+sys) | CPU s / audio s | peak RSS MB | wall s | edge-msl / this |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r.get("cpu_s") is None:
            lines.append(f"| {r['program']} | {_fmt_cpu(r)} | | | | |")
            continue
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['program']} | {r['cpu_s']:.2f} | {r['cpu_s_per_audio_s']:.4f} | {r['rss_mb']:.0f} | "
                     f"{r['wall_s']:.1f} | {ratio} |")
    return "\n".join(lines)


def _git_head() -> str:
    p = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "edge_msl"],
                           capture_output=True, text=True).stdout.strip()
    if p.returncode != 0:
        return "(not a git checkout)"
    return p.stdout.strip() + (" (edge_msl/ modified)" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--odaslive", required=True, help="the odaslive binary you built (bin/odaslive)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the tiled recording")
    parser.add_argument("--repeat", type=int, default=3, help="runs per program, interleaved (median)")
    parser.add_argument("--sst-priors", choices=sorted(SST_PRIORS), default="respeaker_6_mic_array",
                        help="ODAS example config whose SST activity priors to use (see SST_PRIORS)")
    parser.add_argument("--array", action="append", metavar="NAME",
                        help=f"a board ({', '.join(BOARD_CFGS)}) or all; repeatable: its own recording and ODAS "
                             f"config instead of uca8-r10's")
    parser.add_argument("--odas-config-dir", help="ODAS's config/odaslive folder (with --array)")
    parser.add_argument("--scenes-dir", default=str(BOARD_SCENES),
                        help="folder of the board scene sets val-turns-<board> (with --array)")
    parser.add_argument("--scenes", type=int, default=5, help="scenes per board, concatenated then tiled (with --array)")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    odaslive = Path(args.odaslive)
    if not (odaslive.is_file() and os.access(odaslive, os.X_OK)):
        raise SystemExit(f"no odaslive executable at {odaslive}; {BUILD_HINT}")
    for tool in ("taskset", "/usr/bin/time"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt install util-linux time)")
    if args.array:
        return main_boards(args, odaslive)
    array = get_array(ARRAY)
    expected_frames = int(args.seconds * SAMPLE_RATE_HZ) // ODAS_HOP
    programs = {
        "edge-msl locate": lambda wav, cfg: [sys.executable, "-m", "edge_msl", "locate", str(wav)],
        "odaslive (default, threaded)": lambda wav, cfg: [str(odaslive.resolve()), "-c", str(cfg)],
        "odaslive -s (single thread)": lambda wav, cfg: [str(odaslive.resolve()), "-s", "-c", str(cfg)],
    }
    runs: dict[str, list[dict]] = {name: [] for name in programs}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wav, raw, tracked = tmp / "long16.wav", tmp / "long16.raw", tmp / "tracked.json"
        n_channels = tile_example(args.seconds, wav, raw)
        cfg = tmp / "uca8-r10.cfg"
        cfg.write_text(odas_config(array, n_channels, raw, tracked, args.sst_priors))
        lines, last_t_s = edge_lines(wav)
        if abs(last_t_s - args.seconds) > EDGE_HOP_S + 1e-6:
            raise SystemExit(f"edge-msl locate's last line is at t_s {last_t_s}, not at the end ({args.seconds:g} s)")
        for _ in range(args.repeat):
            for name, cmd in programs.items():
                tracked.unlink(missing_ok=True)
                r = run_timed(cmd(wav, cfg), tmp / "time.txt", REPO)
                if name.startswith("odaslive"):
                    r.update(odas_frames(tracked))
                    if r["frames"] < 0.99 * expected_frames:
                        raise SystemExit(f"{name} wrote {r['frames']} frames, expected about {expected_frames}: "
                                         f"it did not process the whole file")
                runs[name].append(r)
        config_text = cfg.read_text()
    load_after = os.getloadavg()
    rows = summarize_runs(runs, args.seconds)
    edge = rows[0]
    cheapest = min(rows[1:], key=lambda r: r["cpu_s"])
    machine = f"{os.cpu_count()} cores, {cpu_name()}"
    print(f"# edge-msl locate vs ODAS odaslive, whole-process CPU ({machine}; each pinned to core 0 with "
          f"taskset -c 0; median of {args.repeat} interleaved runs)\n")
    print(f"{args.seconds:g} s, {n_channels} channels, 16 kHz int16 (the bundled example tiled); edge-msl "
          f"{_git_head()}, default settings; ODAS {odaslive}, config from matrix_creator.cfg with "
          f"{args.sst_priors}.cfg's SST priors, SSL + SST only\n")
    print(fmt_table(rows))
    print(f"\nedge-msl printed {lines} lines, the last at t_s {last_t_s:g}; ODAS wrote "
          + ", ".join(f"{r['frames']} frames ({r['frames_with_track']} with a track) with {r['program']}"
                      for r in rows[1:]) + f" (expected {expected_frames} = {args.seconds:g} s / {ODAS_HOP} samples)")
    azimuths = ", ".join(f"{b} deg ({n})" for b, n in rows[1]["track_azimuths_deg"].items())
    truth = json.loads(EXAMPLE.with_name(EXAMPLE.stem + ".truth.json").read_text())
    talkers = ", ".join(f"{t['azimuth_deg']:.0f}" for t in truth["sources"])
    print(f"ODAS track-frames by azimuth: {azimuths or 'none'} (the example's talkers: {talkers} deg)")
    print(f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    verdict = "yes" if edge["cpu_s"] <= cheapest["cpu_s"] else "no"
    print(f"\nedge-msl at most the CPU of ODAS ({cheapest['program']}, the cheaper mode): {verdict} "
          f"({edge['cpu_s']:.2f} s vs {cheapest['cpu_s']:.2f} s)")
    if args.json:
        out = {"machine": machine, "load_before": load_before, "load_after": load_after, "seconds": args.seconds,
               "repeat": args.repeat, "edge_msl": _git_head(), "odaslive": str(odaslive),
               "sst_priors": args.sst_priors,
               "edge_lines": lines, "edge_last_t_s": last_t_s, "expected_frames": expected_frames,
               "rows": rows, "edge_at_most_odas": verdict == "yes", "odas_config": config_text}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
