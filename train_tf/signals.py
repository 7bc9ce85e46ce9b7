"""Dry source signals for the room simulator: synthetic and real speech, noises and music.

Builds, stores (8-bit mu-law .npz) and serves excerpts of a bank of mono dry signals. It must
never read the reserved packages in ``RESERVED``; every path read goes through
``check_not_reserved``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import signal as sps

log = logging.getLogger(__name__)

RESERVED = ("asterisk-core-sounds-it", "asterisk-core-sounds-ru", "asterisk-prompt-it-menardi",
            "asterisk-moh-opsound", "codec2-examples")
"""Packages whose audio is held out (kept for evaluation or not ours to train on)."""

KINDS = ("speech_synth", "speech_real", "noise", "music")
"""Kinds of signal a bank holds."""

SPEECH_KINDS = ("speech_synth", "speech_real")
NOISE_KINDS = ("white", "pink", "brown", "hum", "fan", "clicks", "music")
"""Kinds that ``noise`` makes without a bank ("babble" needs one: see ``babble``)."""

ASTERISK_ROOT = "/usr/share/asterisk/sounds"
ALLOWED_ASTERISK_LANGS = ("en", "es", "fr")
MU = 255
FRAME_S = 0.02
REBUILD_HINT = "python -m train_tf.signals build --out {path}"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------- reserved paths

_LANG_DIR_RE = re.compile(r"^(it|ru)([_.-].*)?$", re.IGNORECASE)
_ALLOWED_LANG_RE = re.compile(r"^(en|es|fr)([_-].*)?$", re.IGNORECASE)
_RESERVED_SUBSTRINGS = tuple(RESERVED) + ("menardi", "codec2", "opsound")


def _reserved_reason(path: Path) -> str | None:
    text = path.as_posix().lower()
    for marker in _RESERVED_SUBSTRINGS:
        if marker in text:
            return f"it contains {marker!r}"
    parts = [p for p in path.parts if p not in ("/", "")]
    # The last part is only a directory name when it has no suffix (a file may be "it.g722").
    dir_parts = parts if not Path(parts[-1] if parts else "").suffix else parts[:-1]
    for p in parts:
        low = p.lower()
        if low == "moh" or low.startswith(("moh-", "moh_")) or "-moh" in low:
            return "it is a music-on-hold directory"
    for p in dir_parts:
        if _LANG_DIR_RE.match(p):
            return f"{p!r} is an Italian or Russian language directory"
    lower = [p.lower() for p in parts]
    for i, p in enumerate(lower[:-1]):
        if p == "sounds" and "asterisk" in lower[:i]:
            lang = parts[i + 1]
            if not _ALLOWED_LANG_RE.match(lang):
                return f"asterisk language directory {lang!r} is not one of en*, es*, fr*"
            return None
    if lower and lower[-1] == "sounds" and "asterisk" in lower:
        return "it is the root of all asterisk languages (name an en*, es* or fr* directory)"
    return None


def check_not_reserved(path: str | os.PathLike[str]) -> Path:
    """Raise ValueError if ``path`` (or what it resolves to) belongs to a reserved package.

    Returns the path unchanged as a ``Path``. Only en*, es* and fr* asterisk sound
    directories pass; Italian/Russian language directories, music on hold, Menardi prompts
    and codec2 samples never do, whatever symlinks lead there.
    """
    p = Path(path)
    for candidate in (p.absolute(), Path(os.path.realpath(p))):
        reason = _reserved_reason(candidate)
        if reason:
            raise ValueError(f"refusing to read {p}: reserved audio ({reason}); only asterisk en/es/fr may be used")
    return p


# --------------------------------------------------------------------------- texts

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Good morning, everyone, let's get started.",
        "Can you hear me at the back of the room?",
        "The robot is waiting by the door.",
        "Please move the chair a little to the left.",
        "Who is speaking right now?",
        "I think the meeting starts at half past ten.",
        "Turn around and face the window.",
        "My battery is almost empty, I need to charge.",
        "Could somebody close the door, please?",
        "Let's take a short break and come back in five minutes.",
        "Hello, my name is Robin. How can I help you today?",
        "The projector is not working again.",
        "Follow me to the kitchen.",
        "Stop.",
        "Yes, that sounds good to me.",
        "No, I disagree with the second point.",
        "Where did you put the remote control?",
        "The coffee machine on the third floor is broken.",
        "Next slide, please.",
        "We should finish the report before Friday.",
        "Excuse me, is this seat taken?",
        "I'll send you the notes after the call.",
        "Watch out, there's a box on the floor.",
        "Can you repeat the last number?",
        "Seven, four, two, nine, one.",
        "Thank you all for coming.",
        "The temperature in this room is twenty one degrees.",
        "Please speak one at a time.",
        "Is anybody there?",
        "Go to the charging station and wait.",
        "I'm not sure I understood the question.",
        "Let me check my calendar and get back to you.",
        "The lights are too bright, can we dim them a bit?",
        "Come closer so I can see you.",
        "Our budget for next year is still under discussion.",
        "Raise your hand if you have a question.",
        "The robot turned left and stopped in front of the table.",
        "Okay, let's vote on it.",
        "I've been waiting here for almost an hour.",
        "Welcome to the lab, please sign in at the front desk.",
        "Somebody left an umbrella in the meeting room.",
        "Hey, over here!",
    ),
    "es": (
        "Buenos días a todos, vamos a empezar.",
        "¿Me oyes bien desde ahí atrás?",
        "El robot está esperando junto a la puerta.",
        "Por favor, cierra la ventana.",
        "La reunión empieza a las diez y media.",
        "No estoy de acuerdo con esa idea.",
        "¿Dónde está el mando a distancia?",
        "Gracias por venir, hasta mañana.",
    ),
    "fr": (
        "Bonjour à tous, on commence la réunion.",
        "Est-ce que vous m'entendez au fond de la salle ?",
        "Le robot attend devant la porte.",
        "Pouvez-vous fermer la fenêtre, s'il vous plaît ?",
        "La batterie est presque vide.",
        "Je ne suis pas sûr d'avoir bien compris.",
        "Faisons une petite pause.",
        "Merci à tous et bonne journée.",
    ),
    "de": (
        "Guten Morgen zusammen, fangen wir an.",
        "Können Sie mich hinten im Raum hören?",
        "Der Roboter wartet an der Tür.",
        "Bitte mach das Fenster zu.",
        "Die Besprechung beginnt um halb elf.",
        "Das sehe ich ganz anders.",
        "Wo ist die Fernbedienung?",
        "Vielen Dank und bis morgen.",
    ),
    "it": (
        "Buongiorno a tutti, cominciamo.",
        "Mi sentite in fondo alla sala?",
        "Il robot aspetta vicino alla porta.",
        "Per favore, chiudi la finestra.",
        "La riunione comincia alle dieci e mezza.",
        "Non sono d'accordo.",
        "Dov'è il telecomando?",
        "Grazie a tutti, a domani.",
    ),
    "pt": (
        "Bom dia a todos, vamos começar.",
        "Vocês me ouvem aí atrás?",
        "O robô está à espera junto à porta.",
        "Por favor, feche a janela.",
        "A reunião começa às dez e meia.",
        "Não concordo com essa proposta.",
        "Onde está o controle remoto?",
        "Obrigado a todos, até amanhã.",
    ),
    "nl": (
        "Goedemorgen allemaal, laten we beginnen.",
        "Kunnen jullie me achterin horen?",
        "De robot wacht bij de deur.",
        "Doe het raam even dicht, alsjeblieft.",
        "De vergadering begint om half elf.",
        "Daar ben ik het niet mee eens.",
        "Waar is de afstandsbediening?",
        "Bedankt allemaal, tot morgen.",
    ),
}
"""Everyday meeting-room and robot sentences per language (keys are espeak language prefixes)."""

_ONSETS = ("", "", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "ch", "sh", "br", "tr", "pl", "st", "gr", "kl", "fr", "sp")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ee", "oa", "ie")
_CODAS = ("", "", "", "", "n", "m", "r", "s", "l", "t", "k", "nd", "st", "ng")


def pseudo_words(rng: np.random.Generator, n_words: int | None = None) -> str:
    """A random sentence of pronounceable nonsense words (unlimited prosody for espeak)."""
    if n_words is None:
        n_words = int(rng.integers(2, 13))
    words = []
    for i in range(n_words):
        n_syl = int(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))
        word = "".join(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) + str(rng.choice(_CODAS))
                       for _ in range(n_syl))
        if i < n_words - 1 and rng.random() < 0.15:
            word += ","
        words.append(word)
    text = " ".join(words)
    return text[0].upper() + text[1:] + str(rng.choice([".", ".", ".", "?", "!"]))


# --------------------------------------------------------------------------- TTS engines

ESPEAK_LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc", "en-029",
                    "es", "es-419", "fr-fr", "fr-be", "de", "it", "pt", "pt-br", "nl", "pl", "sv", "da",
                    "nb", "cs", "ro", "hi", "tr", "el")
"""espeak-ng language voices used for synthetic speech (25 variants)."""

ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
                   "croak", "whisper", "klatt", "klatt2", "klatt3", "adam", "Andy", "Annie", "aunty",
                   "boris", "david", "ed", "linda", "max", "michel", "norbert", "steph", "travis",
                   "victor", "grandma", "grandpa", "Alicia", "Andrea")
"""espeak-ng voice variants ("" = the language's own voice); filtered by what is installed."""

FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
"""General-domain flite voices (awb_time only speaks the time)."""
_FLITE_FEMALE = ("slt",)


@functools.lru_cache(maxsize=None)
def espeak_variants() -> tuple[str, ...]:
    """The ``ESPEAK_VARIANTS`` that the installed espeak-ng knows."""
    try:
        out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ("",)
    files = {line.split()[4].split("/", 1)[1] for line in out.splitlines()[1:]
             if len(line.split()) >= 5 and line.split()[4].startswith("!v/")}
    return tuple(v for v in ESPEAK_VARIANTS if v == "" or v in files)


@functools.lru_cache(maxsize=None)
def flite_voices() -> tuple[str, ...]:
    """The ``FLITE_VOICES`` that the installed flite has."""
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    have = set(out.replace(":", " ").split())
    return tuple(v for v in FLITE_VOICES if v in have)


def _wav_to_float(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        sr = w.getframerate()
        n_ch = w.getnchannels()
        width = w.getsampwidth()
        # espeak-ng --stdout writes a placeholder length, so read whatever is there.
        raw = w.readframes(w.getnframes())
    raw = raw[: len(raw) // (width * n_ch) * (width * n_ch)]
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"unsupported WAV sample width {width}")
    if n_ch > 1:
        x = x.reshape(-1, n_ch).mean(axis=1)
    return x, sr


def resample(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling to ``to_hz`` (float32)."""
    if from_hz == to_hz or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(from_hz), int(to_hz))
    return sps.resample_poly(np.asarray(x, dtype=np.float64), int(to_hz) // g, int(from_hz) // g).astype(np.float32)


def _run(cmd: list[str], stdin: bytes | None = None, timeout_s: float = 120.0) -> bytes:
    try:
        res = subprocess.run(cmd, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                             capture_output=True, timeout=timeout_s)
    except FileNotFoundError as e:
        raise RuntimeError(f"{cmd[0]} is not installed") from e
    if res.returncode != 0:
        msg = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"{cmd[0]} failed (exit {res.returncode}): {msg[-1] if msg else 'no message'}")
    return res.stdout


def synth_espeak(text: str, voice: str = "en", speed_wpm: int = 175, pitch: int = 50,
                 sample_rate_hz: int = 16000) -> np.ndarray:
    """Speak ``text`` with espeak-ng (``voice`` like "en-us+f3"), float32 mono at ``sample_rate_hz``."""
    data = _run(["espeak-ng", "--stdout", "-v", voice, "-s", str(int(speed_wpm)), "-p", str(int(pitch)), text])
    if not data:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice!r} (unknown voice?)")
    x, sr = _wav_to_float(data)
    if len(x) == 0:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice!r}")
    return resample(x, sr, sample_rate_hz)


def synth_flite(text: str, voice: str = "slt", sample_rate_hz: int = 16000, duration_stretch: float = 1.0,
                f0_mean_hz: float | None = None) -> np.ndarray:
    """Speak ``text`` with flite voice ``voice``, float32 mono at ``sample_rate_hz``."""
    with tempfile.TemporaryDirectory(prefix="flite-") as d:
        out = os.path.join(d, "out.wav")
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.3f}"]
        if f0_mean_hz is not None:
            cmd += ["--setf", f"int_f0_target_mean={f0_mean_hz:.1f}"]
        _run(cmd + ["-t", text, "-o", out])
        with open(out, "rb") as f:
            x, sr = _wav_to_float(f.read())
    if len(x) == 0:
        raise RuntimeError(f"flite produced no audio for voice {voice!r}")
    return resample(x, sr, sample_rate_hz)


def synth_festival(text: str, sample_rate_hz: int = 16000, duration_stretch: float = 1.0,
                   f0_mean_hz: float | None = None, f0_std_hz: float = 20.0) -> np.ndarray:
    """Speak ``text`` with festival's default voice (``text2wave``), float32 mono at ``sample_rate_hz``."""
    lisp = f"(Parameter.set 'Duration_Stretch {duration_stretch:.3f})"
    if f0_mean_hz is not None:
        # kal_diphone's linear-regression intonation model; its model_* values are the voice's own.
        lisp = (f"(begin {lisp} (set! int_lr_params '((target_f0_mean {f0_mean_hz:.1f}) "
                f"(target_f0_std {f0_std_hz:.1f}) (model_f0_mean 170) (model_f0_std 34))))")
    with tempfile.TemporaryDirectory(prefix="festival-") as d:
        txt = os.path.join(d, "in.txt")
        out = os.path.join(d, "out.wav")
        with open(txt, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        _run(["text2wave", "-F", str(int(sample_rate_hz)), "-eval", lisp, "-o", out, txt])
        with open(out, "rb") as f:
            x, sr = _wav_to_float(f.read())
    if len(x) == 0:
        raise RuntimeError("festival produced no audio")
    return resample(x, sr, sample_rate_hz)


def decode_g722(path: str | os.PathLike[str], sample_rate_hz: int = 16000) -> np.ndarray:
    """Decode a raw G.722 file (asterisk prompt, 16 kHz) with ffmpeg; float32 mono."""
    check_not_reserved(path)
    data = _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "g722", "-i", os.fspath(path),
                 "-ar", str(int(sample_rate_hz)), "-ac", "1", "-f", "s16le", "-"])
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


def decode_gsm(path: str | os.PathLike[str], sample_rate_hz: int = 16000) -> np.ndarray:
    """Decode a raw GSM 06.10 file (asterisk prompt, 8 kHz phone band) with ffmpeg; float32 mono,
    resampled to ``sample_rate_hz`` (nothing above 4 kHz)."""
    check_not_reserved(path)
    data = _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "gsm", "-i", os.fspath(path),
                 "-ac", "1", "-f", "s16le", "-"])
    x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return resample(x, 8000, sample_rate_hz)


