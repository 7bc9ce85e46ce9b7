"""Speech for the bank: texts, the TTS engines (espeak-ng, flite, festival) and the audio-file decoders.

Each call runs one external program and returns mono float32 at the asked rate; it must not read a
path that ``check_not_reserved`` refuses.
"""

from __future__ import annotations

import functools
import io
import math
import os
import subprocess
import tempfile
import wave

import numpy as np
from scipy import signal as sps

from train_tf.bank.reserved import check_not_reserved

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
