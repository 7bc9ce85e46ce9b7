"""Simulate turn-taking recordings (talkers start, stop and overlap) in real pyroomacoustics rooms,
with their ground truth: the bundled example (``edge_msl/examples/``) and the pipeline tests use it.

    .venv/bin/python -m train_tf.make_example --bank data/dry/bank-test.npz

The training side makes the example the device package ships; ``edge_msl`` never imports this. Use
test-split dry signals only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import edge_msl

EXAMPLES = Path(edge_msl.__file__).resolve().parent / "examples"
"""Where the bundled example lives (in the device package)."""
EXAMPLE_NAME = "uca8-r10-3talkers"
"""Stem of the bundled example: ``<stem>.wav`` and ``<stem>.truth.json``."""
EXAMPLE_SEED = 7
"""Seed of the bundled example (room, positions, voices, noise)."""
EXAMPLE_SCHEDULE = (((0.0, 1.9),), ((1.3, 3.3),), ((2.7, 4.8),))
"""Who talks when in the bundled example: three talkers, each overlapping the next by 0.6 s."""


def random_schedule(n_talkers: int, duration_s: float, rng: np.random.Generator,
                    turn_s: tuple[float, float] = (1.2, 3.0), gap_s: tuple[float, float] = (-0.8, 0.6)
                    ) -> list[list[tuple[float, float]]]:
    """Talkers taking turns in random order; consecutive turns overlap or pause by ``gap_s``."""
    schedule: list[list[tuple[float, float]]] = [[] for _ in range(n_talkers)]
    t = float(rng.uniform(0.0, 0.5))
    last = -1
    while t < duration_s - 0.8:
        who = int(rng.choice([k for k in range(n_talkers) if k != last])) if n_talkers > 1 else 0
        end = min(duration_s, t + rng.uniform(*turn_s))
        prev = schedule[who][-1] if schedule[who] else None
        if prev is not None and t <= prev[1] + 0.05:
            schedule[who][-1] = (prev[0], end)  # the same talker again right away: one longer turn
        else:
            schedule[who].append((round(t, 2), round(end, 2)))
        last = who
        t = max(0.0, end + rng.uniform(*gap_s))
    return [[(round(a, 2), round(b, 2)) for a, b in s] for s in schedule]


def render_scene(bank, schedule: Sequence[Sequence[tuple[float, float]]], duration_s: float, seed: int,
                 min_separation_deg: float = 40.0, snr_diffuse_db: float = 20.0, snr_sensor_db: float = 30.0,
                 level_dbfs: float = -30.0, rt60_s: tuple[float, float] = (0.2, 0.6),
                 distance_m: tuple[float, float] = (0.8, 2.5), array: str = "uca8-r10",
                 pause_s: tuple[float, float] = (0.08, 0.2)) -> tuple[np.ndarray, dict[str, Any]]:
    """Render int16 audio (n, mics) of talkers following ``schedule`` in one simulated room.

    The room, array placement and source positions come from ``train_tf.simulate.simulate_room``
    (image sources + diffuse tail, mic position and gain errors); diffuse noise with the array's
    isotropic coherence and sensor noise are added as in training data. Returns the audio and
    its truth dict (``edge-msl-truth`` format); ``pause_s`` is the range of pauses inside a turn.
    """
    from scipy.signal import fftconvolve

    from train_tf.scenes import speech_turn, voices
    from train_tf.simulate import SimSettings, choose_positions, diffuse_noise, simulate_room, to_int16

    rng = np.random.default_rng(seed)
    settings = SimSettings(array=array, anechoic_prob=0.0, rt60_s=rt60_s, source_distance_m=distance_m,
                           source_elevation_deg=(-20.0, 30.0), positions_per_room=8)
    n_talkers = len(schedule)
    for _ in range(20):
        room = simulate_room(settings, rng)
        chosen = choose_positions(room.azimuth_deg, n_talkers, min_separation_deg, rng)
        if len(chosen) == n_talkers:
            break
    else:
        raise RuntimeError(f"no room gave {n_talkers} positions {min_separation_deg} deg apart")
    fs = settings.sample_rate_hz
    n = int(round(duration_s * fs))
    vs = voices(bank)
    talker_voices = [vs[int(k)] for k in rng.permutation(len(vs))[:n_talkers]] if len(vs) >= n_talkers else \
        [vs[k % len(vs)] for k in range(n_talkers)]
    n_mics = room.rirs.shape[1]
    clean = np.zeros((n_mics, n))
    talking = np.zeros(n, dtype=bool)
    rel_db = rng.uniform(-3.0, 3.0, size=n_talkers)
    for k, p in enumerate(chosen):
        dry = np.zeros(n)
        for a, b in schedule[k]:
            i0, i1 = int(round(a * fs)), min(n, int(round(b * fs)))
            if i1 > i0:
                dry[i0:i1] = speech_turn(bank, talker_voices[k], i1 - i0, rng, pause_s)
                talking[i0:i1] = True
        dry *= 10.0 ** (rel_db[k] / 20.0)
        clean += fftconvolve(dry[None, :], room.rirs[p].astype(np.float64), axes=1)[:, :n]
    clean *= room.mic_gain[:, None]
    p_ref = float(np.mean(clean[:, talking] ** 2)) if talking.any() else 1.0
    diffuse = diffuse_noise("pink", room.mic_xyz, n, bank, rng, fs).astype(np.float64) * room.mic_gain[:, None]
    diffuse *= math.sqrt(p_ref / (np.mean(diffuse ** 2) + 1e-20) * 10.0 ** (-snr_diffuse_db / 10.0))
    sensor = rng.standard_normal((n_mics, n)) * math.sqrt(p_ref * 10.0 ** (-snr_sensor_db / 10.0))
    gain = 10.0 ** (level_dbfs / 20.0) / math.sqrt(p_ref)
    pcm = to_int16(((clean + diffuse + sensor) * gain).T)
    truth = {
        "format": "edge-msl-truth", "version": 1, "array": array, "sample_rate_hz": fs,
        "duration_s": round(n / fs, 3), "seed": seed, "bank": str(bank.meta.get("content_sha256", ""))[:16],
        "room_dim_m": [round(float(v), 2) for v in room.room_dim_m], "rt60_s": round(room.rt60_s, 3),
        "snr_diffuse_db": snr_diffuse_db, "snr_sensor_db": snr_sensor_db, "level_dbfs": level_dbfs,
        "sources": [{"name": f"talker {k + 1}", "voice": talker_voices[k],
                     "azimuth_deg": round(float(room.azimuth_deg[p]), 1),
                     "elevation_deg": round(float(room.elevation_deg[p]), 1),
                     "distance_m": round(float(room.distance_m[p]), 2),
                     "level_db": round(float(rel_db[k]), 1),
                     "active_s": [[a, b] for a, b in schedule[k]]} for k, p in enumerate(chosen)],
    }
    return pcm, truth


def write_scene(stem: str | Path, pcm: np.ndarray, truth: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.wav`` (16-bit PCM) and ``<stem>.truth.json``."""
    from edge_msl.audio_io import write_wav

    stem = Path(stem)
    wav, tj = stem.with_suffix(".wav"), stem.with_suffix(".truth.json")
    write_wav(wav, pcm, int(truth["sample_rate_hz"]))
    truth = dict(truth, wav=wav.name)
    tj.write_text(json.dumps(truth, indent=2) + "\n")
    return wav, tj


def main(argv: list[str] | None = None) -> int:
    """Write the bundled example (or another scene with --seed/--out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", required=True, help="dry-signal bank; use the test split (data/dry/bank-test.npz)")
    parser.add_argument("--out", default=str(EXAMPLES / EXAMPLE_NAME), help="output stem (default: the bundled example)")
    parser.add_argument("--seed", type=int, default=EXAMPLE_SEED)
    args = parser.parse_args(argv)
    from train_tf.signals import DryBank

    bank = DryBank.load(args.bank)
    duration = max(b for turns in EXAMPLE_SCHEDULE for _, b in turns)
    pcm, truth = render_scene(bank, EXAMPLE_SCHEDULE, duration, args.seed)
    truth["generated_by"] = f"python -m train_tf.make_example --bank {args.bank} --seed {args.seed}"
    wav, tj = write_scene(args.out, pcm, truth)
    print(json.dumps({"wav": str(wav), "bytes": wav.stat().st_size, "truth": str(tj),
                      "sources": truth["sources"], "rt60_s": truth["rt60_s"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
