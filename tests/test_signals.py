"""Tests of train_tf.signals (train_tf/bank/): real TTS and decoder calls, noise spectra, the stored bank."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st
from scipy import signal as sps

from train_tf import signals as S

SR = 16000
EN_PROMPT = Path("/usr/share/asterisk/sounds/en/vm-deleted.g722")
GSM_PROMPT = Path("/usr/share/asterisk/sounds/fr/vm-deleted.gsm")  # asterisk-prompt-fr-armelle


def needs(binary: str):
    return pytest.mark.skipif(shutil.which(binary) is None, reason=f"{binary} not installed")


def band_power(x: np.ndarray, lo_hz: float, hi_hz: float, sr: int = SR) -> float:
    f, p = sps.welch(x, fs=sr, nperseg=4096)
    sel = (f >= lo_hz) & (f < hi_hz)
    return float(np.sum(p[sel]))


def tilt(kind: str, seed: int = 0) -> float:
    x = S.noise(kind, 8 * SR, np.random.default_rng(seed), SR)
    return band_power(x, 100, 200) / band_power(x, 4000, 8000)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    err = np.mean((ref.astype(np.float64) - test) ** 2)
    return 10 * np.log10(np.mean(ref.astype(np.float64) ** 2) / max(err, 1e-30))


# --------------------------------------------------------------------------- reserved paths

@pytest.mark.parametrize("path", [
    "/usr/share/asterisk/sounds/it/foo.g722",
    "/usr/share/asterisk/sounds/it_IT/foo.g722",
    "/usr/share/asterisk/sounds/ru/x.g722",
    "/usr/share/asterisk/sounds/ru_RU/x.g722",
    "/usr/share/asterisk/sounds/ru_RU",
    "/usr/share/asterisk/sounds/de/x.g722",
    "/usr/share/asterisk/sounds",
    "/usr/share/asterisk/moh/x.g722",
    "/usr/share/asterisk/moh",
    "/usr/share/doc/asterisk-moh-opsound/x.wav",
    "/usr/share/asterisk/sounds/it-menardi/x.g722",
    "/somewhere/menardi/x.wav",
    "/usr/share/codec2/raw/hts1a.raw",
    "/usr/share/doc/codec2-examples/x.raw",
])
def test_reserved_paths_refused(path):
    with pytest.raises(ValueError, match="refusing to read"):
        S.check_not_reserved(path)


@pytest.mark.parametrize("path", [
    "/usr/share/asterisk/sounds/en/vm-deleted.g722",
    "/usr/share/asterisk/sounds/en_US_f_Allison/digits/1.g722",
    "/usr/share/asterisk/sounds/es/hello.g722",
    "/usr/share/asterisk/sounds/es_MX_f_Allison/x.g722",
    "/usr/share/asterisk/sounds/fr/x.g722",
    "/usr/share/asterisk/sounds/fr_CA/x.g722",
    "/usr/share/asterisk/sounds/en/it.g722",
    "/work/runs/items/x.wav",
])
def test_allowed_paths_pass(path):
    assert S.check_not_reserved(path) == Path(path)


def test_symlink_into_reserved_dir_refused(tmp_path):
    reserved = tmp_path / "it_IT"
    reserved.mkdir()
    (reserved / "x.g722").write_bytes(b"\0" * 100)
    sounds = tmp_path / "asterisk" / "sounds"
    sounds.mkdir(parents=True)
    (sounds / "en").symlink_to(reserved)
    with pytest.raises(ValueError, match="it_IT"):
        S.check_not_reserved(sounds / "en" / "x.g722")
    with pytest.raises(ValueError, match="refusing"):
        S.decode_g722(sounds / "en" / "x.g722")


def test_asterisk_files_only_allowed_languages(tmp_path):
    sounds = tmp_path / "asterisk" / "sounds"
    for lang in ("en", "it", "ru_RU", "fr_CA"):
        (sounds / lang / "silence").mkdir(parents=True)
        (sounds / lang / "a.g722").write_bytes(b"\0" * 10)
        (sounds / lang / "silence" / "1.g722").write_bytes(b"\0" * 10)
    files = S.asterisk_files(sounds, ("en", "fr"))
    assert [(lang, p.relative_to(sounds).as_posix()) for lang, p in files] == [("en", "en/a.g722"),
                                                                               ("fr", "fr_CA/a.g722")]
    with pytest.raises(ValueError):
        S.asterisk_files(sounds, ("it",))
    with pytest.raises(ValueError, match="asterisk_langs"):
        S.BankSettings(asterisk_langs=("en", "ru"))


def test_gsm_prompts_are_listed_apart_from_g722(tmp_path):
    sounds = tmp_path / "asterisk" / "sounds"
    for lang in ("es", "es_MX_f_Allison", "it"):
        (sounds / lang).mkdir(parents=True)
        (sounds / lang / "a.g722").write_bytes(b"\0" * 10)
        (sounds / lang / "b.gsm").write_bytes(b"\0" * 33)
    gsm = S.asterisk_files(sounds, ("es",), suffix=".gsm")
    assert [p.relative_to(sounds).as_posix() for _, p in gsm] == ["es/b.gsm", "es_MX_f_Allison/b.gsm"]
    g722 = S.asterisk_files(sounds, ("es",))
    assert all(p.suffix == ".g722" for _, p in g722) and len(g722) == 2
    with pytest.raises(ValueError, match=r"bank\.asterisk_gsm_langs = \('it',\) is invalid; allowed: a list, each value 'en' or"):
        S.BankSettings(asterisk_gsm_langs=("it",))


# --------------------------------------------------------------------------- engines

@needs("espeak-ng")
def test_espeak_speaks_for_about_the_expected_time():
    text = "Please move the chair a little to the left."
    x = S.synth_espeak(text, "en-us+f3", speed_wpm=175, pitch=50, sample_rate_hz=SR)
    assert x.dtype == np.float32 and x.ndim == 1
    dur_s = len(x) / SR
    assert 1.5 < dur_s < 5.0  # 9 words at 175 wpm is about 3 s
    assert np.sqrt(np.mean(x ** 2)) > 0.01
    slow = S.synth_espeak(text, "en-us+f3", speed_wpm=120, pitch=50, sample_rate_hz=SR)
    assert len(slow) > 1.2 * len(x)
    assert np.array_equal(x, S.synth_espeak(text, "en-us+f3", 175, 50, SR))


@needs("espeak-ng")
def test_every_espeak_language_speaks():
    for lang in S.ESPEAK_LANGUAGES:
        x = S.synth_espeak("ba da", lang, 175, 50, SR)
        assert len(x) > 0.1 * SR, lang


@needs("espeak-ng")
def test_espeak_unknown_voice_is_an_error():
    with pytest.raises(RuntimeError, match="espeak-ng"):
        S.synth_espeak("hello", "xx-nonexistent", 175, 50, SR)


@needs("flite")
def test_flite_and_8khz_voice_resampled():
    for voice in ("kal", "slt"):
        x = S.synth_flite("Follow me to the kitchen.", voice, SR)
        assert x.dtype == np.float32 and 0.7 * SR < len(x) < 4 * SR
        assert np.sqrt(np.mean(x ** 2)) > 0.01


@needs("text2wave")
def test_festival_duration_stretch():
    a = S.synth_festival("Next slide, please.", SR)
    b = S.synth_festival("Next slide, please.", SR, duration_stretch=1.5)
    assert 0.5 * SR < len(a) < 4 * SR
    assert len(b) > 1.25 * len(a)


@needs("ffmpeg")
@pytest.mark.skipif(not EN_PROMPT.exists(), reason="asterisk en prompts not installed")
def test_decode_g722_real_prompt():
    x = S.decode_g722(EN_PROMPT)
    # G.722 at 64 kbit/s: 8000 bytes per second of 16 kHz audio
    expected = EN_PROMPT.stat().st_size * 2
    assert x.dtype == np.float32
    assert abs(len(x) - expected) <= 320
    assert np.sqrt(np.mean(x ** 2)) > 0.01


@needs("ffmpeg")
@pytest.mark.skipif(not GSM_PROMPT.exists(), reason="asterisk-prompt-fr-armelle not installed")
def test_decode_gsm_real_prompt_is_phone_band():
    x = S.decode_gsm(GSM_PROMPT)
    # GSM 06.10: 33-byte frames of 160 samples at 8 kHz, resampled to 16 kHz
    expected = GSM_PROMPT.stat().st_size // 33 * 320
    assert x.dtype == np.float32
    assert abs(len(x) - expected) <= 640
    assert np.sqrt(np.mean(x ** 2)) > 0.01
    assert band_power(x, 4200, 8000) < 1e-3 * band_power(x, 100, 4000)


# --------------------------------------------------------------------------- noises

def test_noise_kinds_shape_level_and_determinism():
    for kind in S.NOISE_KINDS:
        a = S.noise(kind, 12345, np.random.default_rng(7), SR)
        b = S.noise(kind, 12345, np.random.default_rng(7), SR)
        assert a.dtype == np.float32 and a.shape == (12345,), kind
        assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3), kind
        assert np.isfinite(a).all() and np.array_equal(a, b), kind
    with pytest.raises(ValueError, match="babble"):
        S.noise("babble", 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown"):
        S.noise("rain", 100, np.random.default_rng(0))


def test_spectral_tilt_pink_and_brown():
    white, pink, brown = tilt("white"), tilt("pink"), tilt("brown")
    assert white == pytest.approx(100 / 4000, rel=0.3)  # flat: ratio of bandwidths
    assert pink > 20 * white  # 1/f: one octave each, about equal power
    assert brown > 10 * pink  # 1/f^2


@pytest.mark.parametrize("seed", range(4))
def test_hum_peaks_at_mains_harmonics(seed):
    x = S.noise("hum", 4 * SR, np.random.default_rng(seed), SR)
    f, p = sps.periodogram(x, fs=SR, window="hann")
    band = (f > 20) & (f < 1100)
    top = f[band][np.argsort(p[band])[-3:]]
    assert any(all(abs(ft - round(ft / f0) * f0) < 1.0 for ft in top) for f0 in (50.0, 60.0)), top
    assert band_power(x, 20, 1050) > 50 * band_power(x, 1200, 8000)


def test_fan_and_music_have_low_frequency_energy():
    fan = S.noise("fan", 4 * SR, np.random.default_rng(1), SR)
    assert band_power(fan, 20, 3000) > band_power(fan, 4000, 8000)
    music = S.noise("music", 4 * SR, np.random.default_rng(1), SR)
    assert band_power(music, 50, 2000) > band_power(music, 4000, 8000)


def test_clicks_are_sparse():
    x = S.noise("clicks", 4 * SR, np.random.default_rng(3), SR)
    frames = np.mean(x[: len(x) // 320 * 320].reshape(-1, 320) ** 2, axis=1)
    # most 20 ms frames are near silent, a few hold the clicks
    assert np.median(frames) < 0.05 * frames.max()
    assert np.sum(frames > 0.1 * frames.max()) >= 4


# --------------------------------------------------------------------------- trimming

def test_trim_silence_cuts_gaps_and_edges():
    t = np.arange(int(0.3 * SR)) / SR
    burst = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    z = lambda s: np.zeros(int(s * SR), dtype=np.float32)  # noqa: E731
    x = np.concatenate([z(0.5), burst, z(2.0), burst, z(0.03), burst, z(1.0)])
    y = S.trim_silence(x, SR)
    # three bursts, one long gap cut to 40 ms, the 30 ms pause kept (frames are 20 ms)
    assert abs(len(y) / SR - (0.9 + 0.04 + 0.03)) < 0.045
    assert S.trim_silence(np.zeros(SR, dtype=np.float32), SR).size == 0
    quiet = np.concatenate([burst, 1e-3 * burst, burst])  # -54 dB: dropped, as a pause
    assert len(S.trim_silence(quiet, SR)) < len(quiet) - 0.2 * SR


# --------------------------------------------------------------------------- mu-law

@hyp_settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False, width=32), min_size=1, max_size=200))
def test_mulaw_round_trip_error_is_relative(values):
    y = np.array(values, dtype=np.float32)
    back = S._mulaw_decode(S._mulaw_encode(y))
    assert np.all(np.abs(back - y) <= 2e-4 + 0.03 * np.abs(y))


# --------------------------------------------------------------------------- the bank

TINY = S.BankSettings(n_espeak=3, n_flite=1, n_festival=0, max_asterisk_files=2, n_noise_each=1,
                      noise_duration_s=2.0, n_music=1, music_duration_s=2.0, seed=5, workers=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "sub" / "bank.npz"
    bank = S.build_bank(path, TINY)
    return path, bank


def test_tiny_bank_contents(tiny):
    path, bank = tiny
    s = bank.summary()
    have = {b: shutil.which(b) is not None for b in ("espeak-ng", "flite", "ffmpeg")}
    assert s["speech_synth"]["count"] == 3 * have["espeak-ng"] + have["flite"]
    if have["ffmpeg"] and EN_PROMPT.exists():
        real = [n for n, k in zip(bank.names, bank.kinds) if k == "speech_real"]
        assert len(real) == 2 and {n.split("/")[1] for n in real} == {"en", "es"}  # spread over languages
    noise_names = [n for n, k in zip(bank.names, bank.kinds) if k == "noise"]
    assert sorted(n.split("/")[1] for n in noise_names) == sorted(TINY.noise_kinds)
    assert s["music"]["count"] == 1
    assert s["total"]["count"] == len(bank)
    assert all(x.dtype == np.float32 and len(x) > 0 for x in bank.signals)
    assert list(bank.kinds) == sorted(bank.kinds, key=S.KINDS.index)
    for i in bank.indices("noise"):
        assert len(bank.signals[i]) == 2 * SR
    assert not path.with_name(f".{path.name}.tmp-{os.getpid()}").exists()


def test_save_load_round_trip(tiny):
    path, bank = tiny
    loaded = S.DryBank.load(path)
    assert loaded.names == bank.names and loaded.kinds == bank.kinds
    assert loaded.sample_rate_hz == SR
    assert loaded.content_hash == bank.content_hash
    for a, b in zip(bank.signals, loaded.signals):
        assert a.shape == b.shape
        assert snr_db(a, b) > 25  # 8-bit mu-law
        assert np.max(np.abs(b)) == pytest.approx(np.max(np.abs(a)), rel=0.05)
    meta = loaded.meta
    assert meta["content_sha256"] == bank.content_hash
    assert meta["counts"] == {k: v["count"] for k, v in bank.summary().items() if k != "total"}
    assert meta["settings"]["seed"] == 5
    # a loaded bank saves to the same content
    again = path.with_name("again.npz")
    loaded.save(again)
    assert S.DryBank.load(again).content_hash == bank.content_hash


def test_build_is_deterministic():
    small = dataclasses.replace(TINY, n_flite=0, max_asterisk_files=1, noise_kinds=("pink", "hum", "babble"))
    a = S.build_bank(None, small)
    b = S.build_bank(None, dataclasses.replace(small, workers=1))
    assert a.names == b.names and a.content_hash == b.content_hash
    c = S.build_bank(None, dataclasses.replace(small, seed=6))
    assert c.content_hash != a.content_hash


def test_missing_engine_is_skipped_not_fatal(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "flite" else real_which(name))
    s = S.BankSettings(n_espeak=0, n_flite=2, n_festival=0, max_asterisk_files=0, n_noise_each=1,
                       noise_duration_s=0.5, n_music=0, noise_kinds=("white",), workers=1)
    bank = S.build_bank(None, s)
    assert any("flite" in m for m in bank.meta["skipped"])
    assert bank.summary()["noise"]["count"] == 1


def test_segment_exact_length_unit_rms_deterministic(tiny):
    _, bank = tiny
    for i in range(len(bank)):
        for n in (100, 8000, len(bank.signals[i]) + 5000):
            a = bank.segment(i, n, np.random.default_rng(11))
            b = bank.segment(i, n, np.random.default_rng(11))
            assert a.dtype == np.float32 and a.shape == (n,)
            assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
            assert np.array_equal(a, b)


def test_segment_prefers_active_parts_and_guards_zero():
    x = np.zeros(10 * SR, dtype=np.float32)
    x[6 * SR:] = np.random.default_rng(0).standard_normal(4 * SR)
    bank = S.DryBank([x, x, np.zeros(100, np.float32)], ["a", "b", "z"], ["speech_synth", "noise", "noise"], SR)

    def active_fraction(i):
        hits = [np.mean(np.abs(bank.segment(i, SR, np.random.default_rng(s))[:: SR // 10]) > 0) for s in range(40)]
        return float(np.mean(hits))

    assert active_fraction(0) > active_fraction(1) + 0.2
    assert np.array_equal(bank.segment(2, 500, np.random.default_rng(0)), np.zeros(500, np.float32))


def test_pick_follows_weights(tiny):
    _, bank = tiny
    rng = np.random.default_rng(0)
    picks = [bank.pick(rng, {"noise": 1.0, "music": 0.0}) for _ in range(50)]
    assert {bank.kinds[i] for i in picks} == {"noise"}
    picks = [bank.pick(rng, {"noise": 1.0, "music": 1.0}) for _ in range(200)]
    assert 60 < sum(bank.kinds[i] == "music" for i in picks) < 140
    with pytest.raises(ValueError, match="unknown"):
        bank.pick(rng, {"voices": 1.0})
    assert list(bank.indices()) == list(range(len(bank)))


def test_babble_from_bank(tiny):
    _, bank = tiny
    if not len(bank.indices("speech_synth")) + len(bank.indices("speech_real")):
        pytest.skip("no speech engines")
    y = S.babble(bank, 8000, np.random.default_rng(0))
    assert y.shape == (8000,) and y.dtype == np.float32
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    empty = S.DryBank([np.ones(10, np.float32)], ["n"], ["noise"], SR)
    with pytest.raises(ValueError, match="speech"):
        S.babble(empty, 100, np.random.default_rng(0))


def test_missing_and_corrupt_files_name_the_file_and_the_fix(tiny, tmp_path):
    path, _ = tiny
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz.*python -m train_tf.signals build --out"):
        S.DryBank.load(missing)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="trunc.npz.*python -m train_tf.signals build"):
        S.DryBank.load(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        S.DryBank.load(garbage)
    # a flipped byte in the audio is caught by the content hash
    data = dict(np.load(path))
    data["codes"] = data["codes"].copy()
    data["codes"][len(data["codes"]) // 2] ^= 0xFF
    flipped = tmp_path / "flipped.npz"
    np.savez(flipped, **data)
    with pytest.raises(ValueError, match="flipped.npz.*hash"):
        S.DryBank.load(flipped)


def test_cli_info_and_errors(tiny, capsys, tmp_path):
    path, bank = tiny
    assert S.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert bank.content_hash in out and "speech_synth" in out and "minutes" in out
    assert S.main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["summary"] == bank.summary()
    assert S.main(["info", str(tmp_path / "missing.npz")]) == 1


@needs("ffmpeg")
def test_add_files_cuts_real_audio_into_pieces_and_drops_silence(tmp_path, tiny):
    import wave

    _, tiny = tiny

    sr = 16000
    t = np.arange(60 * sr) / sr
    x = np.where(t < 40, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0)
    path = tmp_path / "songs" / "tune.wav"
    path.parent.mkdir()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    bank = S.add_files(tiny, [path], "music", piece_s=20.0)
    added = [n for n in bank.names if n.startswith("file/")]
    assert added == ["file/songs/tune/000", "file/songs/tune/001"]  # the silent third piece is dropped
    assert len(bank) == len(tiny) + 2 and bank.names[:len(tiny)] == tiny.names
    i = bank.names.index("file/songs/tune/001")
    assert bank.kinds[i] == "music" and len(bank.signals[i]) == 20 * sr
    assert bank.meta["added_files"][-1]["signals"] == 2
    with pytest.raises(ValueError, match="already in the bank"):
        S.add_files(bank, [path], "music", piece_s=20.0)
    reserved = tmp_path / "asterisk-moh-opsound" / "x.wav"
    reserved.parent.mkdir()
    reserved.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="reserved"):
        S.add_files(None, [reserved], "music")
    with pytest.raises(ValueError, match="kind"):
        S.add_files(None, [path], "jazz")

    # capping only the added pieces keeps every generated signal; the complement is the rest
    more = tmp_path / "songs" / "other.wav"
    with wave.open(str(more), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((0.3 * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2").tobytes())
    bank = S.add_files(bank, [more], "music", piece_s=20.0)
    pieces = {n for n in bank.names if n.startswith("file/")}
    assert len(pieces) == 5
    capped = S.limit_minutes(bank, {"music": 0.7}, files_only=True)
    rest = S.limit_minutes(bank, {"music": 0.7}, files_only=True, complement=True)
    generated = [n for n in bank.names if not n.startswith("file/")]
    for part in (capped, rest):
        assert [n for n in part.names if not n.startswith("file/")] == generated
    kept = {n for n in capped.names if n.startswith("file/")}
    left = {n for n in rest.names if n.startswith("file/")}
    assert len(kept) == 2 and kept | left == pieces and not kept & left  # 2 x 20 s fit in 0.7 min
    assert capped.meta["limited"]["files_only"] and rest.meta["limited"]["complement"]
