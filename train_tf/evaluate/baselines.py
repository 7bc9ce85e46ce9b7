"""pyroomacoustics' DOA baselines (SRP-PHAT, MUSIC, NormMUSIC, TOPS), each given the true number
of sources, with a cache of their estimates per window set. It must not know the model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.arrays import SPEED_OF_SOUND_M_S, get_array

BASELINES = ("SRP", "MUSIC", "NormMUSIC", "TOPS")

_BASE: dict[str, Any] = {}


def _baseline_init(mic_xy: np.ndarray, fs: int, nfft: int, freq_range: tuple[float, float]) -> None:
    os.environ["PRA_NUM_THREADS"] = "1"
    _BASE.update(mic_xy=mic_xy, fs=fs, nfft=nfft, freq_range=freq_range)


def _baseline_job(job: tuple[np.ndarray, int, Sequence[str]]) -> dict[str, list[float]]:
    import pyroomacoustics as pra

    audio, k, methods = job
    nfft = _BASE["nfft"]
    x = audio.astype(np.float64) / 32768.0
    spec = pra.transform.stft.analysis(x, nfft, nfft // 2).transpose(2, 1, 0)  # (M, F, frames)
    out = {}
    grid = np.radians(np.arange(0.0, 360.0, 1.0))
    for name in methods:
        doa = pra.doa.algorithms[name](_BASE["mic_xy"], _BASE["fs"], nfft, c=SPEED_OF_SOUND_M_S, num_src=k,
                                       azimuth=grid)
        doa.locate_sources(spec, num_src=k, freq_range=list(_BASE["freq_range"]))
        out[name] = [float(v) for v in np.degrees(np.atleast_1d(doa.azimuth_recon)) % 360.0]
    return out


def baseline_estimates(audio: np.ndarray, n_sources: np.ndarray, array_name: str, fs: int, methods: Sequence[str],
                       workers: int, nfft: int = 512, freq_range: tuple[float, float] = (300.0, 3500.0)
                       ) -> dict[str, list[list[float]]]:
    """Azimuth estimates of each baseline for every window, given its true number of sources."""
    import multiprocessing as mp

    mic_xy = get_array(array_name).positions()[:, :2].T.copy()
    jobs = [(audio[i], int(n_sources[i]), tuple(methods)) for i in range(len(audio))]
    res: list[dict[str, list[float]]]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers, _baseline_init, (mic_xy, fs, nfft, freq_range)) as pool:
            res = pool.map(_baseline_job, jobs, chunksize=8)
    else:
        _baseline_init(mic_xy, fs, nfft, freq_range)
        res = [_baseline_job(j) for j in jobs]
    return {m: [r[m] for r in res] for m in methods}


def baseline_estimates_cached(audio: np.ndarray, n_sources: np.ndarray, array_name: str, fs: int,
                              methods: Sequence[str], workers: int, cache: Path | None) -> dict[str, list[list[float]]]:
    """``baseline_estimates`` for every window (none for windows without sources), kept in ``cache``
    (JSON) for the next model evaluated on the same windows: the baselines do not depend on it."""
    n_sources = np.asarray(n_sources).astype(int)
    key = {"array": array_name, "fs": int(fs), "n_sources": n_sources.tolist(),
           "audio_sum": float(np.sum(np.abs(audio[:, ::97, :]), dtype=np.float64))}
    saved: dict[str, Any] = {}
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text())
        if {k: saved.get(k) for k in key} != key:
            print(f"baseline cache {cache} is for other windows; recomputing it", file=sys.stderr)
            saved = {}
    est: dict[str, list[list[float]]] = dict(saved.get("estimates", {}))
    todo = [m for m in methods if m not in est]
    if todo:
        idx = np.flatnonzero(n_sources > 0)
        new = baseline_estimates(audio[idx], n_sources[idx], array_name, fs, todo, workers)
        for m in todo:
            full: list[list[float]] = [[] for _ in range(len(n_sources))]
            for j, i in enumerate(idx):
                full[int(i)] = [float(v) for v in new[m][j]]
            est[m] = full
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({**key, "estimates": est}))
    return {m: est[m] for m in methods}