def decode_audio_file(path: str | os.PathLike[str], sample_rate_hz: int = 16000) -> np.ndarray:
    """Decode any audio file ffmpeg reads (ogg, flac, mp3, wav...) to float32 mono at ``sample_rate_hz``."""
    check_not_reserved(path)
    data = _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", os.fspath(path),
                 "-ac", "1", "-ar", str(int(sample_rate_hz)), "-f", "s16le", "-"])
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


def add_files(bank: DryBank | None, paths: Sequence[str | os.PathLike[str]], kind: str, piece_s: float = 20.0,
              min_rms_db: float = -50.0, sample_rate_hz: int = 16000) -> DryBank:
    """``bank`` (or an empty one) plus the audio files at ``paths`` as signals of ``kind``, each cut
    into pieces of ``piece_s`` seconds (nearly silent pieces, below ``min_rms_db`` dBFS, dropped);
    names are ``file/<parent>/<stem>/<piece>``. Reserved packages are refused like everywhere."""
    if kind not in KINDS:
        raise ValueError(f"unknown signal kind {kind!r}; allowed: {', '.join(KINDS)}")
    if piece_s <= 0:
        raise ValueError(f"piece_s must be > 0, got {piece_s}")
    sr = bank.sample_rate_hz if bank is not None else int(sample_rate_hz)
    signals = list(bank.signals) if bank is not None else []
    names = list(bank.names) if bank is not None else []
    kinds = list(bank.kinds) if bank is not None else []
    n = int(round(piece_s * sr))
    added = []
    for path in paths:
        path = Path(path)
        x = decode_audio_file(path, sr)
        for i in range(0, max(1, len(x) - n // 4), n):  # a last piece shorter than a quarter is dropped
            piece = x[i:i + n]
            if len(piece) == 0 or 20 * np.log10(np.sqrt(np.mean(piece.astype(np.float64) ** 2)) + 1e-12) < min_rms_db:
                continue
            name = f"file/{path.parent.name}/{path.stem}/{i // n:03d}"
            if name in names:
                raise ValueError(f"signal {name!r} is already in the bank (the same file twice?)")
            signals.append(piece)
            names.append(name)
            kinds.append(kind)
            added.append(name)
    if not added:
        raise ValueError(f"no audio added from {len(paths)} file(s): all silent or empty")
    meta = dict(bank.meta) if bank is not None else {}
    meta.setdefault("added_files", []).append({"kind": kind, "piece_s": piece_s, "files": [str(p) for p in paths],
                                               "signals": len(added)})
    return DryBank(signals, names, kinds, sr, meta)


# --------------------------------------------------------------------------- trimming

def _frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    n_frames = max(1, -(-len(x) // frame))
    buf = np.zeros(n_frames * frame, dtype=np.float64)
    buf[: len(x)] = x
    return np.mean(buf.reshape(n_frames, frame) ** 2, axis=1)


def _power_db(p: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, 1e-20))


def trim_silence(x: np.ndarray, sample_rate_hz: int = 16000, threshold_db: float = 35.0,
                 max_pause_s: float = 0.04) -> np.ndarray:
    """Drop quiet 20 ms frames: keep those within ``threshold_db`` of the loudest frame.

    Leading and trailing quiet frames go; pauses inside longer than ``max_pause_s`` are cut
    to ``max_pause_s`` (half from each side of the pause). Splices get a 2 ms fade. An
    all-zero input gives an empty array.
    """
    x = np.asarray(x, dtype=np.float32)
    frame = int(round(FRAME_S * sample_rate_hz))
    if len(x) == 0:
        return x.copy()
    power = _frame_power(x, frame)
    if power.max() <= 0.0:
        return x[:0].copy()
    keep = _power_db(power) >= _power_db(power.max()) - threshold_db
    loud = np.flatnonzero(keep)
    first, last = int(loud[0]), int(loud[-1])
    max_pause = int(round(max_pause_s / FRAME_S))
    head = max_pause // 2
    tail = max_pause - head
    out_mask = np.zeros_like(keep)
    out_mask[first:last + 1] = True
    edges = np.diff(np.concatenate([[1], keep[first:last + 1].astype(np.int8), [1]]))
    gap_starts = np.flatnonzero(edges == -1) + first
    gap_ends = np.flatnonzero(edges == 1) + first
    for a, b in zip(gap_starts, gap_ends):
        if b - a > max_pause:
            out_mask[a + head:b - tail] = False
    # Runs of kept frames become sample ranges, joined with short fades.
    edges = np.diff(np.concatenate([[0], out_mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1) * frame
    ends = np.minimum(np.flatnonzero(edges == -1) * frame, len(x))
    fade = max(1, int(0.002 * sample_rate_hz))
    pieces = []
    for a, b in zip(starts, ends):
        piece = x[a:b].copy()
        f = min(fade, len(piece) // 2)
        if f > 0:
            ramp = np.sin(0.5 * np.pi * (np.arange(f) + 0.5) / f).astype(np.float32)
            if a > 0:
                piece[:f] *= ramp
            if b < len(x):
                piece[-f:] *= ramp[::-1]
        pieces.append(piece)
    return np.concatenate(pieces) if pieces else x[:0].copy()


# --------------------------------------------------------------------------- noises and music

def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if rms < 1e-12:
        return np.zeros(len(x), dtype=np.float32)
    return (x / rms).astype(np.float32)


def _colored(n: int, rng: np.random.Generator, exponent: float, sample_rate_hz: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    # Flat below 20 Hz so brown noise does not turn into a slow drift.
    spec *= np.maximum(f, 20.0) ** (-exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _hum(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    f0 = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / sr
    k = np.arange(1, int(1000.0 // f0) + 1)
    amp = rng.uniform(0.05, 1.0, size=len(k)) * k ** (-rng.uniform(0.3, 1.2))
    amp[1] *= rng.uniform(1.0, 3.0)  # transformer hum is often strongest at twice the mains frequency
    if rng.random() < 0.5:
        amp[1::2] *= rng.uniform(0.1, 0.6)  # odd harmonics dominate (rectifiers, saturated cores)
    phase = rng.uniform(0, 2 * np.pi, size=len(k))
    x = np.zeros(n)
    for kk, a, ph in zip(k, amp, phase):
        x += a * np.sin(2 * np.pi * kk * f0 * t + ph)
    x = _unit_rms(x).astype(np.float64)
    return x + rng.standard_normal(n) * 10 ** (-rng.uniform(25, 40) / 20)


def _slow_envelope(n: int, rng: np.random.Generator, sr: int, rate_hz: float, depth: float) -> np.ndarray:
    t = np.arange(n) / sr
    env = 1.0 + depth * np.sin(2 * np.pi * rate_hz * t + rng.uniform(0, 2 * np.pi))
    # plus a random wander, about one knot per second
    n_knots = max(2, int(n / sr) + 2)
    knots = rng.uniform(-depth / 2, depth / 2, size=n_knots)
    env += np.interp(np.linspace(0, n_knots - 1, n), np.arange(n_knots), knots)
    return np.maximum(env, 0.05)


def _fan(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    nyq = sr / 2
    lo = rng.uniform(20.0, 100.0)
    hi = min(rng.uniform(300.0, 3000.0), 0.9 * nyq)
    sos = sps.butter(2, [lo / nyq, hi / nyq], btype="band", output="sos")
    broad = _unit_rms(sps.sosfilt(sos, rng.standard_normal(n))).astype(np.float64)
    broad *= _slow_envelope(n, rng, sr, rng.uniform(0.05, 1.0), rng.uniform(0.05, 0.3))
    f_blade = rng.uniform(50.0, 300.0)
    t = np.arange(n) / sr
    wobble = 1.0 + 0.005 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f_blade * wobble) / sr
    tones = np.zeros(n)
    for h in range(1, 4):
        if h * f_blade < 0.45 * sr:
            tones += rng.uniform(0.2, 1.0) / h * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    tone_db = rng.uniform(-12.0, 0.0)
    return broad + _unit_rms(tones) * 10 ** (tone_db / 20)


def _clicks(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    out = rng.standard_normal(n) * 1e-3  # a faint floor so an excerpt between clicks is not all zero
    rate_hz = rng.uniform(3.0, 10.0)
    n_keys = int(rng.integers(2, 5))
    nyq = sr / 2
    streams = [np.zeros(n) for _ in range(n_keys)]
    t = rng.uniform(0, 0.3)
    while t < n / sr:
        key = int(rng.integers(n_keys))
        amp = rng.uniform(0.3, 1.0)
        for delay, scale in ((0.0, 1.0), (rng.uniform(0.06, 0.14), rng.uniform(0.2, 0.6))):
            if delay > 0 and rng.random() < 0.5:
                continue  # key release click only sometimes
            start = int((t + delay) * sr)
            length = int(rng.uniform(0.002, 0.012) * sr)
            if start + length >= n or length < 4:
                continue
            env = np.exp(-np.arange(length) / (length / 4.0))
            streams[key][start:start + length] += amp * scale * env * rng.standard_normal(length)
        # typing comes in words: short gaps within, longer pauses between
        t += rng.gamma(2.0, 1.0 / (2.0 * rate_hz)) + (rng.uniform(0.2, 0.8) if rng.random() < 0.15 else 0.0)
    for s in streams:
        fc = rng.uniform(800.0, min(5000.0, 0.8 * nyq))
        bw = fc * rng.uniform(0.3, 1.0)
        lo, hi = max(fc - bw / 2, 50.0), min(fc + bw / 2, 0.95 * nyq)
        sos = sps.butter(2, [lo / nyq, hi / nyq], btype="band", output="sos")
        out += sps.sosfilt(sos, s)
    return out


_MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _render_note(f0: float, dur_s: float, timbre: dict[str, Any], velocity: float, sr: int) -> np.ndarray:
    a, d, s = timbre["attack_s"], timbre["decay_s"], timbre["sustain"]
    hold_end_s = max(dur_s, a + d + 1e-3)
    end_s = hold_end_s + timbre["release_s"]
    n = int(end_s * sr)
    t = np.arange(n) / sr
    k = np.arange(1, timbre["n_partials"] + 1)
    freqs = f0 * k * np.sqrt(1.0 + timbre["inharmonicity"] * k ** 2)
    amps = timbre["partials"][: len(k)].copy()
    amps[freqs >= 0.45 * sr] = 0.0
    wave_ = np.sin(2 * np.pi * np.outer(freqs, t) + timbre["phases"][: len(k), None]).T @ amps
    env = np.interp(t, [0.0, a, a + d, hold_end_s, end_s], [0.0, 1.0, s, s, 0.0])
    return velocity * env * wave_


def _music(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    out = np.zeros(n)
    beat_s = 60.0 / rng.uniform(60.0, 180.0)
    scale = _MODES[str(rng.choice(list(_MODES)))]
    root = int(rng.integers(43, 62))
    total_s = n / sr

    def pitch(degree: int, octave: int) -> float:
        o, i = divmod(degree, len(scale))
        return _midi_hz(root + 12 * (octave + o) + scale[i])

    def timbre() -> dict[str, Any]:
        n_p = int(rng.integers(3, 13))
        partials = rng.uniform(0.3, 1.0, size=n_p) * np.arange(1, n_p + 1) ** (-rng.uniform(0.5, 2.5))
        if rng.random() < 0.3:
            partials[1::2] *= 0.1  # hollow, clarinet-like
        return {"n_partials": n_p, "partials": partials, "phases": rng.uniform(0, 2 * np.pi, size=n_p),
                "inharmonicity": rng.uniform(0.0, 2e-4) if rng.random() < 0.4 else 0.0,
                "attack_s": rng.uniform(0.003, 0.08), "decay_s": rng.uniform(0.05, 0.3),
                "sustain": rng.uniform(0.2, 0.9), "release_s": rng.uniform(0.05, 0.4)}

    parts = ["melody"] + [p for p in ("chords", "bass") if rng.random() < 0.7]
    for part in parts:
        tim = timbre()
        gain = {"melody": 1.0, "chords": 0.5, "bass": 0.8}[part]
        beats = {"melody": (0.5, 1, 1, 2), "chords": (1, 2, 4), "bass": (1, 2)}[part]
        t = 0.0
        degree = int(rng.integers(0, len(scale)))
        while t < total_s:
            dur = float(rng.choice(beats)) * beat_s
            if rng.random() > 0.1:  # else a rest
                if part == "melody":
                    degree = int(np.clip(degree + rng.integers(-2, 3), -len(scale), 2 * len(scale)))
                    notes = [pitch(degree, 1)]
                elif part == "chords":
                    d0 = int(rng.choice([0, 3, 4, 5]))
                    notes = [pitch(d0 + step, 0) for step in (0, 2, 4)]
                else:
                    notes = [pitch(int(rng.choice([0, 3, 4])), -1)]
                vel = gain * rng.uniform(0.5, 1.0)
                start = int(t * sr)
                for f0 in notes:
                    y = _render_note(f0, dur * rng.uniform(0.6, 1.0), tim, vel / len(notes) ** 0.5, sr)
                    y = y[: max(0, n - start)]
                    out[start:start + len(y)] += y
            t += dur
    if rng.random() < 0.6:
        _add_drums(out, beat_s, rng, sr)
    return out


def _add_drums(out: np.ndarray, beat_s: float, rng: np.random.Generator, sr: int) -> None:
    n = len(out)
    level = np.sqrt(np.mean(out ** 2)) + 1e-3
    nyq = sr / 2
    hat_sos = sps.butter(2, min(6000.0, 0.8 * nyq) / nyq, btype="high", output="sos")
    kick_len = int(0.25 * sr)
    tk = np.arange(kick_len) / sr
    kick_phase = 2 * np.pi * np.cumsum(50.0 + 70.0 * np.exp(-tk / 0.03)) / sr
    kick = np.sin(kick_phase) * np.exp(-tk / 0.08)
    hat_len = int(0.04 * sr)
    i = 0
    while True:
        start = int(i * beat_s / 2 * sr)
        if start >= n:
            break
        on_beat = i % 2 == 0
        beat_no = (i // 2) % 4
        if on_beat and beat_no in (0, 2):
            y = kick * rng.uniform(1.0, 2.0) * level
        elif on_beat:
            y = (rng.standard_normal(int(0.12 * sr)) * np.exp(-np.arange(int(0.12 * sr)) / (0.03 * sr))
                 * rng.uniform(0.5, 1.2) * level)
        elif rng.random() < 0.8:
            y = (sps.sosfilt(hat_sos, rng.standard_normal(hat_len)) * np.exp(-np.arange(hat_len) / (0.008 * sr))
                 * rng.uniform(0.3, 0.8) * level)
        else:
            y = np.zeros(0)
        y = y[: n - start]
        out[start:start + len(y)] += y
        i += 1


def noise(kind: str, n_samples: int, rng: np.random.Generator, sample_rate_hz: int = 16000) -> np.ndarray:
    """``n_samples`` of noise of one of ``NOISE_KINDS``, float32, unit RMS.

    white/pink/brown: flat, 1/f and 1/f^2 power spectra; hum: mains 50/60 Hz harmonics up to
    1 kHz; fan: band noise with slow swells and blade-pass tones; clicks: keyboard-like
    bursts; music: synthetic notes and chords with optional drums. Use ``babble`` for babble.
    """
    n = int(n_samples)
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    sr = int(sample_rate_hz)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _colored(n, rng, 1.0, sr)
    elif kind == "brown":
        x = _colored(n, rng, 2.0, sr)
    elif kind == "hum":
        x = _hum(n, rng, sr)
    elif kind == "fan":
        x = _fan(n, rng, sr)
    elif kind == "clicks":
        x = _clicks(n, rng, sr)
    elif kind == "music":
        x = _music(n, rng, sr)
    elif kind == "babble":
        raise ValueError("babble needs speech: call babble(bank, n_samples, rng)")
    else:
        raise ValueError(f"unknown noise kind {kind!r}; one of {', '.join(NOISE_KINDS)} or babble")
    return _unit_rms(x)


def babble(bank: "DryBank", n_samples: int, rng: np.random.Generator, n_talkers: int | None = None) -> np.ndarray:
    """Several talkers from the bank's speech at once (``n_talkers`` default: 4 to 8), unit RMS."""
    speech = np.concatenate([bank.indices(k) for k in SPEECH_KINDS])
    if len(speech) == 0:
        raise ValueError("babble needs speech, and the bank has none")
    n = int(n_samples)
    if n_talkers is None:
        n_talkers = int(rng.integers(4, 9))
    out = np.zeros(n, dtype=np.float64)
    for _ in range(n_talkers):
        talker = np.zeros(n, dtype=np.float64)
        pos = 0
        while pos < n:
            idx = int(rng.choice(speech))
            length = min(len(bank.signals[idx]), n - pos)
            talker[pos:pos + length] = bank.segment(idx, length, rng)
            pos += length + int(rng.uniform(0.0, 0.3) * bank.sample_rate_hz)
        out += talker * 10 ** (rng.uniform(-4.0, 4.0) / 20)
    return _unit_rms(out)


# --------------------------------------------------------------------------- the bank

def _mulaw_encode(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, -1.0, 1.0)
    f = np.sign(y) * np.log1p(MU * np.abs(y)) / math.log1p(MU)
    return np.round((f + 1.0) * 127.5).astype(np.uint8)


_MULAW_TABLE = (lambda f: (np.sign(f) * np.expm1(np.abs(f) * math.log1p(MU)) / MU).astype(np.float32))(
    np.arange(256, dtype=np.float64) / 127.5 - 1.0)


def _mulaw_decode(q: np.ndarray) -> np.ndarray:
    return _MULAW_TABLE[q]


@dataclass(frozen=True)
class _Encoded:
    codes: np.ndarray
    offsets: np.ndarray
    gains: np.ndarray


def _hash_encoded(enc: _Encoded, names: Sequence[str], kinds: Sequence[str], sample_rate_hz: int) -> str:
    h = hashlib.sha256()
    h.update(f"edge-msl dry bank v{FORMAT_VERSION} {int(sample_rate_hz)}\n".encode())
    h.update(np.ascontiguousarray(enc.codes, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(enc.offsets, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(enc.gains, dtype="<f4").tobytes())
    h.update("\n".join(names).encode("utf-8") + b"\0" + "\n".join(kinds).encode("utf-8"))
    return h.hexdigest()


class DryBank:
    """Mono float32 dry signals with names and kinds, stored as 8-bit mu-law.

    Treat it as immutable: the content hash and the stored form are computed once.
    """

    def __init__(self, signals: Sequence[np.ndarray], names: Sequence[str], kinds: Sequence[str],
                 sample_rate_hz: int = 16000, meta: dict[str, Any] | None = None) -> None:
        if not (len(signals) == len(names) == len(kinds)):
            raise ValueError(f"signals, names and kinds differ in length: {len(signals)}, {len(names)}, {len(kinds)}")
        bad = sorted({k for k in kinds if k not in KINDS})
        if bad:
            raise ValueError(f"unknown signal kinds {bad}; allowed: {', '.join(KINDS)}")
        sigs = []
        for name, x in zip(names, signals):
            x = np.asarray(x, dtype=np.float32)
            if x.ndim != 1 or len(x) == 0:
                raise ValueError(f"signal {name!r} must be a non-empty 1-D array, got shape {x.shape}")
            sigs.append(x)
        self.signals: tuple[np.ndarray, ...] = tuple(sigs)
        self.names: tuple[str, ...] = tuple(str(n) for n in names)
        self.kinds: tuple[str, ...] = tuple(str(k) for k in kinds)
        self.sample_rate_hz = int(sample_rate_hz)
        self.meta: dict[str, Any] = dict(meta or {})
        kinds_arr = np.array(self.kinds, dtype=object)
        self._by_kind = {k: np.flatnonzero(kinds_arr == k).astype(np.int64) for k in KINDS}
        self._all = np.arange(len(self.signals), dtype=np.int64)
        self._encoded: _Encoded | None = None
        self._hash: str | None = None
        self._peak_db: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.signals)

    # ---- storage
    def _encode(self) -> _Encoded:
        if self._encoded is None:
            offsets = np.zeros(len(self.signals) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(x) for x in self.signals])
            codes = np.empty(int(offsets[-1]), dtype=np.uint8)
            gains = np.ones(len(self.signals), dtype=np.float32)
            for i, x in enumerate(self.signals):
                peak = float(np.max(np.abs(x)))
                if peak > 0:
                    gains[i] = np.float32(peak / 0.99)
                codes[offsets[i]:offsets[i + 1]] = _mulaw_encode(x / gains[i])
            self._encoded = _Encoded(codes, offsets, gains)
        return self._encoded

    @property
    def content_hash(self) -> str:
        """sha256 of the stored (mu-law) form: equal for a bank and its saved-and-loaded copy."""
        if self._hash is None:
            self._hash = _hash_encoded(self._encode(), self.names, self.kinds, self.sample_rate_hz)
        return self._hash

    def durations_s(self) -> np.ndarray:
        """Duration of each signal in seconds."""
        return np.array([len(x) for x in self.signals], dtype=np.float64) / self.sample_rate_hz

    def summary(self) -> dict[str, dict[str, float]]:
        """Count and minutes per kind, plus a "total" entry."""
        dur = self.durations_s()
        out: dict[str, dict[str, float]] = {}
        for k in KINDS:
            idx = self._by_kind[k]
            out[k] = {"count": int(len(idx)), "minutes": round(float(dur[idx].sum()) / 60.0, 3)}
        out["total"] = {"count": len(self), "minutes": round(float(dur.sum()) / 60.0, 3)}
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bank to one .npz file, atomically (temporary file, then rename)."""
        path = Path(path)
        enc = self._encode()
        summary = self.summary()
        meta = dict(self.meta)
        meta.update({
            "format_version": FORMAT_VERSION,
            "sample_rate_hz": self.sample_rate_hz,
            "n_signals": len(self),
            "counts": {k: summary[k]["count"] for k in KINDS},
            "duration_s": {k: round(summary[k]["minutes"] * 60.0, 3) for k in KINDS},
            "content_sha256": self.content_hash,
            "encoding": "mu-law 8 bit (mu=255), per-signal peak 0.99, gains restore the level",
        })
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, codes=enc.codes, offsets=enc.offsets, gains=enc.gains,
                         names=np.array(self.names, dtype=str), kinds=np.array(self.kinds, dtype=str),
                         sample_rate_hz=np.array(self.sample_rate_hz, dtype=np.int64),
                         meta_json=np.array(json.dumps(meta, sort_keys=True)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DryBank":
        """Read a bank written by ``save``; a missing or corrupt file is a one-line error with the fix."""
        path = Path(path)
        hint = REBUILD_HINT.format(path=path)
        if not path.is_file():
            raise FileNotFoundError(f"dry-signal bank {path} not found; build it with: {hint}")
        try:
            with np.load(path, allow_pickle=False) as z:
                codes = np.asarray(z["codes"], dtype=np.uint8)
                offsets = np.asarray(z["offsets"], dtype=np.int64)
                gains = np.asarray(z["gains"], dtype=np.float32)
                names = [str(s) for s in z["names"]]
                kinds = [str(s) for s in z["kinds"]]
                sr = int(z["sample_rate_hz"])
                meta = json.loads(str(z["meta_json"][()]))
            n = len(names)
            if not (len(kinds) == n == len(gains) == len(offsets) - 1) or offsets[0] != 0 \
                    or offsets[-1] != len(codes) or np.any(np.diff(offsets) <= 0):
                raise ValueError("inconsistent offsets/names/kinds")
            enc = _Encoded(codes, offsets, gains)
            digest = _hash_encoded(enc, names, kinds, sr)
            if digest != meta.get("content_sha256"):
                raise ValueError("content hash does not match")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
            raise ValueError(f"dry-signal bank {path} is corrupt or not a bank ({e}); rebuild it with: {hint}") from e
        audio = _mulaw_decode(codes)
        signals = []
        for i in range(n):
            x = audio[offsets[i]:offsets[i + 1]]
            x *= gains[i]
            signals.append(x)
        bank = cls(signals, names, kinds, sr, meta)
        bank._encoded = enc
        bank._hash = digest
        return bank

    def subset(self, indices: Sequence[int], meta: dict[str, Any] | None = None) -> "DryBank":
        """A new bank holding the signals at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return DryBank([self.signals[i] for i in idx], [self.names[i] for i in idx], [self.kinds[i] for i in idx],
                       self.sample_rate_hz, meta if meta is not None else dict(self.meta))

    # ---- sampling
    def indices(self, kind: str | None = None) -> np.ndarray:
        """Indices of all signals, or of those of one kind."""
        if kind is None:
            return self._all
        if kind not in self._by_kind:
            raise ValueError(f"unknown signal kind {kind!r}; allowed: {', '.join(KINDS)}")
        return self._by_kind[kind]

    def pick(self, rng: np.random.Generator, kinds_weights: dict[str, float]) -> int:
        """A kind by weight (kinds the bank lacks are left out), then one of its signals uniformly."""
        for k, w in kinds_weights.items():
            if k not in KINDS:
                raise ValueError(f"unknown signal kind {k!r} in weights; allowed: {', '.join(KINDS)}")
            if not w >= 0:
                raise ValueError(f"weight of {k!r} must be >= 0, got {w!r}")
        kinds = [k for k, w in kinds_weights.items() if w > 0 and len(self._by_kind[k])]
        if not kinds:
            raise ValueError(f"the bank has no signal of the kinds weighted {dict(kinds_weights)}")
        w = np.array([kinds_weights[k] for k in kinds], dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
        return int(rng.choice(self._by_kind[kind]))

    def _signal_peak_db(self, index: int) -> float:
        if index not in self._peak_db:
            frame = int(round(FRAME_S * self.sample_rate_hz))
            self._peak_db[index] = float(_power_db(_frame_power(self.signals[index], frame)).max())
        return self._peak_db[index]

    def _activity(self, x: np.ndarray, peak_db: float) -> float:
        frame = min(int(round(FRAME_S * self.sample_rate_hz)), len(x))
        n_frames = len(x) // frame
        power = np.mean(x[: n_frames * frame].astype(np.float64).reshape(n_frames, frame) ** 2, axis=1)
        return float(np.mean(_power_db(power) >= peak_db - 30.0))

    def segment(self, index: int, n_samples: int, rng: np.random.Generator, n_tries: int = 4) -> np.ndarray:
        """A random excerpt of ``n_samples`` from signal ``index``, float32 with unit RMS.

        Shorter signals are tiled from a random start with short crossfades. For speech and
        music, the most active of ``n_tries`` random offsets is kept (most 20 ms frames within
        30 dB of the signal's loudest frame).
        """
        x = self.signals[index]
        n = int(n_samples)
        if n <= 0:
            return np.zeros(0, dtype=np.float32)
        length = len(x)
        if length >= n:
            tries = n_tries if self.kinds[index] != "noise" else 1
            offsets = rng.integers(0, length - n + 1, size=max(1, tries))
            if len(offsets) > 1:
                peak_db = self._signal_peak_db(index)
                scores = [self._activity(x[o:o + n], peak_db) for o in offsets]
                best = int(offsets[int(np.argmax(scores))])
            else:
                best = int(offsets[0])
            return _unit_rms(x[best:best + n])
        return _unit_rms(_tile(x, n, int(rng.integers(0, length)), int(0.01 * self.sample_rate_hz)))


def _tile(x: np.ndarray, n: int, start: int, xfade: int) -> np.ndarray:
    """``x`` repeated from ``start`` until ``n`` samples, joined with equal-power crossfades."""
    c = min(xfade, len(x) // 4)
    out = np.zeros(n + len(x), dtype=np.float32)
    first = x[start:]
    out[: len(first)] = first
    pos = len(first)
    if c > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(c) + 0.5) / c).astype(np.float32)
    while pos < n:
        if c > 0 and pos >= c:
            out[pos - c:pos] = out[pos - c:pos] * ramp[::-1] + x[:c] * ramp
            out[pos:pos + len(x) - c] = x[c:]
            pos += len(x) - c
        else:
            out[pos:pos + len(x)] = x
            pos += len(x)
    return out[:n]


# --------------------------------------------------------------------------- train / test split

SPLITS = ("train", "test")


def _name_key(name: str, seed: int) -> bytes:
    """A stable pseudo-random key of a signal name: the same whichever other signals a bank holds."""
    return hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()


def split_of(name: str, test_fraction: float, seed: int = 0) -> str:
    """"train" or "test" for a signal name: a hash of (seed, name), so the split of a signal
    never depends on which other signals are in the bank."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    return "test" if int.from_bytes(_name_key(name, seed)[:8], "big") / 2.0 ** 64 < test_fraction else "train"


def split_bank(bank: DryBank, test_fraction: float = 0.15, seed: int = 0) -> dict[str, DryBank]:
    """Disjoint train and test banks (by signal, see ``split_of``); each records its origin."""
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, name in enumerate(bank.names):
        parts[split_of(name, test_fraction, seed)].append(i)
    out = {}
    for split, idx in parts.items():
        meta = dict(bank.meta)
        meta["split"] = {"part": split, "test_fraction": test_fraction, "seed": seed,
                         "parent_sha256": bank.content_hash}
        out[split] = bank.subset(idx, meta)
    return out


def limit_minutes(bank: DryBank, max_minutes: dict[str, float], seed: int = 0, files_only: bool = False,
                  complement: bool = False) -> DryBank:
    """A sub-bank with at most ``max_minutes[kind]`` minutes of each named kind (kinds not named are
    kept whole); signals are taken in a hash order of their names, so the choice is stable.

    ``files_only``: the caps apply only to pieces added from audio files (``add_files``, names
    ``file/...``); generated signals of a capped kind are kept whole. ``complement``: keep, of the
    capped signals, exactly those the cap leaves out (a disjoint validation bank of the same
    sources); uncapped signals are kept either way."""
    bad = sorted(set(max_minutes) - set(KINDS))
    if bad:
        raise ValueError(f"unknown signal kinds {bad}; allowed: {', '.join(KINDS)}")
    dur = bank.durations_s() / 60.0
    keep: list[int] = []
    for kind in KINDS:
        idx = list(bank.indices(kind))
        if kind not in max_minutes:
            keep += idx
            continue
        if files_only:
            keep += [i for i in idx if not bank.names[i].startswith("file/")]
            idx = [i for i in idx if bank.names[i].startswith("file/")]
        idx.sort(key=lambda i: _name_key(bank.names[i], seed))
        total = 0.0
        for i in idx:
            taken = total + dur[i] <= max_minutes[kind]
            if taken:
                total += dur[i]
            if taken != complement:
                keep.append(i)
    meta = dict(bank.meta)
    meta["limited"] = {"max_minutes": max_minutes, "seed": seed, "files_only": files_only, "complement": complement,
                       "parent_sha256": bank.content_hash}
    return bank.subset(sorted(keep), meta)


# --------------------------------------------------------------------------- building

@dataclass(frozen=True)
class BankSettings:
    """What ``build_bank`` makes."""

    sample_rate_hz: int = 16000
    """Sample rate of every signal in the bank."""
    n_espeak: int = 400
    """espeak-ng utterances (random language variant, voice, speed and pitch)."""
    n_flite: int = 60
    """flite utterances (English voices)."""
    n_festival: int = 30
    """festival utterances (the installed English voice)."""
    asterisk_langs: tuple[str, ...] = ("en", "es", "fr")
    """asterisk prompt languages to decode (only en, es and fr are allowed)."""
    asterisk_root: str = ASTERISK_ROOT
    """Directory holding the asterisk language directories."""
    max_asterisk_files: int | None = None
    """At most this many asterisk prompts, spread over the languages (None = all)."""
    asterisk_gsm_langs: tuple[str, ...] = ()
    """Languages whose 8 kHz .gsm prompts are decoded too: other real voices than the .g722
    ones (es: asterisk-prompt-es-co, fr: asterisk-prompt-fr-armelle); none by default."""
    n_noise_each: int = 6
    """Signals per noise kind (white, pink, brown, hum, fan, clicks, babble)."""
    noise_duration_s: float = 20.0
    """Length of each noise signal."""
    n_music: int = 20
    """Synthetic music pieces."""
    music_duration_s: float = 20.0
    """Length of each music piece."""
    noise_kinds: tuple[str, ...] = ("white", "pink", "brown", "hum", "fan", "clicks", "babble")
    """Noise kinds stored as point sources of kind "noise"."""
    min_speech_s: float = 0.15
    """Speech shorter than this after trimming is dropped."""
    seed: int = 0
    """Seed of everything random in the build."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Threads running TTS engines, decoders and generators (the work is in subprocesses)."""

    def __post_init__(self) -> None:
        bad = [lang for lang in (*self.asterisk_langs, *self.asterisk_gsm_langs) if lang not in ALLOWED_ASTERISK_LANGS]
        if bad:
            raise ValueError(f"asterisk_langs {bad} not allowed; only {', '.join(ALLOWED_ASTERISK_LANGS)}")
        for name in ("n_espeak", "n_flite", "n_festival", "n_noise_each", "n_music"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        bad_kinds = [k for k in self.noise_kinds if k not in NOISE_KINDS + ("babble",) or k == "music"]
        if bad_kinds:
            raise ValueError(f"noise_kinds {bad_kinds} unknown; allowed: white pink brown hum fan clicks babble")
        if self.max_asterisk_files is not None and self.max_asterisk_files < 0:
            raise ValueError(f"max_asterisk_files must be >= 0 or None, got {self.max_asterisk_files}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


# Separate random streams so adding items of one kind does not change the others.
_STREAM = {"espeak": 1, "flite": 2, "festival": 3, "asterisk": 4, "noise": 5, "music": 6, "babble": 7}


def _item_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[stream], int(index)])


def _sentence_lang(voice_lang: str) -> str | None:
    prefix = voice_lang.split("-")[0]
    return prefix if prefix in SENTENCES else None


def _text_for(lang: str | None, rng: np.random.Generator) -> str:
    if lang is None or rng.random() < 0.3:
        return pseudo_words(rng)
    pool = SENTENCES[lang]
    text = str(rng.choice(pool))
    if rng.random() < 0.25:
        text += " " + str(rng.choice(pool))
    return text


def asterisk_files(root: str | os.PathLike[str], langs: Iterable[str],
                   suffix: str = ".g722") -> list[tuple[str, Path]]:
    """Sorted (language, file) pairs of the ``suffix`` prompts of ``langs`` under ``root``.

    ``.g722`` (16 kHz) are the asterisk-core-sounds voices (en and es: Allison, fr: June);
    ``.gsm`` (8 kHz phone band) are other speakers' prompt packages that install into the bare
    language directories (asterisk-prompt-es-co, asterisk-prompt-fr-armelle).

    Symlinked language directories (en -> en_US_f_Allison) are followed once; silence
    prompts are left out. Every path is checked with ``check_not_reserved``.
    """
    root = Path(root)
    out: list[tuple[str, Path]] = []
    seen: set[str] = set()
    if not root.is_dir():
        return out
    for lang in langs:
        if lang not in ALLOWED_ASTERISK_LANGS:
            raise ValueError(f"asterisk language {lang!r} not allowed; only {', '.join(ALLOWED_ASTERISK_LANGS)}")
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d.name == lang or d.name.startswith(lang + "_")))
        for d in dirs:
            check_not_reserved(d)
            for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
                dirnames[:] = sorted(x for x in dirnames if x != "silence")
                for fn in sorted(filenames):
                    if not fn.endswith(suffix):
                        continue
                    p = Path(dirpath) / fn
                    real = os.path.realpath(p)
                    if real in seen:
                        continue
                    check_not_reserved(p)
                    seen.add(real)
                    out.append((lang, p))
    return out


def _select_asterisk(files: list[tuple[str, Path]], max_files: int | None, seed: int) -> list[tuple[str, Path]]:
    if max_files is None or max_files >= len(files):
        return files
    rng = _item_rng(seed, "asterisk", 0)
    by_lang: dict[str, list[Path]] = {}
    for lang, p in files:
        by_lang.setdefault(lang, []).append(p)
    queues = {lang: [ps[i] for i in rng.permutation(len(ps))] for lang, ps in sorted(by_lang.items())}
    chosen: list[tuple[str, Path]] = []
    while len(chosen) < max_files:  # round robin so a small selection still has every language
        for lang in sorted(queues):
            if queues[lang] and len(chosen) < max_files:
                chosen.append((lang, queues[lang].pop(0)))
    return chosen


@dataclass(frozen=True)
class _Job:
    name: str
    kind: str
    run: Callable[[], np.ndarray]
    is_speech: bool


def _plan_jobs(settings: BankSettings, skipped: list[str]) -> list[_Job]:
    sr = settings.sample_rate_hz
    jobs: list[_Job] = []

    def speech_job(name: str, kind: str, fn: Callable[[], np.ndarray]) -> _Job:
        return _Job(name, kind, lambda: trim_silence(fn(), sr), True)

    if settings.n_espeak:
        if shutil.which("espeak-ng") is None:
            skipped.append(f"espeak-ng not installed: {settings.n_espeak} utterances skipped")
        else:
            variants = espeak_variants()
            for i in range(settings.n_espeak):
                rng = _item_rng(settings.seed, "espeak", i)
                lang = ESPEAK_LANGUAGES[int(rng.integers(len(ESPEAK_LANGUAGES)))]
                variant = variants[int(rng.integers(len(variants)))]
                voice = lang + (f"+{variant}" if variant else "")
                speed = int(rng.integers(120, 231))
                pitch = int(rng.integers(15, 86))
                text = _text_for(_sentence_lang(lang), rng)
                jobs.append(speech_job(f"espeak/{i:04d}/{voice}/s{speed}/p{pitch}", "speech_synth",
                                       functools.partial(synth_espeak, text, voice, speed, pitch, sr)))
    if settings.n_flite:
        voices = flite_voices() if shutil.which("flite") else ()
        if not voices:
            skipped.append(f"flite (or its voices) not installed: {settings.n_flite} utterances skipped")
        else:
            for i in range(settings.n_flite):
                rng = _item_rng(settings.seed, "flite", i)
                voice = voices[int(rng.integers(len(voices)))]
                stretch = round(float(rng.uniform(0.8, 1.3)), 3)
                f0 = round(float(rng.uniform(140, 230) if voice in _FLITE_FEMALE else rng.uniform(85, 150)), 1)
                text = _text_for("en", rng)
                jobs.append(speech_job(f"flite/{i:04d}/{voice}/d{stretch}/f{f0}", "speech_synth",
                                       functools.partial(synth_flite, text, voice, sr, stretch, f0)))
    if settings.n_festival:
        if shutil.which("text2wave") is None:
            skipped.append(f"festival (text2wave) not installed: {settings.n_festival} utterances skipped")
        else:
            for i in range(settings.n_festival):
                rng = _item_rng(settings.seed, "festival", i)
                stretch = round(float(rng.uniform(0.8, 1.3)), 3)
                f0 = round(float(rng.uniform(85, 160)), 1)
                std = round(float(rng.uniform(8, 35)), 1)
                text = _text_for("en", rng)
                jobs.append(speech_job(f"festival/{i:04d}/d{stretch}/f{f0}", "speech_synth",
                                       functools.partial(synth_festival, text, sr, stretch, f0, std)))
    # the 16 kHz .g722 voices, then (if asked) the 8 kHz .gsm prompt packages of other speakers
    for langs, suffix, decoder, prefix, what, max_files, hint in (
            (settings.asterisk_langs if settings.max_asterisk_files != 0 else (), ".g722", decode_g722, "asterisk",
             "asterisk prompts", settings.max_asterisk_files, ""),
            (settings.asterisk_gsm_langs, ".gsm", decode_gsm, "asterisk-gsm", "asterisk .gsm prompts", None,
             " (apt install asterisk-prompt-es-co asterisk-prompt-fr-armelle)")):
        if not langs:
            continue
        files = asterisk_files(settings.asterisk_root, langs, suffix=suffix)
        if shutil.which("ffmpeg") is None:
            skipped.append(f"ffmpeg not installed: {what} skipped")
        elif not files:
            skipped.append(f"no {what} for {','.join(langs)} under {settings.asterisk_root}{hint}")
        else:
            for lang, p in _select_asterisk(files, max_files, settings.seed):
                rel = p.relative_to(settings.asterisk_root).with_suffix("")
                rel_name = f"{lang}/{Path(*rel.parts[1:]).as_posix()}" if len(rel.parts) > 1 else f"{lang}/{rel}"
                jobs.append(speech_job(f"{prefix}/{rel_name}", "speech_real", functools.partial(decoder, p, sr)))
    n_noise = int(round(settings.noise_duration_s * sr))
    for kind in settings.noise_kinds:
        if kind == "babble":
            continue  # made from the speech once it exists
        for i in range(settings.n_noise_each):
            rng = _item_rng(settings.seed, "noise", NOISE_KINDS.index(kind) * 100000 + i)
            jobs.append(_Job(f"noise/{kind}/{i:03d}", "noise",
                             functools.partial(noise, kind, n_noise, rng, sr), False))
    n_music = int(round(settings.music_duration_s * sr))
    for i in range(settings.n_music):
        rng = _item_rng(settings.seed, "music", i)
        jobs.append(_Job(f"music/{i:03d}", "music", functools.partial(noise, "music", n_music, rng, sr), False))
    return jobs


def build_bank(out_path: str | os.PathLike[str] | None, settings: BankSettings = BankSettings()) -> DryBank:
    """Make the dry-signal bank described by ``settings`` and save it to ``out_path`` (unless None).

    Deterministic for a seed. Missing TTS engines or decoders are skipped with a warning and
    listed in the bank's meta ("skipped"); a single failing item is logged and left out.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    sr = settings.sample_rate_hz
    skipped: list[str] = []
    jobs = _plan_jobs(settings, skipped)
    for s in skipped:
        log.warning("skipped: %s", s)
    results: list[np.ndarray | None] = [None] * len(jobs)
    failures: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.workers) as pool:
        futures = {pool.submit(job.run): i for i, job in enumerate(jobs)}
        with tqdm(total=len(jobs), desc="dry signals", unit="sig", file=sys.stderr) as bar:
            for fut in concurrent.futures.as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as e:  # one bad utterance or file must not stop the build
                    failures.append(f"{jobs[i].name}: {e}")
                    log.warning("failed %s: %s", jobs[i].name, e)
                bar.update(1)
    signals: list[np.ndarray] = []
    names: list[str] = []
    kinds: list[str] = []
    too_short = 0
    for job, x in zip(jobs, results):
        if x is None:
            continue
        if job.is_speech and len(x) < settings.min_speech_s * sr:
            too_short += 1
            continue
        signals.append(x)
        names.append(job.name)
        kinds.append(job.kind)
    if too_short:
        log.warning("dropped %d speech signals shorter than %.2f s after trimming", too_short, settings.min_speech_s)
    if "babble" in settings.noise_kinds and settings.n_noise_each:
        speech = DryBank([s for s, k in zip(signals, kinds) if k in SPEECH_KINDS],
                         [n for n, k in zip(names, kinds) if k in SPEECH_KINDS],
                         [k for k in kinds if k in SPEECH_KINDS], sr)
        if len(speech):
            n_noise = int(round(settings.noise_duration_s * sr))
            for i in range(settings.n_noise_each):
                signals.append(babble(speech, n_noise, _item_rng(settings.seed, "babble", i)))
                names.append(f"noise/babble/{i:03d}")
                kinds.append("noise")
        else:
            skipped.append("babble: no speech in the bank")
            log.warning("skipped: babble (no speech in the bank)")
    order = sorted(range(len(signals)), key=lambda i: KINDS.index(kinds[i]))  # stable: plan order within a kind
    meta = {"settings": dataclasses.asdict(settings), "skipped": skipped, "n_failed": len(failures),
            "failed": failures[:50], "n_too_short": too_short,
            "build_s": None, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    bank = DryBank([signals[i] for i in order], [names[i] for i in order], [kinds[i] for i in order], sr, meta)
    meta["build_s"] = round(time.perf_counter() - t0, 2)
    bank.meta["build_s"] = meta["build_s"]
    if out_path is not None:
        bank.save(out_path)
        log.info("wrote %s: %d signals, %.1f min, sha256 %s, in %.1f s", out_path, len(bank),
                 bank.summary()["total"]["minutes"], bank.content_hash[:12], time.perf_counter() - t0)
    return bank


# --------------------------------------------------------------------------- CLI

def _format_table(summary: dict[str, dict[str, float]]) -> str:
    lines = [f"{'kind':<14}{'count':>8}{'minutes':>10}"]
    for kind, row in summary.items():
        lines.append(f"{kind:<14}{int(row['count']):>8}{row['minutes']:>10.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Build a dry-signal bank or describe one."""
    parser = argparse.ArgumentParser(prog="python -m train_tf.signals", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = BankSettings()
    b = sub.add_parser("build", help="make a bank (.npz) of dry signals")
    b.add_argument("--out", required=True, help="output .npz, e.g. data/dry/bank.npz")
    b.add_argument("--n-espeak", type=int, default=d.n_espeak)
    b.add_argument("--n-flite", type=int, default=d.n_flite)
    b.add_argument("--n-festival", type=int, default=d.n_festival)
    b.add_argument("--max-asterisk-files", type=int, default=None, help="default: all en/es/fr prompts")
    b.add_argument("--asterisk-langs", default=",".join(d.asterisk_langs),
                   help="languages of the 16 kHz .g722 prompts (comma list of en,es,fr; '' for none)")
    b.add_argument("--asterisk-gsm-langs", default="",
                   help="languages of the 8 kHz .gsm prompt packages to add (es: asterisk-prompt-es-co, "
                        "fr: asterisk-prompt-fr-armelle; other real voices)")
    b.add_argument("--n-noise-each", type=int, default=d.n_noise_each)
    b.add_argument("--noise-duration-s", type=float, default=d.noise_duration_s)
    b.add_argument("--n-music", type=int, default=d.n_music)
    b.add_argument("--seed", type=int, default=d.seed)
    b.add_argument("--workers", type=int, default=d.workers)
    sp = sub.add_parser("split", help="split a bank into disjoint train and test banks (by signal)")
    sp.add_argument("bank", help="bank .npz to split")
    sp.add_argument("--test-fraction", type=float, default=0.15)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--train-out", required=True)
    sp.add_argument("--test-out", required=True)
    lm = sub.add_parser("limit", help="keep at most some minutes of each kind (e.g. to carry a bank)")
    lm.add_argument("bank", help="bank .npz to read")
    lm.add_argument("--out", required=True)
    lm.add_argument("--max-minutes", action="append", default=[], metavar="KIND=MIN",
                    help="e.g. speech_real=38 (repeatable; kinds not named are kept whole)")
    lm.add_argument("--files-only", action="store_true",
                    help="cap only the pieces added with add-files; generated signals are kept whole")
    lm.add_argument("--complement", action="store_true",
                    help="keep the capped kinds' signals the cap leaves out instead (a disjoint validation bank)")
    af = sub.add_parser("add-files", help="add audio files (e.g. real music) to a bank, cut into pieces")
    af.add_argument("files", nargs="+", help="audio files ffmpeg can read")
    af.add_argument("--bank", default=None, help="bank .npz to add to (default: a new bank)")
    af.add_argument("--kind", default="music", choices=KINDS)
    af.add_argument("--piece-s", type=float, default=20.0, help="seconds per stored piece")
    af.add_argument("--out", required=True)
    i = sub.add_parser("info", help="print what a bank holds")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "build":
            settings = BankSettings(n_espeak=args.n_espeak, n_flite=args.n_flite, n_festival=args.n_festival,
                                    max_asterisk_files=args.max_asterisk_files, n_noise_each=args.n_noise_each,
                                    noise_duration_s=args.noise_duration_s, n_music=args.n_music,
                                    seed=args.seed, workers=args.workers,
                                    asterisk_langs=tuple(x for x in args.asterisk_langs.split(",") if x),
                                    asterisk_gsm_langs=tuple(x for x in args.asterisk_gsm_langs.split(",") if x))
            bank = build_bank(args.out, settings)
            print(json.dumps({"path": str(args.out), "content_sha256": bank.content_hash,
                              "build_s": bank.meta.get("build_s"), "skipped": bank.meta.get("skipped"),
                              "n_failed": bank.meta.get("n_failed"), "summary": bank.summary()}))
        elif args.command == "limit":
            limits = {}
            for item in args.max_minutes:
                kind, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"--max-minutes takes KIND=MINUTES, got {item!r}")
                limits[kind] = float(value)
            small = limit_minutes(DryBank.load(args.bank), limits, files_only=args.files_only,
                                  complement=args.complement)
            small.save(args.out)
            print(json.dumps({"path": str(args.out), "content_sha256": small.content_hash,
                              "summary": small.summary()}))
        elif args.command == "add-files":
            bank = add_files(DryBank.load(args.bank) if args.bank else None, args.files, args.kind, args.piece_s)
            bank.save(args.out)
            print(json.dumps({"path": str(args.out), "content_sha256": bank.content_hash, "summary": bank.summary()}))
        elif args.command == "split":
            parts = split_bank(DryBank.load(args.bank), args.test_fraction, args.seed)
            for split, path in (("train", args.train_out), ("test", args.test_out)):
                parts[split].save(path)
                print(json.dumps({"split": split, "path": str(path), "content_sha256": parts[split].content_hash,
                                  "summary": parts[split].summary()}))
        else:
            bank = DryBank.load(args.path)
            if args.json:
                print(json.dumps({"path": args.path, "sample_rate_hz": bank.sample_rate_hz,
                                  "content_sha256": bank.content_hash, "summary": bank.summary()}))
            else:
                print(f"{args.path}: {bank.sample_rate_hz} Hz, sha256 {bank.content_hash}")
                print(_format_table(bank.summary()))
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
