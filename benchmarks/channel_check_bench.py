"""Benchmark of the start-up channel-order check (edge_msl/channel_check.py) on simulated rooms:
how often it finds a rotated channel order, says "cannot tell", misses, or raises a false alarm,
for every built-in array; dead-mic and silence detection; CPU time per check.

    .venv/bin/python -m benchmarks.channel_check_bench --bank data/dry/bank-test.npz --scenes 20

Needs edge-msl[train] (pyroomacoustics rooms from train_tf.simulate, real dry speech from the bank).
Each scene: a shoebox room (RT60 0.2-0.8 s), 0-3 talkers, diffuse noise at 0-30 dB SNR, sensor
noise at 20-40 dB, 2 s at 16 kHz; spare channels (loopback, unused) are digital zero, carry an
unrelated playback, or carry a playback that a speaker in the room also plays to the mics ("heard").
The capture is rotated by a random k (the seeed-voicecard symptom). Prints a table on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from edge_msl.arrays import get_array, list_arrays
from edge_msl.channel_check import check_channels, lookalike_rotations


def scene(array_name: str, bank, rng: np.random.Generator, loopback: str, seconds: float = 2.0):
    """(mics (n, n_mics) float, spare-channel signal or None) for one random room."""
    from scipy.signal import fftconvolve

    from train_tf import simulate

    n_src = int(rng.integers(0, 4))
    settings = simulate.SimSettings(
        array=array_name, window_s=seconds, positions_per_room=5, max_image_order=6, anechoic_prob=0.0,
        rt60_s=(0.2, 0.8), n_sources=(n_src, n_src), snr_diffuse_db=(0.0, 30.0), snr_sensor_db=(20.0, 40.0),
        level_dbfs=(-45.0, -25.0), kind_weights=(("speech_real", 1.0), ("speech_synth", 1.0)))
    room = simulate.simulate_room(settings, rng)
    chosen = simulate.choose_positions(room.azimuth_deg[:4], n_src, 20.0, rng)
    mics = simulate.render_window(room, chosen, settings, bank, rng).audio.astype(np.float64)
    n = len(mics)
    if loopback == "zero":
        return mics, None
    kinds = bank.indices("music") if len(bank.indices("music")) else bank.indices("noise")
    rir = room.rirs[4].astype(np.float64)
    dry = bank.segment(int(rng.choice(kinds)), n + rir.shape[1] - 1, rng).astype(np.float64)
    played = dry[rir.shape[1] - 1:]
    if loopback == "heard":
        wet = fftconvolve(dry[None, :], rir, mode="valid", axes=1)[:, :n].T
        level = np.sqrt(np.mean(mics ** 2)) * 10 ** (rng.uniform(-6.0, 6.0) / 20.0)
        mics = mics + wet * level / (np.sqrt(np.mean(wet ** 2)) + 1e-12)
    return mics, played / (np.max(np.abs(played)) + 1e-12) * 0.1


def capture(array, mics, spare) -> np.ndarray:
    out = np.zeros((len(mics), array.n_channels))
    out[:, list(array.channel_map)] = mics
    if spare is not None:
        for c in range(array.n_channels):
            if c not in array.channel_map:
                out[:, c] = spare
    return np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)


def classify(rep, k: int, lookalikes: tuple[int, ...]) -> str:
    if k == 0 or k in lookalikes:
        if rep.status == "ok":
            return "ok" if k == 0 else "undetectable (ok)"
        return "false alarm" if rep.problem else "cannot tell"
    if rep.status == "rotated":
        return "found" if rep.rotation == k else "WRONG k"
    if rep.status == "ok":
        return "missed (ok)"
    return "cannot tell" if rep.status == "cannot_tell" else f"other: {rep.status}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", required=True, help="dry-signal bank (.npz) from python -m train_tf.signals build")
    ap.add_argument("--scenes", type=int, default=20, help="rooms per array")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--arrays", nargs="*", default=None, help="arrays (default: all built-in)")
    args = ap.parse_args(argv)
    from train_tf.signals import DryBank

    bank = DryBank.load(args.bank)
    rows = []
    for name in args.arrays or list_arrays():
        array = get_array(name)
        look = lookalike_rotations(array)
        spare = array.n_channels > array.n_mics
        rng = np.random.default_rng([args.seed, len(name)])
        counts: dict[str, int] = {}
        k0: dict[str, int] = {}
        dead_ok = silence_ok = 0
        cpu = []
        for _ in range(args.scenes):
            loop = str(rng.choice(["zero", "playback", "heard"])) if spare else "zero"
            mics, played = scene(name, bank, rng, loop)
            cap = capture(array, mics, played)
            k = int(rng.integers(1, array.n_channels))
            t = time.process_time()
            rep = check_channels(array, np.roll(cap, k, axis=1), sample_rate_hz=16000)
            cpu.append(time.process_time() - t)
            c = classify(rep, k, look)
            counts[c] = counts.get(c, 0) + 1
            c0 = classify(check_channels(array, cap, sample_rate_hz=16000), 0, look)
            k0[c0] = k0.get(c0, 0) + 1
            dead = mics.copy()
            dead[:, int(rng.integers(array.n_mics))] = 0.0
            rep = check_channels(array, capture(array, dead, played), sample_rate_hz=16000)
            dead_ok += rep.status == "bad_channels"
            quiet = rng.standard_normal(mics.shape) * 10 ** (-70 / 20)
            rep = check_channels(array, np.roll(capture(array, quiet, None), k, axis=1), sample_rate_hz=16000)
            silence_ok += rep.status == "cannot_tell" and rep.remapped_channel_map is None
        rows.append((name, args.scenes, k0, counts, dead_ok, silence_ok, statistics.median(cpu), look))
    n_fmt = "{:>4}"
    print("| array | scenes | k = 0: ok / cannot tell / false alarm | k != 0: found / cannot tell / missed / "
          "wrong k | dead mic flagged | silence: cannot tell | CPU s / check |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, k0, counts, dead_ok, silence_ok, cpu_s, look in rows:
        zero = " / ".join(n_fmt.format(k0.get(c, 0)).strip() for c in ("ok", "cannot tell", "false alarm"))
        if look and len(look) == get_array(name).n_channels - 1:
            rot = f"undetectable (symmetric): {counts.get('undetectable (ok)', 0)} ok"
            extra = [c for c in counts if c not in ("undetectable (ok)",)]
            if extra:
                rot += ", " + ", ".join(f"{counts[c]} {c}" for c in extra)
        else:
            rot = " / ".join(str(counts.get(c, 0)) for c in ("found", "cannot tell", "missed (ok)", "WRONG k"))
            other = {c: v for c, v in counts.items() if c not in ("found", "cannot tell", "missed (ok)", "WRONG k")}
            if other:
                rot += " (" + ", ".join(f"{v} {c}" for c, v in other.items()) + ")"
        print(f"| {name} | {n} | {zero} | {rot} | {dead_ok}/{n} | {silence_ok}/{n} | {cpu_s:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
