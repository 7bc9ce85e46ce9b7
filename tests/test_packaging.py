"""The package as pip installs it: the sdist carries what its tests need and builds the wheel; the wheel,
installed with pip into a clean venv and run from a directory with no checkout, locates the bundled
recording, runs the daemon on an ALSA file PCM, writes the service files for a board, and (with TensorFlow
borrowed from this environment, edge_msl still from the wheel) fine-tunes the packaged float16 weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from daemon_helpers import wait_for, write_asoundrc

REPO = Path(__file__).resolve().parents[1]
ARRAYS_WITH_MODELS = sorted(p.stem for p in (REPO / "edge_msl" / "models").glob("*.tflite")
                            if not p.name.endswith(".head.tflite"))


def _run(cmd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def _clean_env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "ALSA_"))}
    if home is not None:
        env["HOME"] = str(home)
    return env


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(sdist, wheel): the sdist built from this tree, the wheel built from the unpacked sdist."""
    pytest.importorskip("build", reason="python -m build is not installed (pip install 'edge-msl[dev]')")
    out = tmp_path_factory.mktemp("dist")
    r = _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", out, REPO], cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    (sdist,) = out.glob("edge[-_]msl-*.tar.gz")
    with tarfile.open(sdist) as t:
        t.extractall(out / "src", filter="data")
    (src,) = (out / "src").iterdir()
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src],
             cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = out.glob("edge_msl-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh venv with the wheel installed by pip with [alsa,mqtt] (dependencies from PyPI or pip's cache)."""
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable: pip cannot install the wheel's dependencies")
    d = tmp_path_factory.mktemp("venv")
    r = _run([sys.executable, "-m", "venv", d], cwd=d)
    assert r.returncode == 0, r.stderr
    r = _run([d / "bin/python", "-m", "pip", "install", "-q", f"{dist[1]}[alsa,mqtt]"], cwd=d, env=_clean_env(),
             timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_sdist_has_what_its_tests_need_and_the_wheel_the_package_data(dist):
    sdist, wheel = dist
    with tarfile.open(sdist) as t:
        names = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name and m.isfile()}
    for need in ("tests/conftest.py", "tests/daemon_helpers.py", "MANIFEST.in", "Makefile", "LICENSE",
                 "systemd/edge-msl.service", "systemd/config.toml", "edge_msl/systemd/config.toml",
                 "models/uca8-r10/model.weights.h5", "models/uca8-r10/reference.npz", "docs/examples/demo.py"):
        assert need in names, need
    for card in (REPO / "docs" / "models").glob("*.md"):  # test_readme reads their eval tables
        assert f"models/{card.stem}/eval/table.md" in names
    if (REPO / ".git").exists() and shutil.which("git"):
        tracked = _run(["git", "ls-files"], cwd=REPO).stdout.split()
        left_out = [f for f in tracked if f not in names and (REPO / f).exists() and not f.startswith(".gitignore")
                    and not (f.startswith("models/") and f.endswith("/model.weights.h5"))]
        assert not left_out, f"tracked files missing from the sdist (MANIFEST.in): {left_out[:10]}"
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        for name in ("edge-msl.service", "config.toml"):  # copies, not links
            assert z.read(f"edge_msl/systemd/{name}") == (REPO / "systemd" / name).read_bytes()
        meta = z.read(next(n for n in files if n.endswith(".dist-info/METADATA"))).decode()
    for array in ARRAYS_WITH_MODELS:
        assert {f"edge_msl/models/{array}.tflite", f"edge_msl/models/{array}.json",
                f"train_tf/float_models/{array}/model.weights.h5", f"train_tf/float_models/{array}/params.json"} <= files
    assert not [f for f in files if f.startswith(("tests/", "models/", "docs/"))]
    assert "edge_msl/examples/uca8-r10-3talkers.wav" in files
    assert "License-Expression: Apache-2.0" in meta or "License: Apache-2.0" in meta


def _requires(meta: str, machine: str, extra: str = "") -> set[str]:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment() | {"platform_machine": machine, "extra": extra}
    out = set()
    for line in meta.splitlines():
        if line.startswith("Requires-Dist: "):
            req = Requirement(line.split(": ", 1)[1])
            if req.marker is None or req.marker.evaluate(env):
                out.add(f"{req.name}{req.specifier}")
    return out


def test_each_machine_gets_a_runtime_that_has_a_wheel_for_it(dist):
    """ai-edge-litert: 64-bit x86/ARM wheels only; tflite-runtime 2.14: the armv7l wheel, built for numpy 1;
    [train]: tensorflow-cpu exists for x86_64 only, tensorflow for aarch64 (checked on PyPI in 2026-12)."""
    with zipfile.ZipFile(dist[1]) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    names = lambda reqs: {r.split("<")[0].split(">")[0].split("=")[0] for r in reqs}  # noqa: E731
    assert names(_requires(meta, "x86_64")) == {"numpy", "ai-edge-litert"}
    assert names(_requires(meta, "aarch64")) == {"numpy", "ai-edge-litert"}
    assert _requires(meta, "armv7l") >= {"tflite-runtime>=2.14", "numpy<2"}
    assert "ai-edge-litert" not in names(_requires(meta, "armv7l"))
    assert names(_requires(meta, "armv6l")) == {"numpy"}  # no runtime exists: edge-msl says so when it needs one
    assert {"tensorflow-cpu", "pyroomacoustics"} <= names(_requires(meta, "x86_64", "train"))
    assert "tensorflow" not in names(_requires(meta, "x86_64", "train"))
    arm = names(_requires(meta, "aarch64", "train"))
    assert "tensorflow" in arm and "tensorflow-cpu" not in arm


def test_no_runtime_error_names_the_fix_for_the_machine():
    from edge_msl.runtime import _runtime_fix

    assert "tflite-runtime==2.14.0" in _runtime_fix("armv7l", 32) and "numpy<2" in _runtime_fix("armv7l", 32)
    assert "tflite-runtime" in _runtime_fix("aarch64", 32)  # 32-bit Pi OS on a 64-bit kernel says aarch64
    assert "armv6" in _runtime_fix("armv6l", 32)
    assert _runtime_fix("aarch64", 64) == "pip install ai-edge-litert"


def test_packaged_float_models_are_those_of_models_dir():
    pytest.importorskip("h5py")  # comes with edge-msl[train]
    from train_tf import pack_weights

    if not any(REPO.glob("models/*/model.weights.h5")):
        pytest.skip("no float models in this tree")
    assert pack_weights.stale() == [], "run python -m train_tf.pack_weights"
    assert sorted(p.name for p in pack_weights.PACKAGED.iterdir()) == ARRAYS_WITH_MODELS


def test_packaged_float16_model_is_the_float32_one_within_float16_rounding():
    pytest.importorskip("tensorflow")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from train_tf import crosscheck, pack_weights

    src = REPO / "models" / "uca8-r10"
    if not (src / crosscheck.REFERENCE).exists():
        pytest.skip("no reference outputs in models/uca8-r10")
    model, params = crosscheck.load_model(pack_weights.PACKAGED / "uca8-r10")
    x, y_ref, _ = crosscheck.reference(src, params["model"]["window_samples"], params["model"]["n_mics"])
    err = np.abs(keras.ops.convert_to_numpy(model(x, training=False)) - y_ref)
    assert 0 < err.max() < 5e-3  # float16 weights: not bit-identical, far below the int8 model's deviation


def test_installed_wheel_locates_the_example_outside_any_checkout(venv, tmp_path):
    r = _run([venv / "bin/python", "-c", "import edge_msl, train_tf; print(edge_msl.__file__, train_tf.__file__)"],
             cwd=tmp_path, env=_clean_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert all(Path(p).is_relative_to(venv) for p in r.stdout.split()), r.stdout
    r = _run([venv / "bin/edge-msl", "locate", "example", "--truth", "example"], cwd=tmp_path,
             env=_clean_env(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(msgs) > 30 and all(m["schema"] == "edge-msl/sources-v2" for m in msgs)
    f1 = float(r.stderr.split(" f1 ")[1].split(",")[0])
    assert f1 > 0.9, r.stderr[-500:]


def test_installed_daemon_reads_an_alsa_file_pcm(venv, tmp_path):
    pytest.importorskip("alsaaudio")  # the same libasound the venv's pyalsaaudio was built against
    from edge_msl.audio_io import open_audio
    from edge_msl.api import example_path

    with open_audio(example_path()) as rd:
        audio = np.concatenate(list(rd.blocks(16000)))
    audio.astype("<i2").tofile(tmp_path / "example.raw")
    write_asoundrc(tmp_path, {"edgepkg": tmp_path / "example.raw"})
    env = _clean_env(tmp_path)
    ref = _run([venv / "bin/edge-msl", "locate", "example"], cwd=tmp_path, env=env, timeout=120)
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = subprocess.Popen([venv / "bin/edge-msl", "run", "--device", "edgepkg", "--set", "device.pace_realtime=true"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: len(out) >= 12 or proc.poll() is not None, 60)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr[-2000:]
    got = [json.loads(line) for line in out]
    want = [json.loads(line) for line in ref.stdout.splitlines()]
    assert len(got) >= 12 and got == want[:len(got)]  # the daemon on ALSA = locate on the file, window by window


def test_installed_setup_service_writes_the_board_config_and_unit(venv, tmp_path):
    env = _clean_env(tmp_path)
    exe = venv / "bin/edge-msl"
    r = _run([exe, "setup-service", "--array", "respeaker-6mic", "--dry-run"], cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    plan = json.loads(r.stdout)
    assert plan["exec_start"] == f"{exe} run --config /etc/edge-msl/config.toml" and plan["dry_run"]
    assert Path(plan["model"]).is_relative_to(venv) and plan["device"] == "hw:CARD=seeed8micvoicec,DEV=0"
    assert "systemctl enable --now edge-msl" in r.stderr
    r = _run([exe, "setup-service", "--array", "respeaker-6mic", "--mqtt-host", "broker.lan", "--prefix", tmp_path / "root"],
             cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    unit = (tmp_path / "root/etc/systemd/system/edge-msl.service").read_text()
    assert unit == (REPO / "systemd/edge-msl.service").read_text().replace(
        "ExecStart=/usr/local/bin/edge-msl ", f"ExecStart={exe} ")
    conf = tmp_path / "root/etc/edge-msl/config.toml"
    r = _run([exe, "run", "--config", conf, "--check"], cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    checked = json.loads(r.stdout)
    assert checked["array"]["name"] == "respeaker-6mic" and checked["device"]["name"] == plan["device"]
    assert checked["mqtt"]["host"] == "broker.lan" and checked["stdout"]["enabled"] is False


def _borrow_site_packages(venv: Path) -> None:
    """Make this environment's site-packages (TensorFlow, Keras, h5py, pyroomacoustics) importable in ``venv``
    after its own: a plain path in a .pth file, so this environment's editable edge_msl hook is not run."""
    import sysconfig

    (own,) = (venv / "lib").glob("python3*/site-packages")
    (own / "zz-borrowed-train.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


@pytest.mark.training  # train_tf.calibrate with TensorFlow: the training side, though it runs from the wheel
def test_installed_calibrate_finetunes_and_converts_the_packaged_float_model(venv, tmp_path):
    pytest.importorskip("tensorflow")
    _borrow_site_packages(venv)
    env = _clean_env(tmp_path)
    session = tmp_path / "session"
    make_set = f"""
import json, numpy as np
from edge_msl.api import example_path
from edge_msl.arrays import get_array
from edge_msl.audio_io import open_audio
from edge_msl.runtime import default_model_path, read_info
from train_tf import calibrate as cal

info = read_info(default_model_path("uca8-r10"))
s = cal.Session.create({str(session)!r}, get_array("uca8-r10"), info.sample_rate_hz, info.window_samples)
with open_audio(example_path()) as r:
    audio = np.concatenate(list(r.blocks(16000)))
truth = json.load(open(example_path(".truth.json")))
w, hop = info.window_samples, info.window_samples // 2
starts = range(0, len(audio) - w + 1, hop)
az = np.full((len(starts), 2), np.nan); dist = np.full((len(starts), 2), np.nan)
for i, t0 in enumerate(starts):
    on = [src for src in truth["sources"] if any(a <= t0 / 16000 and (t0 + w) / 16000 <= b for a, b in src["active_s"])]
    for k, src in enumerate(on[:2]):
        az[i, k], dist[i, k] = src["azimuth_deg"], src["distance_m"]
x = np.stack([audio[t:t + w] for t in starts])
z = np.zeros((0, 2))
np.savez(s.dir / "set.npz", train_audio=x, train_azimuth_deg=az, train_distance_m=dist, val_audio=x[:4],
         val_azimuth_deg=az[:4], val_distance_m=dist[:4], sim_audio=np.zeros((0, w, 8), np.int16),
         sim_azimuth_deg=z, sim_distance_m=z, sim_level_db=z)
print(len(x))
"""
    r = _run([venv / "bin/python", "-c", make_set], cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout) >= 10
    r = _run([venv / "bin/edge-msl", "calibrate", "finetune", "--session", session, "--epochs", "1"], cwd=tmp_path,
             env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["windows"] >= 10 and np.isfinite(out["loss"]).all()
    params = json.loads((session / "model/params.json").read_text())
    assert Path(params["calibrated"]["from"]).is_relative_to(venv)  # the packaged float16 weights, no checkout
    r = _run([venv / "bin/edge-msl", "calibrate", "convert", "--session", session], cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    tflite = json.loads(r.stdout)["model"]
    r = _run([venv / "bin/edge-msl", "locate", "example", "--model", tflite], cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) > 30
