"""edge-msl calibrate: SRP-PHAT self-labels from physics, clips recorded through the real ALSA API (the
``file`` plugin serving a perturbed-array stand-in room), install/rollback, and a real calibration that
must lower the DOA error on held-out two-source mixtures at positions it never recorded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon_helpers import write_asoundrc
from edge_msl import cli
from edge_msl.arrays import get_array
from edge_msl.regions import angular_distance_deg

cal = pytest.importorskip("train_tf.calibrate")
ARRAY = get_array("uca8-r10")
FS = 16000


def plane_waves(azimuths_deg, n, rng, gains=None):
    """White noise sources from far-field directions, exact fractional delays at the nominal mics."""
    freqs = np.fft.rfftfreq(n, 1.0 / FS)
    out = np.zeros((n, ARRAY.n_mics))
    for k, az in enumerate(azimuths_deg):
        u = np.array([np.cos(np.radians(az)), np.sin(np.radians(az))])
        delay = -(ARRAY.positions()[:, :2] @ u) / 343.0
        spec = np.fft.rfft(rng.standard_normal(n))
        out += (1.0 if gains is None else gains[k]) * np.fft.irfft(
            spec[:, None] * np.exp(-2j * np.pi * freqs[:, None] * delay[None, :]), n=n, axis=0)
    return np.round(out / np.abs(out).max() * 8000).astype(np.int16)


@pytest.mark.parametrize("azimuth", [0.0, 123.0, 301.5])
def test_srp_label_of_one_far_field_source(azimuth):
    label = cal.srp_label(plane_waves([azimuth], 3 * FS, np.random.default_rng(1)), ARRAY, FS)
    assert angular_distance_deg(label.azimuth_deg, azimuth) <= 1.0
    assert label.confidence >= 0.9 and label.second_peak < 0.5


def test_srp_label_rejects_two_simultaneous_sources(tmp_path):
    rng = np.random.default_rng(2)
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000)
    session.add_clip(plane_waves([40.0], 3 * FS, rng), name="one")
    session.add_clip(plane_waves([40.0, 200.0], 3 * FS, rng), name="two")
    one, two = cal.label_positions(session)
    assert one["accepted"] and angular_distance_deg(one["azimuth_deg"], 40.0) <= 1.0
    assert not two["accepted"] and "second source" in two["reason"]
    assert [p["name"] for p in cal.Session(session.dir).labelled()] == ["one"]


def test_mic_errors_are_estimated_and_undone_for_self_labels():
    """Known per-mic gain/delay/phase errors on far-field sources from 8 directions: the errors are found
    from the clips alone (self-labelled, relative to the array mean), and undoing them removes the bias
    they give SRP-PHAT with the nominal geometry."""
    rng = np.random.default_rng(5)
    true = cal.FrontEnd(tuple(rng.uniform(-2.5, 2.5, 8)), tuple(rng.uniform(-30e-6, 30e-6, 8)),
                        tuple(rng.uniform(-15, 15, 8)))
    az = (np.arange(8) * 45.0 + 17.0) % 360
    clips = [true.apply(plane_waves([a], 2 * FS, rng), FS) for a in az]
    nominal = np.array([cal.srp_label(c, ARRAY, FS).azimuth_deg for c in clips])
    labels, fe = nominal, None
    for _ in range(3):
        fe = cal.estimate_front_end(clips, labels, ARRAY, FS, start=fe)
        labels = np.array([cal.srp_label(c, ARRAY, FS, front_end=fe).azimuth_deg for c in clips])
    rel = lambda v: np.asarray(v) - np.mean(v)  # noqa: E731
    assert np.abs(rel(fe.delay_s) - rel(true.delay_s)).max() < 4e-6
    assert np.abs(rel(fe.phase_deg) - rel(true.phase_deg)).max() < 3.0
    assert np.abs(rel(fe.gain_db) - rel(true.gain_db)).max() < 0.3
    err_nominal = angular_distance_deg(nominal, az).mean()
    err = angular_distance_deg(labels, az).mean()
    assert err <= 1.0 and err < 0.5 * err_nominal, (err, err_nominal)
    # applying the estimate to ideal windows and undoing it again is the identity (what the simulated part gets)
    x = plane_waves([0.0], 8000, rng)
    back = cal.FrontEnd(tuple(-np.asarray(fe.gain_db)), tuple(-np.asarray(fe.delay_s)),
                        tuple(-np.asarray(fe.phase_deg))).apply(fe.apply(x, FS), FS)
    assert np.abs(back.astype(int) - x).max() <= 2


@pytest.fixture(scope="module")
def alsa_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("cal-alsa")
    write_asoundrc(home, {"edgecal": home / "clip.raw"})
    (home / "config.toml").write_text('array = "uca8-r10"\n[device]\nname = "edgecal"\nperiod_frames = 400\n')
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = old


def record(alsa_home, clip, session, state, *extra):
    """Serve ``clip`` through the ALSA file plugin and record it with ``edge-msl calibrate record``."""
    pytest.importorskip("alsaaudio")
    np.ascontiguousarray(np.concatenate([clip, clip[:800]]), dtype="<i2").tofile(alsa_home / "clip.raw")
    return cli.main(["calibrate", "record", "--config", str(alsa_home / "config.toml"), "--session", str(session),
                     "--state-dir", str(state), "--seconds", str(len(clip) / FS), *extra])


def test_record_through_alsa_is_bit_exact_and_self_labelled(alsa_home, tmp_path, capsys):
    room = cal.StandInRoom(ARRAY, seed=4)
    rng = np.random.default_rng(4)
    rirs = room.rirs([75.0], [1.5], [10.0])
    clip = room.render(rirs, [rng.standard_normal(2 * FS + rirs.shape[2] - 1)])
    assert record(alsa_home, clip, tmp_path / "s", tmp_path / "state") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == "record" and out["positions"] == 1 and out["label"]["accepted"]
    assert angular_distance_deg(out["label"]["azimuth_deg"], 75.0) <= 5.0
    session = cal.Session(tmp_path / "s")
    np.testing.assert_array_equal(session.load_clip(session.positions[0]), clip)
    # an entered direction wins over the estimate, which is still shown
    assert record(alsa_home, clip, tmp_path / "s", tmp_path / "state", "--azimuth-deg", "80") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"]["source"] == "entered" and out["label"]["azimuth_deg"] == 80.0
    assert angular_distance_deg(out["label"]["srp_azimuth_deg"], 75.0) <= 5.0


def test_install_keeps_the_previous_model_for_rollback(tmp_path, capsys):
    from edge_msl.runtime import default_model_path, load_model

    packaged = default_model_path("uca8-r10")
    other = tmp_path / "other" / "uca8-r10.tflite"
    other.parent.mkdir()
    # the same model with a different sidecar threshold stands in for a calibrated one
    other.write_bytes(packaged.read_bytes())
    side = json.loads(packaged.with_suffix(".json").read_text())
    side["decode"]["threshold"] = 0.77
    side.pop("temporal_head", None)  # as a calibrated model's (python -m convert writes no head)
    other.with_suffix(".json").write_text(json.dumps(side))
    state = tmp_path / "state"
    cal.install(packaged, state, "uca8-r10")
    assert not (state / "models" / "uca8-r10.previous.tflite").exists()
    cal.install(other, state, "uca8-r10")
    assert load_model(state / "models" / "uca8-r10.tflite", array=ARRAY).info.threshold == pytest.approx(0.77)
    assert cli.main(["calibrate", "--rollback", "--array", "uca8-r10", "--state-dir", str(state)]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == "rollback"
    packaged_threshold = json.loads(packaged.with_suffix(".json").read_text())["decode"]["threshold"]
    assert packaged_threshold != pytest.approx(0.77)
    assert load_model(state / "models" / "uca8-r10.tflite", array=ARRAY).info.threshold == pytest.approx(
        packaged_threshold)
    assert load_model(state / "models" / "uca8-r10.previous.tflite").info.threshold == pytest.approx(0.77)
    assert not any(p.name.startswith(".") for p in (state / "models").iterdir())  # no temp files left


def test_errors_are_one_line_with_the_fix(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "edge_msl", "calibrate", *args], capture_output=True, text=True,
                              timeout=60)

    r = run()
    assert r.returncode == 2 and r.stdout == "" and "name a step" in r.stderr
    r = run("build", "--session", str(tmp_path / "nothing"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "calibrate record" in r.stderr
    r = run("--rollback", "--array", "uca8-r10", "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "no previous model" in r.stderr
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000)
    r = run("install", "--session", str(session.dir), "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "validate" in r.stderr
    # TensorFlow hidden: the fine-tuning steps say what to install
    code = ("import sys; sys.modules['tensorflow'] = None; import importlib.util as u; "
            "u.find_spec = lambda n, *a: None if n == 'tensorflow' else __import__('importlib').machinery.PathFinder"
            ".find_spec(n); from edge_msl import cli; sys.exit(cli.main(['calibrate', 'finetune', '--session', "
            f"{str(session.dir)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "pip install 'edge-msl[train]'" in r.stderr


def test_a_bad_setting_is_the_one_settings_error_naming_key_value_and_allowed(tmp_path):
    """CalibrationSettings are read by the one settings mechanism (edge_msl.settings_check); a session.json
    with a bad setting is a CalibrationError naming the file, the key, the value and what is allowed."""
    from edge_msl.settings_check import SettingError

    with pytest.raises(SettingError) as e:
        cal.CalibrationSettings.from_dict({"decode_threshold": 1.5})
    assert (e.value.key, e.value.value, e.value.allowed) == ("settings.decode_threshold", 1.5, "a number in (0, 1)")
    with pytest.raises(SettingError, match=r"settings.epochs = 0 is invalid; allowed: an integer >= 1"):
        cal.CalibrationSettings(epochs=0)
    with pytest.raises(SettingError, match="unknown calibration settings key"):
        cal.CalibrationSettings.from_dict({"epoch": 3})
    s = cal.CalibrationSettings(train_layers=("heads",))
    assert cal.CalibrationSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000)
    session.data["settings"]["train_layers"] = []
    session.path.write_text(json.dumps(session.data))
    with pytest.raises(cal.CalibrationError, match=r"session.json: settings.train_layers = \(\) is invalid; allowed: "
                                                   "a non-empty list"):
        cal.Session(session.dir)


def test_a_bad_override_flag_is_refused_by_the_settings_check_naming_the_flag(tmp_path, capsys):
    """``--epochs 0`` (or a negative ``--simulated``) is refused before anything runs, by the session's own
    settings check: one line naming the flag, the value and what is allowed; the session is unchanged."""
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000)
    before = session.path.read_text()
    for flags, said in ((["--epochs", "0"], "--epochs 0: allowed: an integer >= 1"),
                        (["--simulated", "-3"], "--simulated -3: allowed: an integer >= 0")):
        with pytest.raises(SystemExit) as e:
            cli.main(["calibrate", "finetune", "--session", str(session.dir), *flags])
        assert e.value.code == 2 and said in capsys.readouterr().err
    assert session.path.read_text() == before


@pytest.mark.slow
def test_calibration_lowers_the_doa_error_on_heldout_mixtures(alsa_home, bank_path, tmp_path, capsys):
    """The stand-in room (perturbed gains, phases, positions, a board under the array), recorded through
    ALSA at 8 positions whose directions the user entered; ``calibrate all`` (tiny settings) holds 2 of
    them out whole, validates on them and installs only if the rule says so; on two-source mixtures at
    positions it never recorded the calibrated model's DOA error must drop and F1 must not, and on the
    recorded positions' later parts (what the earlier validation measured: memorised directions) it drops
    clearly. The benchmark has the full-size figures."""
    pytest.importorskip("tensorflow")
    from train_tf.signals import DryBank

    keras_dir = cal.default_keras_model("uca8-r10")
    if not (keras_dir / "model.weights.h5").exists():
        pytest.skip(f"{keras_dir} (the float model) is not in this checkout")
    bank = DryBank.load(bank_path)
    room = cal.StandInRoom(ARRAY, seed=11)
    rng = np.random.default_rng(11)
    az = (np.arange(8) * 45.0 + 10.0) % 360
    rirs = room.rirs(az, rng.uniform(1.0, 2.0, 8), rng.uniform(0, 15, 8))
    session, state = tmp_path / "s", tmp_path / "state"
    for p in range(8):
        dry = cal.dry_speech(bank, 4 * FS + rirs.shape[2] - 1, rng, 1)
        assert record(alsa_home, room.render(rirs[[p]], dry, level_dbfs=-30.0), session, state,
                      "--azimuth-deg", str(az[p])) == 0
    labels = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert all(angular_distance_deg(lb["srp_azimuth_deg"], a) <= 8.0 for lb, a in zip(labels, az))
    assert cli.main(["calibrate", "all", "--session", str(session), "--state-dir", str(state), "--bank",
                     str(bank_path), "--simulated", "16", "--mixtures", "60", "--epochs", "3",
                     "--keras-model", str(keras_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    val = json.loads((session / "validation.json").read_text())
    sets = val["sets"]
    # the decision is the rule applied to the positions held out whole (error, with the margin from their
    # per-position spread) and to those pooled with the recorded positions' tails (F1, recall), and the model
    # is installed exactly when better
    assert val["heldout_positions"] == ["pos-02", "pos-06"]
    settings = cal.CalibrationSettings()
    from train_tf.calibrate.validate import decision_sets

    dec = decision_sets(sets, val["per_position"], settings)
    assert dec == val["decision"] and dec["before"]["err_mean"] == sets["all"]["before"]["err_mean"]
    assert 0.0 <= dec["error_margin_deg"] <= settings.max_error_margin_deg
    assert out["better"] == cal.is_better(dec["before"], dec["after"], settings.f1_tolerance,
                                          settings.recall_tolerance, dec["error_margin_deg"])[0]
    assert out["installed"] == (str(state / "models" / "uca8-r10.tflite") if out["better"] else None)
    report = (session / "report.md").read_text()
    assert "pos-02, pos-06" in report and (session / "report.png").stat().st_size > 1000
    # the recorded positions' later parts: a clear drop (directions it learnt)
    rec = sets["recorded_mixture"]
    assert rec["after"]["err_mean"] < 0.8 * rec["before"]["err_mean"], rec
    # positions never recorded (true directions): lower error, F1 not lower
    mix, truth = cal.standin_mixtures(room, bank, 60, 8000, np.random.default_rng(99))
    before = cal._summary(cal.score_model(cal.installed_model(tmp_path / "none", ARRAY), ARRAY, mix, truth))
    after = cal._summary(cal.score_model(out["model"], ARRAY, mix, truth))
    assert after["err_mean"] < before["err_mean"], (before, after)
    assert after["f1"] >= before["f1"] - 0.02, (before, after)


def _calibrated_stand_in(tmp_path, threshold=0.77):
    from edge_msl.runtime import default_model_path

    packaged = default_model_path("uca8-r10")
    other = tmp_path / "other" / "uca8-r10.tflite"
    other.parent.mkdir(exist_ok=True)
    other.write_bytes(packaged.read_bytes())
    side = json.loads(packaged.with_suffix(".json").read_text())
    side["decode"]["threshold"] = threshold
    side.pop("temporal_head", None)  # as a calibrated model's (python -m convert writes no head)
    other.with_suffix(".json").write_text(json.dumps(side))
    return packaged, other


@pytest.mark.parametrize("fail_call", range(14))
def test_install_fails_at_any_point_and_leaves_a_working_pair(tmp_path, monkeypatch, fail_call):
    """A full disk (or any I/O error) at any copy or rename of an install leaves the model and its sidecar as they
    were: a pair the daemon loads, never the new sidecar with the old .tflite (issue 30, fault 1)."""
    import errno
    import shutil

    from edge_msl.runtime import load_model

    packaged, other = _calibrated_stand_in(tmp_path)
    (tmp_path / "x").mkdir()
    _, third = _calibrated_stand_in(tmp_path / "x", threshold=0.66)
    state = tmp_path / "state"
    cal.install(packaged, state, "uca8-r10")
    cal.install(other, state, "uca8-r10")
    models = state / "models"
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    calls = {"n": 0}

    def failing(real):
        def f(*a, **k):
            calls["n"] += 1
            if calls["n"] == fail_call + 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*a, **k)
        return f

    monkeypatch.setattr(shutil, "copyfile", failing(shutil.copyfile))
    monkeypatch.setattr(os, "replace", failing(os.replace))
    monkeypatch.setattr(os, "fsync", failing(os.fsync))
    try:
        cal.install(third, state, "uca8-r10")
    except cal.CalibrationError as exc:
        assert "unchanged" in str(exc)
        assert {p.name: p.read_bytes() for p in models.iterdir()} == before
    else:
        monkeypatch.undo()  # the fault came after the files were in place (the directory's fsync) or never
        assert load_model(models / "uca8-r10.tflite", array=ARRAY).info.threshold == pytest.approx(0.66)
        assert load_model(models / "uca8-r10.previous.tflite").info.threshold == pytest.approx(0.77)
    monkeypatch.undo()
    load_model(models / "uca8-r10.tflite", array=ARRAY)
    load_model(models / "uca8-r10.previous.tflite")
    assert not any(p.name.startswith(".") for p in models.iterdir())


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1.6 MB tmpfs: room for one model (1 MB) and its sidecar, not for a second copy."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_calibrate_install_on_a_full_disk_keeps_the_service_startable(tmp_path, small_tmpfs):
    """A real full disk: ``calibrate install`` says one line, exits 1, and the installed pair still loads."""
    from edge_msl.runtime import load_model

    packaged, other = _calibrated_stand_in(tmp_path)
    state = small_tmpfs / "state"
    cal.install(packaged, state, "uca8-r10")
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000)
    (session.dir / "validation.json").write_text(json.dumps({"better": True, "why": "test", "after": str(other)}))
    r = subprocess.run([sys.executable, "-m", "edge_msl", "calibrate", "install", "--session", str(session.dir),
                        "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "No space left" in r.stderr and "unchanged" in r.stderr
    info = load_model(state / "models" / "uca8-r10.tflite", array=ARRAY).info
    assert info.threshold == pytest.approx(json.loads(packaged.with_suffix(".json").read_text())["decode"]["threshold"])
    assert not any(p.name.startswith(".") for p in (state / "models").iterdir())


def test_a_clip_that_does_not_fit_leaves_the_session_as_it_was(tmp_path, small_tmpfs):
    """``calibrate record`` on a full disk: a traceback and a leftover .tmp before (issue 30, fault 12); now a
    CalibrationError saying so, no leftover, the session unchanged and still loadable."""
    session = cal.Session.create(small_tmpfs / "s", ARRAY, FS, 8000)
    session.add_clip(np.zeros((FS // 4, 8), np.int16), 10.0, 1.0)  # 64 kB: fits
    before = (session.dir / "session.json").read_text()
    with pytest.raises(cal.CalibrationError, match="No space left on device.*record this position again"):
        session.add_clip(np.zeros((FS * 8, 8), np.int16), 20.0, 1.0)  # 2 MB: does not
    assert (session.dir / "session.json").read_text() == before
    assert len(cal.Session(session.dir).positions) == 1
    assert sorted(p.name for p in (session.dir / "clips").iterdir()) == ["pos-00.wav"]


def test_calibration_recordings_are_private(tmp_path):
    """Recordings of the room were world-readable when calibrate ran as root (issue 30)."""
    session = cal.Session.create(tmp_path / "s", ARRAY, FS, 8000)
    session.add_clip(np.zeros((FS // 4, 8), np.int16), 10.0, 1.0)
    assert (session.dir.stat().st_mode & 0o077) == 0 and ((session.dir / "clips").stat().st_mode & 0o077) == 0
    for p in [session.dir / "session.json", *(session.dir / "clips").iterdir()]:
        assert (p.stat().st_mode & 0o077) == 0, p


def test_score_model_with_an_outputs_cache_runs_each_model_once_and_decodes_at_any_threshold():
    """The cache (benchmarks/calibrate_bench.py --rescore) gives the rows an uncached call gives, at each
    threshold, from one run of the model per set."""
    from edge_msl.runtime import default_model_path
    from train_tf.calibrate import score_model

    array = get_array("uca8-r10")
    rng = np.random.default_rng(3)
    audio = (rng.normal(0, 3000, (3, 8000, 8))).astype(np.int16)
    az = np.full((3, 4), np.nan)
    az[:, 0] = [10.0, 120.0, 250.0]
    tflite = default_model_path(array.name)
    cache: dict = {}
    for thr in (0.2, 0.5, 0.9):
        assert score_model(tflite, array, audio, az, threshold=thr, outputs_cache=cache) == \
            score_model(tflite, array, audio, az, threshold=thr)
    assert len(cache) == 1
    score_model(tflite, array, audio[:2], az[:2], outputs_cache=cache)
    assert len(cache) == 2
