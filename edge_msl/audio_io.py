"""Read multichannel recordings block by block, so files longer than memory work.

WAV (RIFF and RF64; PCM 8/16/24/32-bit, IEEE float 32/64, WAVE_FORMAT_EXTENSIBLE) is parsed here
in the standard library's stead: Python 3.11's ``wave`` refuses float and the extensible header
that sox, ffmpeg and arecord write for more than two channels. Any other format (FLAC, ...) is
decoded by an ``ffmpeg`` process streaming WAV through a pipe. Must not load a whole file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

log = logging.getLogger("edge_msl.audio_io")

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
MIN_RATE_HZ = 8000
"""Lowest sample rate read (telephone band; below it no array aperture resolves anything)."""
MAX_RATE_HZ = 384000
"""Highest sample rate read (the fastest audio interfaces)."""
MAX_CHANNELS = 256
"""Most channels per frame read."""
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what streaming writers (ffmpeg to a pipe, sox) leave in size fields
# arecord -t wav of an open-ended capture writes its 2 GiB file limit (0x80000000, or 0x7fffff00) as the data
# size and, writing to a pipe, goes on past it; a RIFF data chunk cannot hold more, so any size from here up is a
# placeholder: read to the end of the stream
_OPEN_ENDED_FROM = 0x7FFFFF00


class AudioFileError(ValueError):
    """A recording cannot be read; ``str()`` is one line: ``<file>: <reason>; <fix>``."""

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {reason}; {fix}".replace("\n", " "))


@dataclass(frozen=True)
class AudioInfo:
    """What a recording holds, read from its header."""

    path: str
    """The file (``-`` for standard input)."""
    sample_rate_hz: int
    """Frames per second."""
    n_channels: int
    """Channels per frame (all capture channels, in the order they were recorded)."""
    sample_format: str
    """``uint8``, ``int16``, ``int24``, ``int32``, ``float32`` or ``float64`` as stored."""
    n_frames: int | None
    """Frames in the file, or None when the header does not say (a recording still being written)."""
    container: str
    """``wav``, ``rf64``, or ``ffmpeg:<codec>`` for formats decoded by ffmpeg."""

    @property
    def duration_s(self) -> float | None:
        """Length in seconds, if known."""
        return None if self.n_frames is None else self.n_frames / self.sample_rate_hz



_CONVERT_HINT = "convert it with: ffmpeg -i {path} -c:a pcm_s16le out.wav"


def _read_exact(f: BinaryIO, n: int) -> bytes:
    parts = []
    while n > 0:
        b = f.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def _skip(f: BinaryIO, n: int) -> bool:
    try:
        if f.seekable():
            f.seek(n, os.SEEK_CUR)
            return True
    except (OSError, AttributeError):
        pass
    while n > 0:  # a pipe: read and discard
        b = f.read(min(n, 1 << 16))
        if not b:
            return False
        n -= len(b)
    return True


def parse_wav_header(f: BinaryIO, path: str, container_hint: str = "wav") -> tuple[AudioInfo, int | None]:
    """Read a RIFF/RF64 header up to the start of the sample data.

    Returns the info and the data size in bytes (None when open-ended). ``f`` is left at the
    first sample; it may be a pipe.
    """
    fix_corrupt = "the file is not a complete WAV recording; record it again or " + _CONVERT_HINT.format(path=path)
    head = _read_exact(f, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        what = "empty file" if not head else "no RIFF/WAVE header"
        raise AudioFileError(path, f"not a WAV file ({what})", fix_corrupt)
    rf64 = head[:4] == b"RF64"
    ds64_data: int | None = None
    fmt = None
    while True:
        ch = _read_exact(f, 8)
        if len(ch) < 8:
            missing = "fmt and data chunks" if fmt is None else "data chunk"
            raise AudioFileError(path, f"truncated WAV: the header ends before its {missing}", fix_corrupt)
        cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
        if cid == b"ds64":
            body = _read_exact(f, size)
            if len(body) < 16:
                raise AudioFileError(path, "truncated RF64 ds64 chunk", fix_corrupt)
            ds64_data = struct.unpack("<Q", body[8:16])[0]
            if size % 2:
                _skip(f, 1)
        elif cid == b"fmt ":
            body = _read_exact(f, size)
            if size < 16:
                raise AudioFileError(path, f"WAV fmt chunk of {size} bytes is too short (16 needed)", fix_corrupt)
            if len(body) < size:
                raise AudioFileError(path, "truncated WAV: the file ends inside its fmt chunk", fix_corrupt)
            tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE:
                if len(body) < 40:
                    raise AudioFileError(path, "WAVE_FORMAT_EXTENSIBLE fmt chunk is too short", fix_corrupt)
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, align, bits)
            if size % 2:
                _skip(f, 1)
        elif cid == b"data":
            if fmt is None:
                raise AudioFileError(path, "WAV data chunk comes before its fmt chunk", fix_corrupt)
            if rf64 and size == 0xFFFFFFFF and ds64_data is not None:
                data_bytes: int | None = ds64_data
            else:
                data_bytes = None if size in _UNKNOWN_SIZES or size >= _OPEN_ENDED_FROM else size
            break
        else:
            if not _skip(f, size + (size % 2)):
                raise AudioFileError(path, f"truncated WAV: chunk {cid!r} runs past the end", fix_corrupt)
    tag, channels, rate, align, bits = fmt
    formats = {(_PCM, 8): "uint8", (_PCM, 16): "int16", (_PCM, 24): "int24", (_PCM, 32): "int32",
               (_FLOAT, 32): "float32", (_FLOAT, 64): "float64"}
    sample_format = formats.get((tag, bits))
    if sample_format is None:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format tag 0x{tag:04x}")
        raise AudioFileError(path, f"unsupported WAV encoding ({kind}, {bits} bits); readable: PCM 8/16/24/32-bit, "
                             f"float 32/64-bit", _CONVERT_HINT.format(path=path))
    if channels < 1 or rate < 1:
        raise AudioFileError(path, f"WAV header says {channels} channels at {rate} Hz", fix_corrupt)
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        # an absurd rate would size the resampler and every buffer by it (4 GHz: a GB and minutes of CPU)
        raise AudioFileError(path, f"sample rate {rate} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz",
                             "the header is corrupt, or resample it: ffmpeg -i IN -ar 16000 out.wav")
    if channels > MAX_CHANNELS:
        raise AudioFileError(path, f"{channels} channels is more than {MAX_CHANNELS}", fix_corrupt)
    if align != channels * bits // 8:
        raise AudioFileError(path, f"WAV block align {align} does not match {channels} channels x {bits} bits",
                             fix_corrupt)
    n_frames = None if data_bytes is None else data_bytes // align
    container = "rf64" if rf64 else container_hint
    return AudioInfo(path, rate, channels, sample_format, n_frames, container), data_bytes


class AudioReader:
    """An open recording: :attr:`info` from the header, :meth:`blocks` streams the samples."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._proc: subprocess.Popen | None = None
        self._f: BinaryIO
        if self.path == "-":
            self._f = sys.stdin.buffer
            self.info, self._data_bytes = parse_wav_header(self._f, "<stdin>")
            return
        p = Path(self.path)
        if not p.exists():
            raise AudioFileError(self.path, "no such file", "check the path")
        if not p.is_file():
            raise AudioFileError(self.path, "not a regular file", "give the path of a WAV or FLAC recording")
        try:
            self._f = open(p, "rb")
        except OSError as exc:
            raise AudioFileError(self.path, f"cannot open it ({exc.strerror})", "check the file's permissions") from None
        magic = self._f.read(4)
        self._f.seek(0)
        if magic in (b"RIFF", b"RF64") or len(magic) < 4:
            try:
                self.info, self._data_bytes = parse_wav_header(self._f, self.path)
            except AudioFileError:
                self._f.close()
                raise
            return
        self._f.close()
        self._open_ffmpeg(p)

    def _open_ffmpeg(self, p: Path) -> None:
        if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
            raise AudioFileError(self.path, "not a WAV file, and ffmpeg (which decodes FLAC and other formats) is not "
                                 "installed", "install ffmpeg (apt install ffmpeg) or convert the file to WAV")
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                                "stream=codec_name,sample_fmt,sample_rate,channels", "-of", "json", str(p)],
                               capture_output=True, text=True)
        try:
            stream = json.loads(probe.stdout)["streams"][0]
        except (json.JSONDecodeError, KeyError, IndexError):
            err = (probe.stderr.strip().splitlines() or ["no audio stream found"])[-1]
            raise AudioFileError(self.path, f"not a WAV file and ffmpeg cannot read it ({err})",
                                 "give a WAV or FLAC recording") from None
        sample_fmt = str(stream.get("sample_fmt", ""))
        # keep the stored resolution: 16-bit stays int16, float stays float, the rest goes to int32
        codec = "pcm_s16le" if sample_fmt.startswith("s16") else (
            "pcm_f32le" if sample_fmt.startswith(("flt", "dbl")) else "pcm_s32le")
        self._proc = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", str(p), "-map", "0:a:0", "-f", "wav",
                                       "-c:a", codec, "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._proc.stdout is not None
        self._f = self._proc.stdout
        try:
            info, self._data_bytes = parse_wav_header(self._f, self.path, f"ffmpeg:{stream.get('codec_name')}")
        except AudioFileError:
            self._fail_ffmpeg()
            raise
        # the pipe's header cannot know the length; ffprobe's duration is not exact, so leave it unknown
        self.info = info

    def _fail_ffmpeg(self) -> None:
        assert self._proc is not None
        self._proc.kill()
        _, err = self._proc.communicate()
        line = (err.decode(errors="replace").strip().splitlines() or ["decoding failed"])[-1]
        raise AudioFileError(self.path, f"ffmpeg cannot decode it ({line})", "check or re-encode the file")

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Yield arrays (n <= block_frames, n_channels) until the end of the data.

        int16/int32/float32/uint8 as stored (24-bit left-justified in int32, float64 as float32).
        A file shorter than its header says is read to its end with a warning.
        """
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames}")
        info = self.info
        width = {"uint8": 1, "int16": 2, "int24": 3, "int32": 4, "float32": 4, "float64": 8}[info.sample_format]
        align = width * info.n_channels
        remaining = self._data_bytes
        is_float = info.sample_format in ("float32", "float64")
        frame = 0
        while remaining is None or remaining > 0:
            want = block_frames * align if remaining is None else min(block_frames * align, remaining)
            raw = _read_exact(self._f, want)
            usable = len(raw) - len(raw) % align
            if usable:
                x = self._decode(raw[:usable], info.sample_format, info.n_channels)
                if is_float and not np.isfinite(x).all():
                    # NaN/Inf would poison every window they touch (numpy warnings, then no detections at all)
                    bad = np.argwhere(~np.isfinite(x))[0]
                    where = frame + int(bad[0])
                    raise AudioFileError(self.path, f"sample {where} of channel {int(bad[1])} "
                                         f"({where / info.sample_rate_hz:.3f} s) is {x[bad[0], bad[1]]} (not a "
                                         "finite number)", "the recording is corrupt; record or export it again")
                frame += len(x)
                yield x
            if remaining is not None:
                remaining -= len(raw)
            if len(raw) < want:
                if remaining is not None and remaining > 0:
                    log.warning("%s: data ends %d frames before the length its header gives (truncated "
                                "recording); read what is there", self.path, remaining // align)
                break
        if self._proc is not None:
            rc = self._proc.wait()
            if rc != 0:
                self._fail_ffmpeg()

    @staticmethod
    def _decode(raw: bytes, sample_format: str, n_channels: int) -> np.ndarray:
        if sample_format == "int24":
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
            wide = np.zeros((len(b), 4), dtype=np.uint8)
            wide[:, 1:] = b  # little-endian: the 24 bits become the top of an int32
            return wide.view("<i4").reshape(-1, n_channels).astype(np.int32)
        dtype = {"uint8": "u1", "int16": "<i2", "int32": "<i4", "float32": "<f4", "float64": "<f8"}[sample_format]
        x = np.frombuffer(raw, dtype=dtype).reshape(-1, n_channels)
        if sample_format == "float64":
            return x.astype(np.float32)
        return x.astype(x.dtype.newbyteorder("="), copy=False)

    def close(self) -> None:
        """Close the file (and stop ffmpeg, if it was decoding)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
        elif self.path != "-":
            self._f.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_audio(path: str | os.PathLike[str]) -> AudioReader:
    """Open a recording (``-`` reads a WAV stream from standard input); errors are :class:`AudioFileError`."""
    return AudioReader(path)


def write_wav(path: str | os.PathLike[str], frames: np.ndarray, sample_rate_hz: int) -> None:
    """Write int16 frames (n, channels) as a plain PCM WAV (RIFF, format tag 1)."""
    x = np.ascontiguousarray(np.asarray(frames, dtype="<i2"))
    if x.ndim != 2:
        raise ValueError(f"frames must have shape (n, channels), got {x.shape}")
    n, c = x.shape
    data = x.tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, _PCM, c, int(sample_rate_hz), int(sample_rate_hz) * 2 * c,
                                    2 * c, 16)
    header += b"data" + struct.pack("<I", len(data))
    with open(path, "wb") as f:
        f.write(header)
        f.write(data)


__all__ = ["AudioFileError", "AudioInfo", "AudioReader", "open_audio", "parse_wav_header", "write_wav"]
