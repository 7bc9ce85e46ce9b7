"""A stand-in "real room" for tests and benchmarks: a simulated room with a perturbed array, its clips and mixtures.

Not used by a calibration on a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge_msl.arrays import MicArray
from edge_msl.regions import angular_distance_deg
from edge_msl.settings_check import Settings, number, setting


@dataclass(frozen=True)
class PerturbedArray(Settings):
    """How a real array differs from its nominal geometry (for the stand-in room)."""

    position_error_m: float = setting(0.004, number(0.0, 1.0))
    """Per-axis microphone position error, uniform in +/- this."""
    gain_error_db: float = setting(2.5, number(0.0, 40.0))
    """Per-microphone gain error, uniform in +/- this."""
    delay_error_s: float = setting(30e-6, number(0.0, 0.1))
    """Per-microphone time offset (ADC clocking, analog filters), uniform in +/- this."""
    phase_error_deg: float = setting(15.0, number(0.0, 180.0))
    """Per-microphone frequency-independent phase error, uniform in +/- this."""
    board_below_m: float = setting(0.03, number(0.0, 10.0))
    """A reflective board this far under the array (its mirror image adds a strong early echo)."""
    board_reflection: float = setting(0.8, number(0.0, 1.0))
    """Amplitude reflection coefficient of the board."""

    KEY = "perturb.{}"
    TABLE = "perturb"


class StandInRoom:
    """A simulated room the model never saw, with a perturbed array: clips at chosen directions, int16,
    as the real device would capture them (the nominal geometry is what the model and SRP-PHAT assume)."""

    def __init__(self, array: MicArray, seed: int = 0, perturb: PerturbedArray = PerturbedArray(),
                 room_dim_m: tuple[float, float, float] = (6.3, 4.9, 2.8), rt60_s: float = 0.45,
                 sample_rate_hz: int = 16000) -> None:
        from train_tf.simulate import sabine_absorption

        self.array = array
        self.fs = sample_rate_hz
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.dim = np.array(room_dim_m, dtype=np.float64)
        self.centre = np.array([self.dim[0] * 0.45, self.dim[1] * 0.55, 0.9])
        m = array.n_mics
        self.mic_xyz = array.positions() + self.centre + rng.uniform(-perturb.position_error_m,
                                                                     perturb.position_error_m, (m, 3))
        self.gain = 10.0 ** (rng.uniform(-perturb.gain_error_db, perturb.gain_error_db, m) / 20.0)
        self.delay_s = rng.uniform(-perturb.delay_error_s, perturb.delay_error_s, m)
        self.phase_rad = np.radians(rng.uniform(-perturb.phase_error_deg, perturb.phase_error_deg, m))
        self.perturb = perturb
        self.absorption = min(0.99, sabine_absorption(rt60_s, self.dim))
        self.rt60_s = rt60_s

    def rirs(self, azimuth_deg: Sequence[float], distance_m: Sequence[float], elevation_deg: Sequence[float]
             ) -> np.ndarray:
        """(P, M, L) impulse responses from source positions (array frame) to the perturbed mics, board included."""
        from train_tf.simulate import _import_pra

        pra = _import_pra()
        az, dist, el = (np.radians(np.asarray(v, dtype=np.float64)) if i != 1 else np.asarray(v, dtype=np.float64)
                        for i, v in enumerate((azimuth_deg, distance_m, elevation_deg)))
        src = self.centre + np.stack([dist * np.cos(az), dist * np.sin(az), np.tan(el) * dist], axis=1)
        src = np.clip(src, 0.25, self.dim - 0.25)
        room = pra.ShoeBox(self.dim, fs=self.fs, materials=pra.Material(self.absorption), max_order=10,
                           air_absorption=False)
        room.add_microphone_array(self.mic_xyz.T)
        board_z = self.centre[2] - self.perturb.board_below_m
        mirror = self.mic_xyz.copy()
        mirror[:, 2] = 2 * board_z - mirror[:, 2]
        echo = pra.ShoeBox(self.dim, fs=self.fs, max_order=0)  # the board's echo: one path per mic
        echo.add_microphone_array(mirror.T)
        for p in src:
            room.add_source(p)
            echo.add_source(p)
        pra.random.seed(numpy=int(self.rng.integers(2**31)))
        room.compute_rir()
        echo.compute_rir()
        n = max(len(room.rir[m][p]) for m in range(len(mirror)) for p in range(len(src)))
        out = np.zeros((len(src), len(mirror), n), np.float64)
        for p in range(len(src)):
            for m in range(len(mirror)):
                h = np.asarray(room.rir[m][p])
                out[p, m, :len(h)] = h
                e = np.asarray(echo.rir[m][p])[:n]
                out[p, m, :len(e)] += self.perturb.board_reflection * e
        return out

    def _device(self, x: np.ndarray) -> np.ndarray:
        """Per-mic gain, time offset and phase error of the real front end; x (n, M) float."""
        n = len(x)
        spec = np.fft.rfft(x, axis=0)
        f = np.fft.rfftfreq(n, 1.0 / self.fs)
        rot = np.exp(-2j * np.pi * f[:, None] * self.delay_s[None, :] - 1j * self.phase_rad[None, :])
        rot[0] = 1.0
        return np.fft.irfft(spec * rot, n=n, axis=0) * self.gain[None, :]

    def render(self, rirs: np.ndarray, dry: Sequence[np.ndarray], level_dbfs: float = -28.0, snr_db: float = 25.0
               ) -> np.ndarray:
        """Sources ``dry`` (each 1-D) through ``rirs`` (same count) + diffuse room noise + sensor noise, int16.

        Returns ``len(dry) - L + 1`` frames (L = RIR length): only the part where the room's response is
        fully built up, as in a recording of a source that was already playing."""
        from scipy.signal import fftconvolve

        from train_tf.simulate import diffuse_mix, to_int16

        n_in = min(len(d) for d in dry)
        m, L = rirs.shape[1], rirs.shape[2]
        n = n_in - L + 1
        if n <= 0:
            raise ValueError(f"dry signals of {n_in} samples are shorter than the RIRs ({L})")
        clean = np.zeros((n, m))
        for h, d in zip(rirs, dry):
            clean += fftconvolve(d[:n_in, None], h.T, axes=0, mode="valid")
        p = float(np.mean(clean ** 2)) + 1e-20
        noise = diffuse_mix(self.mic_xyz, self.rng.standard_normal((m, n)), self.fs).T.astype(np.float64)
        noise *= math.sqrt(p / (np.mean(noise ** 2) + 1e-20) * 10 ** (-snr_db / 10))
        sensor = self.rng.standard_normal((n, m)) * math.sqrt(p * 10 ** (-(snr_db + 15) / 10))
        x = self._device(clean + noise + sensor)
        x *= 10 ** (level_dbfs / 20) / math.sqrt(float(np.mean(x ** 2)) + 1e-20)
        return to_int16(x)


def dry_speech(bank, n_samples: int, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """``count`` speech excerpts (unit RMS) from a dry-signal bank, real speech where the bank has it."""
    idx = bank.indices("speech_real")
    if len(idx) == 0:
        idx = bank.indices("speech_synth")
    return [bank.segment(int(rng.choice(idx)), n_samples, rng).astype(np.float64) for _ in range(count)]


def standin_mixtures(room: StandInRoom, bank, n: int, window: int, rng: np.random.Generator,
                     min_sep_deg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` two-source windows in the stand-in room at fresh positions (not the calibration ones), and
    their true azimuths (n, 2): the held-out test of a calibration."""
    n_pos = max(8, n // 4)
    az = rng.uniform(0, 360, n_pos)
    rirs = room.rirs(az, rng.uniform(0.8, 2.5, n_pos), rng.uniform(-5, 20, n_pos))
    pairs = [(i, j) for i in range(n_pos) for j in range(i + 1, n_pos) if angular_distance_deg(az[i], az[j]) >= min_sep_deg]
    audio, truth = [], []
    for k in range(n):
        i, j = pairs[int(rng.integers(len(pairs)))]
        dry = dry_speech(bank, window + rirs.shape[2] - 1, rng, 2)
        gains = 10 ** (rng.uniform(-3, 3, 2) / 20)
        audio.append(room.render(rirs[[i, j]], [dry[0] * gains[0], dry[1] * gains[1]],
                                 level_dbfs=float(rng.uniform(-35, -22))))
        truth.append([az[i], az[j]])
    return np.stack(audio), np.array(truth)
