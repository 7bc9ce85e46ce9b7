"""Rendering: dry signals through a room's impulse responses, with diffuse and sensor noise, into one
labelled window. It must not write files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.signal import fftconvolve

from train_tf.simulate.rooms import RoomRirs, diffuse_mix, simulate_room
from train_tf.simulate.settings import KIND_CODES, SimSettings


@dataclass
class Window:
    """One rendered window and its labels."""

    audio: np.ndarray
    """Float32 (W, M) at full-scale units (int16 full scale = 1.0), before quantization."""
    azimuth_deg: np.ndarray
    """(K,) source azimuths in the array frame."""
    elevation_deg: np.ndarray
    """(K,) source elevations."""
    distance_m: np.ndarray
    """(K,) horizontal distances."""
    distance3d_m: np.ndarray
    """(K,) 3-D distances."""
    level_db: np.ndarray
    """(K,) direct-path level of each source at the array, dB relative to the loudest."""
    kind: np.ndarray
    """(K,) dry-signal kind code (``KIND_CODES``)."""
    snr_diffuse_db: float
    """SNR of the diffuse noise."""
    snr_sensor_db: float
    """SNR of the sensor noise."""
    level_dbfs: float
    """RMS level of the sources at the microphones."""


def choose_positions(azimuth_deg: np.ndarray, k: int, min_sep_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` position indices whose azimuths are pairwise at least ``min_sep_deg`` apart."""
    chosen: list[int] = []
    for p in rng.permutation(len(azimuth_deg)):
        if len(chosen) == k:
            break
        diffs = np.abs((azimuth_deg[chosen] - azimuth_deg[p] + 180.0) % 360.0 - 180.0)
        if np.all(diffs >= min_sep_deg):
            chosen.append(int(p))
    return np.array(chosen, dtype=np.int64)


def _pick_kind(settings: SimSettings, bank, rng: np.random.Generator) -> str:
    kinds = [(k, w) for k, w in settings.kind_weights if w > 0 and len(bank.indices(k)) > 0]
    if not kinds:
        raise ValueError("the dry-signal bank has none of the kinds in settings.kind_weights")
    weights = np.array([w for _, w in kinds])
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))][0]


def diffuse_noise(kind: str, mic_xyz: np.ndarray, n: int, bank, rng: np.random.Generator, fs: int) -> np.ndarray:
    """Diffuse noise (M, n) of a given kind with the coherence of an isotropic field."""
    from train_tf import signals

    m = mic_xyz.shape[0]
    if kind == "babble":
        chans = np.stack([signals.babble(bank, n, rng) for _ in range(m)])
    else:
        chans = np.stack([signals.noise(kind, n, rng, fs) for _ in range(m)])
    return diffuse_mix(mic_xyz, chans.astype(np.float64), fs)


def render_window(room: RoomRirs, chosen: np.ndarray, settings: SimSettings, bank, rng: np.random.Generator) -> Window:
    """Convolve dry signals with the chosen positions' RIRs and add noise and level."""
    fs = settings.sample_rate_hz
    n_win = settings.window_samples
    n_mics = room.rirs.shape[1]
    rir_len = room.rirs.shape[2]
    clean = np.zeros((n_mics, n_win), dtype=np.float64)
    k = len(chosen)
    kinds = np.zeros(k, dtype=np.int8)
    rel_db = rng.uniform(*settings.source_level_db, size=k)
    for i, p in enumerate(chosen):
        kind = _pick_kind(settings, bank, rng)
        kinds[i] = KIND_CODES[kind]
        idx = int(rng.choice(bank.indices(kind)))
        dry = bank.segment(idx, n_win + rir_len - 1, rng).astype(np.float64) * 10.0 ** (rel_db[i] / 20.0)
        wet = fftconvolve(dry[None, :], room.rirs[p].astype(np.float64), mode="valid", axes=1)
        clean += wet[:, :n_win]
    clean *= room.mic_gain[:, None]
    p_ref = float(np.mean(clean ** 2)) if k else 0.0
    if p_ref <= 0.0:
        p_ref = 1.0
    snr_d = rng.uniform(*settings.snr_diffuse_db)
    snr_s = rng.uniform(*settings.snr_sensor_db)
    kind_d = settings.diffuse_kinds[int(rng.integers(len(settings.diffuse_kinds)))]
    diffuse = diffuse_noise(kind_d, room.mic_xyz, n_win, bank, rng, fs).astype(np.float64) * room.mic_gain[:, None]
    diffuse *= math.sqrt(p_ref / (np.mean(diffuse ** 2) + 1e-20) * 10.0 ** (-snr_d / 10.0))
    sensor = rng.standard_normal((n_mics, n_win)) * math.sqrt(p_ref * 10.0 ** (-snr_s / 10.0))
    level = rng.uniform(*settings.level_dbfs)
    gain = 10.0 ** (level / 20.0) / math.sqrt(p_ref)
    audio = ((clean + diffuse + sensor) * gain).T.astype(np.float32)
    direct_db = rel_db - 20.0 * np.log10(room.distance3d_m[chosen]) if k else np.zeros(0)
    if k:
        direct_db = direct_db - direct_db.max()
    return Window(audio=audio, azimuth_deg=room.azimuth_deg[chosen], elevation_deg=room.elevation_deg[chosen],
                  distance_m=room.distance_m[chosen], distance3d_m=room.distance3d_m[chosen], level_db=direct_db,
                  kind=kinds, snr_diffuse_db=snr_d, snr_sensor_db=snr_s, level_dbfs=level)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Full-scale float audio to int16 as an ADC would deliver it (rounded, clipped)."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def room_windows(settings: SimSettings, bank, rng: np.random.Generator) -> Iterator[tuple[Window, RoomRirs]]:
    """Simulate one room and render ``windows_per_room`` windows in it."""
    room = simulate_room(settings, rng)
    n_lo, n_hi = settings.n_sources
    for _ in range(settings.windows_per_room):
        k = int(rng.integers(n_lo, n_hi + 1))
        chosen = choose_positions(room.azimuth_deg, k, settings.min_source_separation_deg, rng)
        yield render_window(room, chosen, settings, bank, rng), room
