"""Noises and music made without recordings (coloured noise, hum, fan, clicks, a small music
synthesizer) and babble from a bank's speech; deterministic for a random generator, no files read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps

from train_tf.bank.levels import _unit_rms
from train_tf.bank.store import SPEECH_KINDS

if TYPE_CHECKING:
    from train_tf.bank.store import DryBank

NOISE_KINDS = ("white", "pink", "brown", "hum", "fan", "clicks", "music")
"""Kinds that ``noise`` makes without a bank ("babble" needs one: see ``babble``)."""


# --------------------------------------------------------------------------- noises and music

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
