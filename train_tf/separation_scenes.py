"""Scenes for per-talker audio: 2-3 (or more) talkers talking over each other in a pyroomacoustics shoebox, 0.8-3 m
from the array and above or below its plane, with each talker's direct sound and early image at mic 0 as references.
Used by benchmarks/separation_bench.py, benchmarks/elevation_bench.py and train_tf.separate_postfilter; it renders
audio and writes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_msl.arrays import get_array

FS = 16000
EARLY_S = 0.05
"""The reference keeps the direct sound and echoes up to this long after it (the 'early' image)."""
DIRECT_S = 0.003
"""The second reference, the direct sound alone: up to this long after the RIR's peak (pyroomacoustics'
fractional-delay filter is 81 taps, 2.5 ms either side)."""


@dataclass
class Scene:
    seed: int
    array: str
    rt60_s: float
    audio: np.ndarray  # (n, n_mics) float, mic order
    early: np.ndarray  # (K, n) each talker's early image at mic 0
    direct: np.ndarray  # (K, n) each talker's direct sound at mic 0
    azimuth_deg: np.ndarray  # (K,)
    elevation_deg: np.ndarray  # (K,) signed: negative below the array plane
    distance_m: np.ndarray  # (K,) 3-D distance from the array centre
    side: str


def render_scene(bank, array_name: str, seed: int, n_talkers: int, rt60_s: tuple[float, float],
                 duration_s: float = 6.0, elevation_deg: tuple[float, float] = (0.0, 60.0),
                 distance_m: tuple[float, float] = (0.8, 3.0), side: str | None = None) -> Scene:
    """One scene: talkers who all talk (with their own pauses) from 0.3-1 s to the end."""
    import pyroomacoustics as pra
    from scipy.signal import fftconvolve

    from train_tf.scenes import speech_turn, voices
    from train_tf.simulate import diffuse_noise

    rng = np.random.default_rng(seed)
    array = get_array(array_name)
    rt60 = float(rng.uniform(*rt60_s))
    n = int(duration_s * FS)
    side = side or ("above" if rng.uniform() < 0.5 else "below")
    for _ in range(200):
        dim = np.array([rng.uniform(5.0, 8.0), rng.uniform(4.0, 7.0), rng.uniform(3.0, 3.6)])
        h = rng.uniform(0.5, 0.9) if side == "above" else dim[2] - rng.uniform(0.5, 0.9)
        centre = np.array([rng.uniform(2.2, dim[0] - 2.2), rng.uniform(1.8, dim[1] - 1.8), h])
        pts, azs, els, ds = [], [], [], []
        for _ in range(n_talkers):
            for _ in range(200):
                az = rng.uniform(0, 360)
                if any(abs((az - a + 180) % 360 - 180) < 30.0 for a in azs):
                    continue
                el = rng.uniform(*elevation_deg) * (1 if side == "above" else -1)
                r = rng.uniform(*distance_m)
                p = centre + r * np.array([math.cos(math.radians(el)) * math.cos(math.radians(az)),
                                           math.cos(math.radians(el)) * math.sin(math.radians(az)),
                                           math.sin(math.radians(el))])
                if np.all(p > 0.3) and np.all(p < dim - 0.3):
                    pts.append(p), azs.append(az), els.append(el), ds.append(r)
                    break
        if len(pts) == n_talkers:
            break
    else:
        raise RuntimeError(f"scene {seed}: cannot place {n_talkers} talkers")
    e_abs, max_order = pra.inverse_sabine(rt60, dim)
    room = pra.ShoeBox(dim, fs=FS, materials=pra.Material(e_abs), max_order=min(max_order, 24),
                       use_rand_ism=True, max_rand_disp=0.05, air_absorption=False)
    mics = array.positions() + centre
    room.add_microphone_array(mics.T)
    for p in pts:
        room.add_source(p)
    # the randomized image sources: pyroomacoustics (0.10 here) draws them from its own generators (numpy's and
    # libroom's C++ one), older versions from numpy's global state; seed both, or every run is other scenes
    if hasattr(getattr(pra, "random", None), "seed"):
        pra.random.seed(numpy=seed % 2 ** 32, libroom=seed % 2 ** 32)
    np.random.seed(seed % 2 ** 32)
    room.compute_rir()
    names = voices(bank)
    order = rng.permutation(len(names))
    clean = np.zeros((array.n_mics, n))
    early = np.zeros((n_talkers, n))
    direct_only = np.zeros((n_talkers, n))
    for k in range(n_talkers):
        dry = np.zeros(n)
        t0 = int(rng.uniform(0.3, 1.0) * FS)
        dry[t0:] = speech_turn(bank, names[order[k % len(names)]], n - t0, rng, (0.08, 0.4))
        dry *= 10 ** (rng.uniform(-2, 2) / 20)
        L = max(len(room.rir[m][k]) for m in range(array.n_mics))
        rir = np.zeros((array.n_mics, L))
        for m in range(array.n_mics):
            rir[m, :len(room.rir[m][k])] = room.rir[m][k]
        clean += fftconvolve(dry[None], rir, axes=1)[:, :n]
        direct = int(np.argmax(np.abs(rir[0])))
        e = rir[0, :direct + int(EARLY_S * FS)]
        early[k] = fftconvolve(dry, e)[:n]
        direct_only[k] = fftconvolve(dry, rir[0, :direct + int(DIRECT_S * FS)])[:n]
    p_ref = float(np.mean(clean ** 2))
    noise = diffuse_noise("pink", mics, n, bank, rng, FS).astype(np.float64)
    noise *= math.sqrt(p_ref / np.mean(noise ** 2) * 10 ** (-rng.uniform(20, 30) / 10))
    noise += rng.standard_normal(noise.shape) * math.sqrt(p_ref * 10 ** (-40 / 10))
    g = 10 ** (-26 / 20) / math.sqrt(p_ref)
    return Scene(seed, array_name, rt60, ((clean + noise) * g).T, early * g, direct_only * g, np.mod(azs, 360), np.array(els),
                 np.array(ds), side)
