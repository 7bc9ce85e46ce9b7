"""Datasets on disk: window-mode and RIR-bank shards (.npz) written by a pool of workers, resumable and
deterministic for a seed, and read back (:class:`RirBank` mixes windows from a bank on the fly).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msl.regions import encode_batch
from train_tf.simulate.render import Window, choose_positions, render_window, room_windows, to_int16
from train_tf.simulate.rooms import RoomRirs, simulate_room
from train_tf.simulate.settings import FORMAT_VERSION, SimSettings


def _pad(values: Sequence[np.ndarray], width: int, fill: float, dtype) -> np.ndarray:
    out = np.full((len(values), width), fill, dtype=dtype)
    for i, v in enumerate(values):
        out[i, :len(v)] = v
    return out


def render_shard(settings: SimSettings, bank, seed: int, shard: int, n_samples: int) -> dict[str, np.ndarray]:
    """Arrays of one window-mode shard; depends only on (settings, bank, seed, shard)."""
    rng = np.random.default_rng([seed, shard])
    windows: list[Window] = []
    rooms: list[RoomRirs] = []
    while len(windows) < n_samples:
        for win, room in room_windows(settings, bank, rng):
            windows.append(win)
            rooms.append(room)
            if len(windows) == n_samples:
                break
    k_max = max(settings.n_sources[1], 1)
    az = _pad([w.azimuth_deg for w in windows], k_max, np.nan, np.float32)
    dist = _pad([w.distance_m for w in windows], k_max, np.nan, np.float32)
    level = _pad([w.level_db for w in windows], k_max, np.nan, np.float32)
    return {
        "audio": np.stack([to_int16(w.audio) for w in windows]),
        "n_sources": np.array([len(w.azimuth_deg) for w in windows], dtype=np.int8),
        "azimuth_deg": az,
        "elevation_deg": _pad([w.elevation_deg for w in windows], k_max, np.nan, np.float32),
        "distance_m": dist,
        "distance3d_m": _pad([w.distance3d_m for w in windows], k_max, np.nan, np.float32),
        "level_db": level,
        "kind": _pad([w.kind for w in windows], k_max, -1, np.int8),
        "rt60_s": np.array([r.rt60_s for r in rooms], dtype=np.float32),
        "room_dim_m": np.stack([r.room_dim_m for r in rooms]).astype(np.float32),
        "snr_diffuse_db": np.array([w.snr_diffuse_db for w in windows], dtype=np.float32),
        "snr_sensor_db": np.array([w.snr_sensor_db for w in windows], dtype=np.float32),
        "level_dbfs": np.array([w.level_dbfs for w in windows], dtype=np.float32),
        "region_target": encode_batch(settings.regions, az, dist, np.where(np.isfinite(level), level, 0.0)),
    }


def render_rir_shard(settings: SimSettings, seed: int, shard: int, n_rooms: int) -> dict[str, np.ndarray]:
    """Arrays of one RIR-bank shard (float16 RIRs cut to ``rir_bank_samples``)."""
    rng = np.random.default_rng([seed, shard])
    rooms = [simulate_room(settings, rng, rir_samples=settings.rir_bank_samples) for _ in range(n_rooms)]
    return {
        "rirs": np.stack([r.rirs for r in rooms]).astype(np.float16),
        "azimuth_deg": np.stack([r.azimuth_deg for r in rooms]).astype(np.float32),
        "elevation_deg": np.stack([r.elevation_deg for r in rooms]).astype(np.float32),
        "distance_m": np.stack([r.distance_m for r in rooms]).astype(np.float32),
        "distance3d_m": np.stack([r.distance3d_m for r in rooms]).astype(np.float32),
        "rt60_s": np.array([r.rt60_s for r in rooms], dtype=np.float32),
        "room_dim_m": np.stack([r.room_dim_m for r in rooms]).astype(np.float32),
        "mic_xyz": np.stack([r.mic_xyz for r in rooms]).astype(np.float32),
        "mic_gain": np.stack([r.mic_gain for r in rooms]).astype(np.float32),
    }


class RirBank:
    """RIR-bank shards loaded in memory, mixed with dry signals into windows on the fly."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        meta = _read_meta(directory)
        if meta.get("mode") != "rir-bank":
            raise ValueError(f"{directory} is not an RIR bank (mode {meta.get('mode')!r}); "
                             f"write one with: python -m train_tf.simulate rir-bank --out {directory}")
        self.settings = SimSettings.from_dict(meta["settings"])
        self.arrays = load_shards(shard_files(directory))

    @property
    def n_rooms(self) -> int:
        """Rooms in the bank."""
        return int(self.arrays["rirs"].shape[0])

    def room(self, r: int) -> RoomRirs:
        """Room ``r`` as float32 RIRs."""
        a = self.arrays
        return RoomRirs(rirs=a["rirs"][r].astype(np.float32), azimuth_deg=a["azimuth_deg"][r].astype(np.float64),
                        elevation_deg=a["elevation_deg"][r].astype(np.float64),
                        distance_m=a["distance_m"][r].astype(np.float64),
                        distance3d_m=a["distance3d_m"][r].astype(np.float64), room_dim_m=a["room_dim_m"][r],
                        rt60_s=float(a["rt60_s"][r]), mic_xyz=a["mic_xyz"][r].astype(np.float64),
                        mic_gain=a["mic_gain"][r].astype(np.float64))

    def mix(self, bank, rng: np.random.Generator, settings: SimSettings | None = None) -> Window:
        """One window from a random room and random positions of the bank."""
        settings = settings or self.settings
        room = self.room(int(rng.integers(self.n_rooms)))
        k = int(rng.integers(settings.n_sources[0], settings.n_sources[1] + 1))
        chosen = choose_positions(room.azimuth_deg, k, settings.min_source_separation_deg, rng)
        return render_window(room, chosen, settings, bank, rng)


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {directory} is not a dataset written by train_tf.simulate")
    return json.loads(path.read_text())


