"""``edge-msl locate`` and ``edge-msl info`` as a user runs them: stdout carries only schema-valid
JSON lines (also through ``| head``, from stdin and from FLAC), bad recordings and options are
one-line errors on stderr with exit code 2, --plot/--truth/--format odas/--no-track work."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_msl import cli
from edge_msl.audio_io import open_audio, write_wav
from edge_msl.pipeline import schema_path

pytest.importorskip("ai_edge_litert")
jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"
TRUTH = EXAMPLE.with_suffix(".truth.json")
N_WINDOWS = 44  # (4.8 s - 0.5 s window) / 0.1 s hop + 1


def run(*args, stdin=None, shell=None):
    cmd = shell if shell else [sys.executable, "-m", "edge_msl", *args]
    return subprocess.run(cmd, capture_output=True, timeout=120, input=stdin, shell=bool(shell),
                          executable="/bin/bash" if shell else None)


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(json.loads(Path(schema_path()).read_text()))


@pytest.fixture(scope="module")
def example_run():
    return run("locate", str(EXAMPLE))


def _lines(stdout: bytes):
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_example_prints_only_valid_json_lines(example_run, validator):
    out = example_run
    assert out.returncode == 0, out.stderr
    msgs = _lines(out.stdout)  # every line parses: nothing but JSON on stdout
    assert len(msgs) == N_WINDOWS
    for m in msgs:
        validator.validate(m)
    assert b"Traceback" not in out.stderr
    located = [s for m in msgs for s in m["sources"]]
    assert located and len({s["id"] for s in located}) == 3


def test_closed_pipe_ends_quietly():
    # a 0.01 s hop prints ~430 lines (> 64 KB, more than a pipe holds) so head really closes it early
    cmd = (f"set -o pipefail; {sys.executable} -m edge_msl locate example --hop-s 0.01 | head -n 3; "
           f"echo \"status ${{PIPESTATUS[0]}}\" >&2")
    out = run(shell=cmd)
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["schema"] == "edge-msl/sources-v2" for line in lines)
    assert b"status 0" in out.stderr
    assert b"Traceback" not in out.stderr and b"BrokenPipe" not in out.stderr


def test_example_keyword_names_the_bundled_recording_and_truth(example_run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["locate", "example", "--truth", "example"]) == 0
    cap = capsys.readouterr()
    assert cap.out.encode() == example_run.stdout
    assert "truth uca8-r10-3talkers.truth.json" in cap.err


def test_stdin_gives_the_same_lines_as_the_file(example_run):
    out = run("locate", "-", stdin=EXAMPLE.read_bytes())
    assert out.returncode == 0, out.stderr
    assert out.stdout == example_run.stdout


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_flac_gives_the_same_lines_as_wav(tmp_path, example_run):
    flac = tmp_path / "ex.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(EXAMPLE), str(flac)], check=True)
    assert flac.stat().st_size < EXAMPLE.stat().st_size
    out = run("locate", str(flac))
    assert out.returncode == 0, out.stderr
    assert out.stdout == example_run.stdout


def _example_frames():
    with open_audio(EXAMPLE) as r:
        return np.concatenate(list(r.blocks(16000)))


@pytest.mark.parametrize("make,expect", [
    ("two_channels", "2 channels at 16000 Hz: no built-in array delivers 2 channels"),
    ("rate_8k", "at 8000 Hz is below the model's 16000 Hz"),
    ("corrupt", "not a WAV file"),
    ("missing", "no such file; check the path"),
    ("truncated_header", "truncated WAV"),
])
def test_bad_recordings_are_one_line_errors_with_exit_2(tmp_path, make, expect):
    x = _example_frames()[:8000]
    p = tmp_path / f"{make}.wav"
    if make == "two_channels":
        write_wav(p, x[:, :2], 16000)
    elif make == "rate_8k":
        write_wav(p, x[::2], 8000)
    elif make == "corrupt":
        p.write_bytes(b"RIFX" + bytes(100))
    elif make == "truncated_header":
        write_wav(p, x, 16000)
        p.write_bytes(p.read_bytes()[:30])
    out = run("locate", str(p))
    assert out.returncode == 2
    assert out.stdout == b""
    err = out.stderr.decode().strip().splitlines()
    err = [line for line in err if not line.startswith("INFO: Created TensorFlow Lite")]  # the C++ runtime's note
    assert len(err) == 1 and err[0].startswith("edge-msl locate: ") and expect in err[0], err


def test_44k1_recording_is_resampled(tmp_path, capsys):
    resample_poly = pytest.importorskip("scipy.signal").resample_poly  # an independent resampler

    x = _example_frames()
    y = np.round(resample_poly(x.astype(np.float64), 441, 160, axis=0)).clip(-32768, 32767).astype(np.int16)
    p = tmp_path / "r44.wav"
    write_wav(p, y, 44100)
    assert cli.main(["locate", str(p), "--truth", str(TRUTH)]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.splitlines()) in (N_WINDOWS - 1, N_WINDOWS)
    summary = cap.err.strip().splitlines()[-1]
    recall = float(summary.split("recall ")[1].split(",")[0])
    assert recall >= 0.85


@pytest.mark.parametrize("args,expect", [
    (["--array", "no-such-array"], "unknown array 'no-such-array'"),
    (["--array", "respeaker-4mic"], "has 8 channels, array 'respeaker-4mic' expects 4"),
    (["--array", "TRI_TOML"], "no packaged model for array 'my-tri' (packaged: "),
    (["--model", "/nonexistent/m.tflite"], "model /nonexistent/m.tflite: file not found"),
    (["--hop-s", "-1"], "hop_s = -1.0 is invalid"),
    (["--threshold", "2"], "threshold = 2.0 is invalid"),
    (["--truth", "/nonexistent/t.json"], "/nonexistent/t.json: no such file"),
])
def test_bad_options_are_one_line_errors(capsys, tmp_path, args, expect):
    tri = tmp_path / "tri.toml"
    tri.write_text('[array]\nname = "my-tri"\npositions_m = [[0.03, 0.0, 0.0], [-0.015, 0.026, 0.0], '
                   '[-0.015, -0.026, 0.0]]\n')
    args = [str(tri) if a == "TRI_TOML" else a for a in args]
    assert cli.main(["locate", str(EXAMPLE), *args]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], lines


def test_custom_array_toml_with_another_channel_map(tmp_path, capsys, example_run):
    """A 10-channel device carrying the 8 mics in another order gives the same sources."""
    cmap = [9, 3, 0, 5, 7, 1, 8, 2]
    x = _example_frames()
    wide = np.zeros((len(x), 10), np.int16)
    wide[:, cmap] = x
    write_wav(tmp_path / "wide.wav", wide, 16000)
    pos = [[round(float(0.1 * np.cos(np.radians(45 * k))), 9), round(float(0.1 * np.sin(np.radians(45 * k))), 9),
            0.0] for k in range(8)]
    (tmp_path / "a.toml").write_text(f'[array]\nname = "my-wide"\npositions_m = {pos}\nchannel_map = {cmap}\n'
                                     f'n_channels = 10\n')
    from edge_msl.runtime import default_model_path

    assert cli.main(["locate", str(tmp_path / "wide.wav"), "--array", str(tmp_path / "a.toml"), "--model",
                     str(default_model_path())]) == 0
    assert capsys.readouterr().out.encode() == example_run.stdout


def test_no_track_odas_plot_and_truth(tmp_path, capsys, validator):
    assert cli.main(["locate", str(EXAMPLE), "--no-track"]) == 0
    raw = _lines(capsys.readouterr().out.encode())
    for m in raw:
        validator.validate(m)
    assert all(s["id"] is None for m in raw for s in m["sources"])

    assert cli.main(["locate", str(EXAMPLE), "--format", "odas"]) == 0
    # ODAS's multi-line frames, timeStamp from 1 (tests/test_odas.py parses them as odas_web does)
    frames = [json.loads("{" + f.strip().strip("{}") + "}") for f in capsys.readouterr().out.split("}\n{")]
    assert [f["timeStamp"] for f in frames] == list(range(1, N_WINDOWS + 1))
    assert all(len(f["src"]) >= 4 and set(f["src"][0]) == {"id", "tag", "x", "y", "z", "activity"} for f in frames)

    png = tmp_path / "p.png"
    plot = ["--plot", str(png)]
    if importlib.util.find_spec("matplotlib") is None:  # a device install: --plot names the extra, truth still scores
        assert cli.main(["locate", str(EXAMPLE), *plot]) == 2
        assert 'pip install "edge-msl[plot]"' in capsys.readouterr().err
        plot = []
    assert cli.main(["locate", str(EXAMPLE), *plot, "--truth", str(TRUTH)]) == 0
    cap = capsys.readouterr()
    assert not plot or (png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000)
    assert "truth uca8-r10-3talkers.truth.json: windows 44, recall " in cap.err
    assert "id_switches_per_turn 0.0" in cap.err


def test_info_shows_the_model_and_its_runtime(capsys):
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    for word in ("uca8-r10", "ai_edge_litert", "16000 Hz", "window 8000 samples", "16 azimuth sectors", "int8",
                 "sha256"):
        assert word in text
    assert cli.main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["runtime"] == "ai_edge_litert" and d["window_samples"] == 8000 and d["regions"]["n_regions"] == 16
    assert len(d["sha256"]) == 64 and d["input"]["dtype"] == "int8"
    assert cli.main(["info", "--array", "respeaker-6mic", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["array"]["name"] == "respeaker-6mic" and d["array"]["n_channels"] == 8 and d["array"]["n_mics"] == 6
    assert cli.main(["info", "--model", "/nonexistent/m.tflite"]) == 2
    assert "model /nonexistent/m.tflite: file not found" in capsys.readouterr().err


def test_locate_path_imports_no_scipy_or_matplotlib():
    code = ("import sys; from edge_msl import cli; cli.main(['locate', %r]); "
            "bad = [m for m in ('scipy', 'matplotlib', 'tensorflow', 'train_tf') if m in sys.modules]; "
            "print('BAD', bad, file=sys.stderr)") % str(EXAMPLE)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "BAD []" in out.stderr, out.stderr


def test_stdout_on_a_full_disk_is_one_line_and_exit_1():
    """``edge-msl locate FILE > /dev/full``: one line naming the cause, exit 1, no traceback (issue 30, fault 3)."""
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(EXAMPLE)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("edge-msl locate")]
    assert len(lines) == 1 and "No space left on device" in lines[0]


def test_odas_targets_take_the_frames_the_daemon_sends(tmp_path):
    """--odas-sst/--odas-ssl as [odas] has them: a TCP listener (locate connects as ODAS does) and files get the
    frames byte for byte as --format odas/odas-ssl prints them on stdout."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def listen():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                got.extend(data)

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    try:
        sst = run("locate", str(EXAMPLE), "--format", "odas", "--odas-sst",
                  f"socket:127.0.0.1:{server.getsockname()[1]}", "--odas-ssl", f"file:{tmp_path}/ssl.json")
        t.join(10)
    finally:
        server.close()
    ssl = run("locate", str(EXAMPLE), "--format", "odas-ssl", "--odas-sst", f"file:{tmp_path}/sst.json")
    assert sst.returncode == ssl.returncode == 0, sst.stderr.decode() + ssl.stderr.decode()
    assert sst.stdout.count(b'"timeStamp"') == ssl.stdout.count(b'"timeStamp"') == N_WINDOWS
    assert bytes(got) == (tmp_path / "sst.json").read_bytes() == sst.stdout
    assert (tmp_path / "ssl.json").read_bytes() == ssl.stdout
    bad = run("locate", str(EXAMPLE), "--odas-ssl", "tcp://host:1")
    assert bad.returncode == 2 and b"[odas] ssl" in bad.stderr and len(bad.stderr.decode().strip().splitlines()) == 1
