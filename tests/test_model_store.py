"""The model store (edge_msl.model_store): where a calibrated model lives, which model the daemon runs, and
install/rollback of a model and its sidecar as one unit, without numpy or TensorFlow."""

import subprocess
import sys

import pytest

from edge_msl import model_store
from edge_msl.runtime import default_model_path


def _pair(d, name, tag):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.tflite").write_bytes(f"model {tag}".encode())
    (d / f"{name}.json").write_text(f'{{"tag": "{tag}"}}')
    return d / f"{name}.tflite"


def test_it_imports_without_numpy_or_tensorflow():
    code = ("import sys, edge_msl.model_store; "
            "print(sorted(m for m in ('numpy', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_state_directory_comes_from_systemd_else_the_default():
    assert model_store.state_dir({}) == model_store.DEFAULT_STATE_DIR
    assert model_store.state_dir({"STATE_DIRECTORY": "/a:/b"}).as_posix() == "/a"


def test_install_then_rollback_swaps_the_pair(tmp_path):
    state = tmp_path / "state"
    assert model_store.installed_model(state, "uca8-r10") == default_model_path("uca8-r10")
    with pytest.raises(model_store.ModelStoreError, match="no previous model"):
        model_store.rollback(state, "uca8-r10")
    dst = model_store.install(_pair(tmp_path / "a", "m", "a"), state, "uca8-r10")
    assert dst == model_store.calibrated_model(state, "uca8-r10") == state / "models" / "uca8-r10.tflite"
    assert model_store.installed_model(state, "uca8-r10") == dst
    model_store.install(_pair(tmp_path / "b", "m", "b"), state, "uca8-r10")
    prev = model_store.previous_model(state, "uca8-r10")
    assert dst.read_bytes() == b"model b" and prev.read_bytes() == b"model a"
    assert '"b"' in dst.with_suffix(".json").read_text() and '"a"' in prev.with_suffix(".json").read_text()
    model_store.rollback(state, "uca8-r10")
    assert dst.read_bytes() == b"model a" and prev.read_bytes() == b"model b"
    assert '"a"' in dst.with_suffix(".json").read_text()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["uca8-r10.json", "uca8-r10.previous.json",
                                                            "uca8-r10.previous.tflite", "uca8-r10.tflite"]


def test_install_refuses_a_model_without_its_sidecar(tmp_path):
    src = _pair(tmp_path / "a", "m", "a")
    src.with_suffix(".json").unlink()
    with pytest.raises(model_store.ModelStoreError, match=r"m\.json not found"):
        model_store.install(src, tmp_path / "state", "uca8-r10")
    assert not (tmp_path / "state" / "models" / "uca8-r10.tflite").exists()