_WORKER: dict[str, Any] = {}
_SINGLE_THREAD_ENV = {"PRA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                      "MKL_NUM_THREADS": "1"}


def _worker_init(bank_path: str | None) -> None:
    os.environ.update(_SINGLE_THREAD_ENV)
    if bank_path:
        from train_tf.signals import DryBank

        _WORKER["bank"] = DryBank.load(bank_path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _shard_job(job: tuple[str, str, dict[str, Any], int, int, int]) -> tuple[int, int, float]:
    mode, out_dir, settings_dict, seed, shard, count = job
    settings = SimSettings.from_dict(settings_dict)
    t0 = time.perf_counter()
    if mode == "windows":
        arrays = render_shard(settings, _WORKER["bank"], seed, shard, count)
    else:
        arrays = render_rir_shard(settings, seed, shard, count)
    _write_npz(Path(out_dir) / f"shard-{shard:05d}.npz", arrays)
    return shard, count, time.perf_counter() - t0


def _shard_ok(path: Path) -> bool:
    try:
        with np.load(path) as z:
            return len(z.files) > 0
    except Exception:  # a truncated or corrupt shard is rewritten
        return False


def write_dataset(out_dir: str | Path, mode: str, n_items: int, settings: SimSettings, seed: int,
                  bank_path: str | Path | None, shard_size: int, workers: int, progress: bool = True) -> dict[str, Any]:
    """Write ``n_items`` windows (mode ``windows``) or rooms (mode ``rir-bank``) in shards.

    Deterministic for a seed: shard i depends only on (settings, dry bank, seed, i). Shards
    already on disk are kept, so an interrupted run resumes where it stopped.
    Returns a summary with the measured throughput.
    """
    from tqdm import tqdm

    if mode not in ("windows", "rir-bank"):
        raise ValueError(f"mode must be 'windows' or 'rir-bank', got {mode!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bank_hash = None
    if mode == "windows":
        if bank_path is None:
            raise ValueError("window mode needs a dry-signal bank (--bank); build one with python -m train_tf.signals build")
        from train_tf.signals import DryBank

        bank_hash = DryBank.load(bank_path).content_hash
    meta = {"format_version": FORMAT_VERSION, "mode": mode, "seed": seed, "n_items": n_items,
            "shard_size": shard_size, "settings": settings.to_dict(), "bank_hash": bank_hash,
            "array": settings.mic_array().to_dict()}
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        keys = ("format_version", "mode", "seed", "shard_size", "settings", "bank_hash")
        if any(old.get(k) != meta.get(k) for k in keys):
            raise ValueError(f"{out} already holds a dataset with other settings, seed or bank; "
                             f"use another --out or delete it")
    meta_path.write_text(json.dumps(meta, indent=2))
    n_shards = math.ceil(n_items / shard_size)
    jobs = []
    done = 0
    for s in range(n_shards):
        count = min(shard_size, n_items - s * shard_size)
        if _shard_ok(out / f"shard-{s:05d}.npz"):
            done += count
            continue
        jobs.append((mode, str(out), settings.to_dict(), seed, s, count))
    unit = "windows" if mode == "windows" else "rooms"
    t0 = time.perf_counter()
    bar = tqdm(total=n_items, initial=done, unit=unit, disable=not progress, file=sys.stderr, smoothing=0.1)
    made = 0
    if jobs:
        import multiprocessing as mp

        # Workers are always fresh spawned processes with single-threaded numeric libraries, so a
        # shard comes out bit-identical whatever the worker count (multi-threaded BLAS sums in
        # another order); the variables must be set before the child imports numpy.
        saved = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}
        os.environ.update(_SINGLE_THREAD_ENV)
        try:
            ctx = mp.get_context("spawn")
            with ctx.Pool(max(1, workers), initializer=_worker_init,
                          initargs=(str(bank_path) if bank_path else None,)) as pool:
                for _, count, _ in pool.imap_unordered(_shard_job, jobs):
                    bar.update(count)
                    made += count
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    bar.close()
    elapsed = time.perf_counter() - t0
    summary = {"out": str(out), "mode": mode, "made": made, "resumed": done, "seconds": round(elapsed, 2),
               "per_second": round(made / elapsed, 3) if made and elapsed > 0 else None, "workers": workers}
    (out / "done.json").write_text(json.dumps(summary, indent=2))
    return summary


def shard_files(directory: str | Path) -> list[Path]:
    """The shard files of a dataset or RIR bank, in order; refuses a directory without any."""
    files = sorted(f for f in Path(directory).glob("shard-*.npz") if f.name[6:-4].isdigit())  # not *.tmp.npz
    if not files:
        raise ValueError(f"{directory} holds no shards; write some with python -m train_tf.simulate")
    return files


def load_shards(paths: Sequence[Path], keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of several shards concatenated along the first axis (all keys, or only ``keys``)."""
    parts = []
    for path in paths:
        with np.load(path) as z:
            parts.append({k: z[k] for k in (keys or z.files)})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load_windows(directory: str | Path) -> dict[str, np.ndarray]:
    """All shards of a window-mode dataset concatenated (fine for small sets)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    if meta.get("mode") != "windows":
        raise ValueError(f"{directory} is not a window dataset (mode {meta.get('mode')!r})")
    return load_shards(shard_files(directory))
