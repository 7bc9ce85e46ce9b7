"""edge_msl.audio_io: every WAV encoding that sox writes (and FLAC through ffmpeg) reads back
to the same samples; blocks stream with bounded memory; bad files give one-line errors."""

import shutil
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from edge_msl.audio_io import AudioFileError, open_audio, write_wav
from edge_msl.stream import to_float

FS = 16000


def _signal(n=4000, channels=8, seed=0):
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(-0.5, 0.5, (n, channels)) * 32767).astype(np.int16)


def _read_all(path, block=777):
    with open_audio(path) as r:
        return r.info, np.concatenate(list(r.blocks(block)))


def test_plain_pcm16_roundtrip(tmp_path):
    x = _signal()
    write_wav(tmp_path / "a.wav", x, FS)
    info, y = _read_all(tmp_path / "a.wav")
    assert (info.sample_rate_hz, info.n_channels, info.sample_format, info.n_frames) == (FS, 8, "int16", len(x))
    assert info.duration_s == pytest.approx(len(x) / FS)
    np.testing.assert_array_equal(y, x)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
@pytest.mark.parametrize("args,fmt,tag,tol", [
    (["-b", "16"], "int16", b"\xfe\xff", 0), (["-b", "24"], "int24", b"\xfe\xff", 0),
    (["-b", "32"], "int32", b"\xfe\xff", 0), (["-b", "8"], "uint8", b"\xfe\xff", 1.0 / 128),
    (["-e", "floating-point", "-b", "32"], "float32", b"\x03\x00", 1e-6),
    (["-e", "floating-point", "-b", "64"], "float64", b"\x03\x00", 1e-6),
])
def test_sox_encodings_read_back(tmp_path, args, fmt, tag, tol):
    """sox writes WAVE_FORMAT_EXTENSIBLE (0xFFFE) for 8 integer channels and IEEE float (3)
    otherwise; Python 3.11's wave module refuses both."""
    x = _signal()
    src = tmp_path / "src.wav"
    write_wav(src, x, FS)
    dst = tmp_path / "dst.wav"
    subprocess.run(["sox", "-D", str(src), *args, str(dst)], check=True)  # -D: no dither
    assert dst.read_bytes()[20:22] == tag
    info, y = _read_all(dst)
    assert info.sample_format == fmt and info.n_channels == 8
    np.testing.assert_allclose(to_float(y), to_float(x), atol=tol + 1e-7)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize("bits", [16, 24])
def test_flac_is_decoded_by_ffmpeg_losslessly(tmp_path, bits):
    x = _signal()
    src = tmp_path / "src.wav"
    write_wav(src, x, FS)
    dst = tmp_path / "x.flac"
    codec = "s16" if bits == 16 else "s32"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-sample_fmt", codec, "-bits_per_raw_sample",
                    str(bits), str(dst)], check=True)
    info, y = _read_all(dst)
    assert info.container == "ffmpeg:flac" and info.n_channels == 8 and info.sample_rate_hz == FS
    np.testing.assert_allclose(to_float(y), to_float(x), atol=1e-7)


def test_open_ended_wav_from_a_streaming_writer_reads_to_the_end(tmp_path):
    """arecord and ffmpeg writing to a pipe leave 0xFFFFFFFF in the size fields."""
    x = _signal(n=1000, channels=2)
    p = tmp_path / "s.wav"
    write_wav(p, x, FS)
    b = bytearray(p.read_bytes())
    b[4:8] = struct.pack("<I", 0xFFFFFFFF)
    b[40:44] = struct.pack("<I", 0xFFFFFFFF)
    p.write_bytes(bytes(b))
    info, y = _read_all(p)
    assert info.n_frames is None
    np.testing.assert_array_equal(y, x)


def test_rf64_reads_its_ds64_size(tmp_path):
    x = _signal(n=500, channels=3)
    data = x.tobytes()
    fmt = struct.pack("<HHIIHH", 1, 3, FS, FS * 6, 6, 16)
    blob = (b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"ds64" + struct.pack("<IQQQI", 28, 0, len(data),
                                                                                      500, 0)
            + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + data + b"junk")
    p = tmp_path / "r.wav"
    p.write_bytes(blob)
    info, y = _read_all(p)
    assert info.container == "rf64" and info.n_frames == 500
    np.testing.assert_array_equal(y, x)


