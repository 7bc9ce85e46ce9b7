"""edge_msl.runtime: the packaged int8 model localizes a far-field source; bad models are refused
with one-line messages; the runtime is picked in one place, logged, and TensorFlow stays out."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_msl import runtime
from edge_msl.arrays import from_dict, far_field_delays_s, get_array
from edge_msl.regions import angular_distance_deg
from edge_msl.runtime import ModelError, default_model_path, load_model

pytest.importorskip("ai_edge_litert")

REPO = Path(__file__).resolve().parents[1]
FS_HZ = 16000


def plane_wave(array, azimuth_deg, n, seed, level=0.03, sensor_noise=3e-4):
    """int16 PCM (n, n_mics) of band-limited white noise arriving as a plane wave from ``azimuth_deg``:
    exact fractional delays applied in the frequency domain (a periodic signal, so no edge effects)."""
    rng = np.random.default_rng(seed)
    f = np.fft.rfftfreq(n, 1 / FS_HZ)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[(f < 80) | (f > 6000)] = 0
    delays = far_field_delays_s(array, azimuth_deg)
    y = np.fft.irfft(spec[None, :] * np.exp(-2j * np.pi * f[None, :] * delays[:, None]), n).T
    y = y / y.std() * level + rng.standard_normal(y.shape) * sensor_noise
    return np.round(y * 32768).astype(np.int16)


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture
def copy(tmp_path):
    """A copy of the packaged model and its sidecar in tmp_path."""
    src = default_model_path()
    dst = tmp_path / "m.tflite"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    if "temporal_head" in json.loads(src.with_suffix(".json").read_text()):  # its learned head, beside it
        shutil.copy(src.with_name(src.stem + ".head.tflite"), dst.with_name("m.head.tflite"))
    return dst


def _rewrite(path: Path, blob: bytes, fix_sidecar: bool) -> None:
    path.write_bytes(blob)
    if fix_sidecar:
        side = json.loads(path.with_suffix(".json").read_text())
        side["tflite_sha256"] = hashlib.sha256(blob).hexdigest()
        side["tflite_bytes"] = len(blob)
        path.with_suffix(".json").write_text(json.dumps(side))


def test_packaged_model_is_the_default_and_describes_itself(model):
    info = model.info
    assert info.path == default_model_path("uca8-r10") and info.path.parent.name == "models"
    assert info.array.same_geometry(get_array("uca8-r10"))
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest() == info.raw["tflite_sha256"]
    assert info.sample_rate_hz == FS_HZ and info.window_samples == info.raw["input"]["shape"][1]
    assert 0 < info.threshold < 1 and info.threshold == info.raw["decode"]["threshold"]
    assert info.layout.n_regions == info.raw["output"]["shape"][1]
    assert model.runtime == "ai_edge_litert"


@pytest.mark.parametrize("azimuth_deg", np.arange(7.0, 360.0, 22.5))
def test_packaged_model_localizes_one_far_field_source(model, azimuth_deg):
    # bound: the far-field case is easy (no reverberation, one source); 5 deg leaves room for the
    # model's ~1-3 deg error and the int8 output step (sector width / 256)
    window = plane_wave(get_array("uca8-r10"), azimuth_deg, model.info.window_samples, seed=int(azimuth_deg))
    dets = model.detections(window)
    assert len(dets) == 1, dets
    assert angular_distance_deg(dets[0].azimuth_deg, azimuth_deg) < 5.0, (dets, azimuth_deg)
    assert dets[0].confidence >= model.info.threshold


def test_int16_and_float_input_agree_and_buffers_are_reused(model):
    window = plane_wave(get_array("uca8-r10"), 100.0, model.info.window_samples, seed=1)
    y16 = model.outputs(window)
    yf = model.outputs(window.astype(np.float32) / 32768.0)
    assert y16.shape == (model.info.layout.n_regions, 3) and y16.dtype == np.float32
    # normalize_window removes the level, so full-scale float and int16 PCM are the same input
    np.testing.assert_allclose(y16, yf, atol=1 / 256 + 1e-6)
    assert model.quantize(window) is model.quantize(window[::-1].copy())  # one pre-allocated input buffer
    assert np.all((y16 >= 0) & (y16 <= 1))


def test_packaged_model_equalizes_the_mics_gains(model):
    """The packaged uca8-r10 declares the equalizing input scaling: a window through mics with
    +-4 dB gain errors quantizes to nearly the same input as the same window through matched mics."""
    assert model.info.raw["input_scaling"].endswith("equalize=1)")
    window = plane_wave(get_array("uca8-r10"), 60.0, model.info.window_samples, seed=2).astype(np.float32)
    gains = 10.0 ** (np.array([-4, 3, 1, -2, 4, 0, -3, 2]) / 20.0)
    a = model.quantize(window).astype(np.int32)
    b = model.quantize(window * gains).astype(np.int32)
    assert np.abs(a - b).max() <= 1


def test_window_of_wrong_shape_is_refused(model):
    with pytest.raises(ValueError, match=r"window must have shape \(8000, 8\).*got \(8000, 6\)"):
        model.outputs(np.zeros((8000, 6), np.int16))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"^model .*nope\.tflite: file not found; .*python -m convert") as e:
        load_model(tmp_path / "nope.tflite")
    assert "\n" not in str(e.value)


def test_missing_sidecar_is_refused(copy):
    copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"m\.tflite: its parameters file m\.json is missing; keep the \.json"):
        load_model(copy)


@pytest.mark.parametrize("text,match", [
    ("{not json", r"sidecar m\.json is not valid JSON"),
    ('{"format": "something-else"}', r"has format 'something-else', expected 'edge-msl-tflite-params'"),
    ('{"format": "edge-msl-tflite-params", "version": 99}', r"sidecar version 99 is not supported"),
])
def test_invalid_sidecar_is_refused(copy, text, match):
    copy.with_suffix(".json").write_text(text)
    with pytest.raises(ModelError, match=match):
        load_model(copy)


def test_sidecar_without_a_key_names_it(copy):
    side = json.loads(copy.with_suffix(".json").read_text())
    del side["decode"]["threshold"]
    copy.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match=r"sidecar m\.json has no 'decode\.threshold'; reconvert"):
        load_model(copy)


def test_sidecar_temporal_decode_settings_are_read_and_checked(copy):
    """decode.temporal: unset keys take the defaults, a bad value is a model error naming the key
    and the fix; the retired pooling keys of older sidecars are ignored."""
    from edge_msl.temporal import DecodeSettings

    side = json.loads(copy.with_suffix(".json").read_text())
    side["decode"].pop("temporal", None)
    side["decode"].update({"pool_s": 1.0, "onset_threshold": 0.4, "pool_threshold": 0.3})  # a 0.1 sidecar
    copy.with_suffix(".json").write_text(json.dumps(side))
    assert load_model(copy).info.temporal == DecodeSettings()
    side["decode"]["temporal"] = {"miss_windows": 0}
    copy.with_suffix(".json").write_text(json.dumps(side))
    assert load_model(copy).info.temporal == DecodeSettings(miss_windows=0)
    side["decode"]["temporal"] = {"keep_threshold": 2}
    copy.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match=r"decode.keep_threshold = 2 is invalid; .*fix decode.temporal"):
        load_model(copy)


def test_sha256_mismatch_is_refused(copy):
    blob = bytearray(copy.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit in the weights: same size, still a valid flatbuffer
    copy.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match=r"sha256 \w{12}\.\.\. differs from the sidecar's \w{12}\.\.\..*copy the "
                                         r"\.tflite and its \.json from the same conversion"):
        load_model(copy)


def test_truncated_file_is_refused(copy):
    blob = copy.read_bytes()
    copy.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ModelError, match=rf"file is {len(blob) // 3} bytes but its sidecar says {len(blob)} "
                                         r"\(truncated"):
        load_model(copy)


def test_truncated_file_with_a_matching_sidecar_is_refused_by_the_interpreter(copy):
    # the sidecar was rewritten for the damaged file: the interpreter's own check must still refuse it
    blob = copy.read_bytes()
    _rewrite(copy, blob[: len(blob) // 3], fix_sidecar=True)
    with pytest.raises(ModelError, match=r"m\.tflite: ai_edge_litert cannot load it \(.+\); the file is corrupt"):
        load_model(copy)


def test_corrupt_flatbuffer_is_refused(copy):
    blob = copy.read_bytes()
    _rewrite(copy, blob[:8] + bytes(len(blob) - 8), fix_sidecar=True)
    with pytest.raises(ModelError, match=r"cannot load it \(.+\); the file is corrupt"):
        load_model(copy)
    _rewrite(copy, b"PK\x03\x04 not a model at all", fix_sidecar=True)
    with pytest.raises(ModelError, match=r"not a TFLite flatbuffer \(no TFL3 identifier\)"):
        load_model(copy)


def test_model_for_another_array_is_refused(copy):
    with pytest.raises(ModelError) as e:
        load_model(copy, array=get_array("respeaker-4mic"))
    msg = str(e.value)
    assert "trained for array 'uca8-r10' (8 mics" in msg and "configured array is 'respeaker-4mic' (4 mics" in msg
    assert "use a model converted for 'respeaker-4mic' or configure array 'uca8-r10'" in msg
    # same mics, other order: a different geometry for the network
    m = get_array("uca8-r10")
    rotated = from_dict({"name": "my-uca", "positions_m": [list(p) for p in m.positions_m[1:] + m.positions_m[:1]]})
    with pytest.raises(ModelError, match="configured array is 'my-uca' .* different geometry"):
        load_model(copy, array=rotated)
    # the same geometry under another name is the same array
    same = from_dict({"name": "my-uca", "positions_m": [list(p) for p in m.positions_m]})
    assert load_model(copy, array=same).info.array.name == "uca8-r10"


def test_sidecar_for_another_model_is_refused(copy):
    good = json.loads(copy.with_suffix(".json").read_text())
    for key, value, match in (("output", {**good["output"], "name": "not_there"},
                               r"signature 'serving_default' has no tensor 'not_there'"),
                              ("signature", "other", r"signatures \['serving_default'\] are not the sidecar's"),
                              ("window_samples", 4000, r"tensor shapes \(1, 8000, 8\) -> \(1, 16, 3\) differ")):
        copy.with_suffix(".json").write_text(json.dumps({**good, key: value}))
        with pytest.raises(ModelError, match=match):
            load_model(copy)


def test_no_packaged_model_for_an_array_names_the_packaged_ones():
    triangle = from_dict({"name": "my-triangle", "positions_m": [[0.03, 0, 0], [-0.015, 0.026, 0], [-0.015, -0.026, 0]]})
    with pytest.raises(ModelError, match=r"no packaged model for array 'my-triangle' \(packaged: .*uca8-r10"):
        load_model(array=triangle)


BOARDS = ["respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "matrix-voice", "matrix-creator", "minidsp-uma8"]


@pytest.mark.parametrize("board", BOARDS)
def test_every_board_has_a_packaged_model_that_localizes_a_far_field_source(board):
    array = get_array(board)
    m = load_model(array=array)
    assert m.info.path == default_model_path(board) and m.info.array.same_geometry(array)
    for azimuth_deg in np.arange(10.0, 360.0, 45.0):
        window = plane_wave(array, azimuth_deg, m.info.window_samples, seed=int(azimuth_deg))
        dets = m.detections(window)
        # smaller apertures resolve less than the 10 cm reference array: 8 deg instead of 5
        assert len(dets) == 1, (board, azimuth_deg, dets)
        assert angular_distance_deg(dets[0].azimuth_deg, azimuth_deg) < 8.0, (board, dets, azimuth_deg)


def test_bad_num_threads_is_refused():
    with pytest.raises(ValueError, match="num_threads must be an integer >= 1, got 0"):
        load_model(num_threads=0)


def test_runtime_picker_logs_its_choice(monkeypatch, caplog):
    import ai_edge_litert

    monkeypatch.setattr(runtime, "_RUNTIME", None)
    with caplog.at_level(logging.INFO, logger="edge_msl.runtime"):
        picked = runtime.pick_runtime()
        runtime.pick_runtime()
    assert picked.name == "ai_edge_litert" and picked.version == ai_edge_litert.__version__
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_msl.runtime"]
    assert lines == [f"TFLite runtime: ai_edge_litert {ai_edge_litert.__version__}"]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_loading_and_running_never_imports_tensorflow():
    r = _run("import sys, numpy as np\n"
             "import edge_msl.runtime as rt\n"
             "m = rt.load_model()\n"
             "m.detections(np.zeros((m.info.window_samples, m.info.array.n_mics), np.int16))\n"
             "print(m.runtime, sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ai_edge_litert", "[]"]


def test_no_runtime_installed_is_a_clear_error():
    r = _run("import sys\n"
             "for name in ('ai_edge_litert', 'tflite_runtime', 'tensorflow'): sys.modules[name] = None\n"
             "import edge_msl.runtime as rt\n"
             "try:\n    rt.load_model()\nexcept rt.ModelError as e:\n    print(e)")
    assert r.returncode == 0, r.stderr
    assert "uca8-r10.tflite: no TFLite runtime is installed (tried ai_edge_litert" in r.stdout
    assert "pip install ai-edge-litert" in r.stdout


@pytest.mark.slow  # imports TensorFlow in a subprocess (~10-20 s on 2 shared cores)
def test_falls_back_to_tensorflow_lite_with_the_same_outputs(model, tmp_path):
    pytest.importorskip("tensorflow")
    window = plane_wave(get_array("uca8-r10"), 200.0, model.info.window_samples, seed=2)
    np.save(tmp_path / "w.npy", window)
    r = _run("import sys, json, numpy as np\n"
             "sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None\n"
             "import edge_msl.runtime as rt\n"
             "m = rt.load_model()\n"
             f"w = np.load({str(tmp_path / 'w.npy')!r})\n"
             "print(m.runtime); print(json.dumps(m.outputs(w).tolist()))")
    assert r.returncode == 0, r.stderr
    name, outputs = r.stdout.strip().splitlines()[-2:]
    assert name == "tensorflow.lite"
    # same flatbuffer, same kernels: within one int8 output step of ai_edge_litert
    np.testing.assert_allclose(np.array(json.loads(outputs)), model.outputs(window), atol=1 / 256 + 1e-6)


@pytest.mark.parametrize("array", runtime.available_models())
def test_sidecar_decode_is_the_one_in_params_json(array):
    """models/<array>/params.json's ``decode`` is the source, ``python -m convert`` copies it (with ``data``
    as ``training.data``): both files agree, ``chosen_on`` is a pointer to the model card, no lab notes or
    temporary paths ship (issue 31, point 4)."""
    params = json.loads((REPO / "models" / array / "params.json").read_text())
    sidecar = json.loads((REPO / "edge_msl" / "models" / f"{array}.json").read_text())
    assert sidecar["decode"] == params["decode"]
    assert sidecar["training"] == {"data": params.get("data"), "train": params.get("train")}
    card, _, anchor = sidecar["decode"]["chosen_on"].partition("#")
    assert card == f"docs/models/{array}.md" and f"\n## {anchor.capitalize()}\n" in (REPO / card).read_text()
    strings = []

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            strings.append(v)
    walk({k: v for k, v in sidecar.items() if k != "array"})  # the array's source cites its datasheet
    assert max(map(len, strings)) <= 120 and not any("/tmp/" in s for s in strings)