def test_long_file_streams_with_bounded_memory(tmp_path):
    x = np.zeros((16000 * 60, 8), np.int16)  # 60 s, 15 MB
    x[::97] = 1000
    p = tmp_path / "long.wav"
    write_wav(p, x, FS)
    del x
    tracemalloc.start()
    total = 0
    with open_audio(p) as r:
        for block in r.blocks(1600):
            total += len(block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == 16000 * 60
    assert peak < 2_000_000  # a few blocks, never the 15 MB file


def test_truncated_data_is_read_with_a_warning(tmp_path, caplog):
    x = _signal(n=1000, channels=2)
    p = tmp_path / "t.wav"
    write_wav(p, x, FS)
    p.write_bytes(p.read_bytes()[:44 + 4 * 600 + 3])  # 600 frames and a partial one
    info, y = _read_all(p)
    assert info.n_frames == 1000 and len(y) == 600
    np.testing.assert_array_equal(y, x[:600])
    assert "truncated" in caplog.text


@pytest.mark.parametrize("content,match", [
    (b"", "not a WAV file \\(empty file\\)"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", "truncated WAV"),
    (b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk comes before its fmt chunk"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 2, 8, FS, 0, 32, 16) + b"data\0\0\0\0",
     "unsupported WAV encoding \\(format tag 0x0002, 16 bits\\)"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 1, 8, FS, 0, 3, 16) + b"data\0\0\0\0",
     "block align 3 does not match 8 channels x 16 bits"),
])
def test_corrupt_wavs_are_one_line_errors(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioFileError, match=match) as e:
        open_audio(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value) and "; " in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioFileError, match="no such file; check the path"):
        open_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioFileError, match="not a regular file"):
        open_audio(tmp_path)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_garbage_that_is_not_wav_is_refused_via_ffmpeg(tmp_path):
    p = tmp_path / "noise.flac"
    p.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioFileError, match="ffmpeg cannot (read|decode) it"):
        open_audio(p)


@pytest.mark.parametrize("size, total", [(0x80000000, (1 << 31) + (1 << 20) + 6), (0x7FFFFF00, 1 << 20)])
def test_arecord_open_ended_pipe_reads_past_2_gib(size, total):
    """``arecord -t wav | edge-msl locate -``: arecord writes its 2 GiB file limit as the data size of an open-ended
    capture and keeps writing past it on a pipe; every byte must be read (issue 30, fault 2)."""
    import sys

    # 2 GiB + 1 MiB + 3 frames, mono 16-bit, for what arecord writes; the other placeholder needs no such length
    fmt = struct.pack("<HHIIHH", 1, 1, FS, FS * 2, 2, 16)
    header = b"RIFF" + struct.pack("<I", (size + 36) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    header += b"data" + struct.pack("<I", size)
    code = ("import sys; o = sys.stdout.buffer; o.write(%r); z = bytes(1 << 22); n = %d\n"
            "while n: k = min(n, len(z)); o.write(z[:k]); n -= k\n" % (header, total))
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    from edge_msl.audio_io import AudioReader, parse_wav_header

    info, data_bytes = parse_wav_header(writer.stdout, "<stdin>")
    assert data_bytes is None and info.n_frames is None
    reader = AudioReader.__new__(AudioReader)
    reader.path, reader._proc, reader._f, reader.info, reader._data_bytes = "<stdin>", None, writer.stdout, info, None
    frames = sum(len(b) for b in reader.blocks(1 << 20))
    writer.wait()
    assert frames * 2 == total


@pytest.mark.parametrize("rate", [4_294_960_000, 1_000_000, 4000, 1])
def test_absurd_sample_rates_are_one_line_errors(tmp_path, rate):
    """A 204-byte WAV at 4,294,960,000 Hz took 960 MB and 19 CPU s in ``edge-msl locate`` (issue 30, fault 7)."""
    p = tmp_path / "fast.wav"
    write_wav(p, _signal(n=10, channels=8), FS)
    b = bytearray(p.read_bytes())
    b[24:28] = struct.pack("<I", rate)
    p.write_bytes(bytes(b))
    with pytest.raises(AudioFileError, match=f"sample rate {rate} Hz is outside 8000..384000 Hz") as e:
        open_audio(p)
    assert "\n" not in str(e.value)
    r = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(p)], capture_output=True, text=True,
                       timeout=60)
    ours = [x for x in r.stderr.splitlines() if x.startswith("edge-msl")]
    assert r.returncode == 2 and r.stdout == "" and len(ours) == 1 and "8000..384000" in ours[0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype, tag", [("<f4", 3), ("<f8", 3)])
def test_nan_and_inf_samples_are_one_clear_line(tmp_path, bad, dtype, tag):
    """NaN/Inf in a float WAV: exit 0, multi-line numpy warnings and silently empty output before (issue 30,
    fault 14); now one line naming the sample, exit 2."""
    x = (_signal(n=FS * 2, channels=8) / 32768.0).astype(dtype)
    x[FS + 5, 3] = bad
    width = np.dtype(dtype).itemsize
    fmt = struct.pack("<HHIIHH", tag, 8, FS, FS * 8 * width, 8 * width, 8 * width)
    data = x.tobytes()
    p = tmp_path / "nan.wav"
    p.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data"
                  + struct.pack("<I", len(data)) + data)
    with pytest.raises(AudioFileError, match=f"sample {FS + 5} of channel 3") as e:
        _read_all(p, block=1000)
    assert "\n" not in str(e.value)
    r = subprocess.run([sys.executable, "-m", "edge_msl", "locate", str(p)], capture_output=True, text=True,
                       timeout=60)
    ours = [x for x in r.stderr.splitlines() if not x.startswith("INFO: Created TensorFlow")]
    assert r.returncode == 2 and len(ours) == 1 and "not a finite number" in ours[0], r.stderr
