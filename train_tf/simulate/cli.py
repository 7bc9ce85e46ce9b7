"""Room simulation for training: random shoebox rooms, arrays and sources, rendered windows.

The command line of ``python -m train_tf.simulate`` (what it makes: the package's docstring); it must
not hold simulation logic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from train_tf.simulate.render import room_windows, to_int16
from train_tf.simulate.settings import KIND_CODES, SimSettings
from train_tf.simulate.shards import RirBank, write_dataset
from train_tf.simulate.stats import label_stats, print_stats


def _settings_from_args(args: argparse.Namespace) -> SimSettings:
    s = SimSettings(array=args.array, window_s=args.window_s, sample_rate_hz=args.sample_rate_hz)
    if getattr(args, "min_sources", None) is not None or getattr(args, "max_sources", None) is not None:
        lo = args.min_sources if args.min_sources is not None else s.n_sources[0]
        hi = args.max_sources if args.max_sources is not None else s.n_sources[1]
        if not 0 <= lo <= hi:
            raise SystemExit(f"--min-sources/--max-sources must satisfy 0 <= min <= max, got {lo}..{hi}")
        s = s.replace(n_sources=(lo, hi))
    overrides: dict[str, Any] = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE (VALUE as JSON, e.g. rt60_s=[0.1,0.8]), got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    if overrides:
        try:
            s = SimSettings.from_dict({**s.to_dict(), **overrides})
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"bad --set: {exc}") from None
    return s


def _bench(args: argparse.Namespace, settings: SimSettings) -> int:
    """Throughput of window mode, RIR-bank simulation and on-the-fly mixing, as a table."""
    import tempfile

    from train_tf.signals import DryBank

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        win = write_dataset(Path(tmp) / "w", "windows", args.n, settings, args.seed, args.bank, 16, args.workers)
        rir = write_dataset(Path(tmp) / "r", "rir-bank", args.rooms, settings, args.seed, None, 4, args.workers)
        rir_bank = RirBank(Path(tmp) / "r")
        bank = DryBank.load(args.bank)
        rng = np.random.default_rng(args.seed)
        rir_bank.mix(bank, rng)  # warm-up
        n_mix = 200
        t0 = time.perf_counter()
        for _ in range(n_mix):
            rir_bank.mix(bank, rng)
        mix_rate = n_mix / (time.perf_counter() - t0)
    rows = [
        ("windows mode (simulate + render + write)", f"{args.workers} proc", f"{win['per_second']:.1f} windows/s"),
        ("rir-bank mode (simulate + write)", f"{args.workers} proc",
         f"{rir['per_second']:.2f} rooms/s = {rir['per_second'] * settings.positions_per_room:.1f} RIR sets/s"),
        ("rir-bank on-the-fly mixing (numpy)", "1 proc", f"{mix_rate:.1f} windows/s"),
    ]
    print(f"array {settings.array}, window {settings.window_s} s, {settings.n_sources[0]}-{settings.n_sources[1]} "
          f"sources, {settings.windows_per_room} windows per room, {settings.positions_per_room} positions per room")
    for name, procs, rate in rows:
        print(f"{name:45s} {procs:>7s}  {rate}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train_tf.simulate windows|rir-bank|stats|scene``."""
    parser = argparse.ArgumentParser(prog="python -m train_tf.simulate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--array", default="uca8-r10", help="built-in array name (default uca8-r10)")
        p.add_argument("--window-s", type=float, default=0.5, help="window length in seconds (default 0.5)")
        p.add_argument("--sample-rate-hz", type=int, default=16000)
        p.add_argument("--min-sources", type=int, default=None, help="fewest sources per window (default 0)")
        p.add_argument("--max-sources", type=int, default=None, help="most sources per window (default 4)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override any SimSettings field, VALUE as JSON (repeatable), e.g. --set rt60_s=[0.1,0.8]")

    p = sub.add_parser("windows", help="write rendered windows with labels in .npz shards")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of windows")
    p.add_argument("--bank", required=True, help="dry-signal bank (.npz from python -m train_tf.signals build)")
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("rir-bank", help="write RIRs of random rooms (mix dry signals at training time)")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--rooms", type=int, required=True)
    p.add_argument("--shard-size", type=int, default=16, help="rooms per shard")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("stats", help="print label statistics of a window dataset and plot them")
    p.add_argument("dataset")
    p.add_argument("--png", help="write the histograms to this PNG")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p = sub.add_parser("bench", help="measure throughput of both modes (windows/s, rooms/s, mixed windows/s)")
    common(p)
    p.add_argument("--bank", required=True)
    p.add_argument("--n", type=int, default=256, help="windows to write in window mode")
    p.add_argument("--rooms", type=int, default=32, help="rooms to simulate in rir-bank mode")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=None, help="scratch directory (default: a temporary one)")
    p = sub.add_parser("scene", help="simulate one scene, write it as a WAV and print its ground truth")
    common(p)
    p.add_argument("--bank", required=True)
    p.add_argument("--wav", help="write the window here as the board captures it (all its channels, 16-bit PCM)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    if args.cmd == "stats":
        stats = label_stats(args.dataset, args.png)
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print_stats(stats)
        if args.png:
            print(f"\nplot: {args.png}", file=sys.stderr)
        return 0
    settings = _settings_from_args(args)
    if args.cmd == "bench":
        return _bench(args, settings)
    if args.cmd == "scene":
        from train_tf.signals import DryBank

        bank = DryBank.load(args.bank)
        rng = np.random.default_rng(args.seed)
        win, room = next(room_windows(settings.replace(windows_per_room=1), bank, rng))
        truth = {
            "array": settings.array, "room_dim_m": [round(float(v), 2) for v in room.room_dim_m],
            "rt60_s": round(room.rt60_s, 3), "snr_diffuse_db": round(win.snr_diffuse_db, 1),
            "snr_sensor_db": round(win.snr_sensor_db, 1), "level_dbfs": round(win.level_dbfs, 1),
            "sources": [{"azimuth_deg": round(float(a), 1), "elevation_deg": round(float(e), 1),
                         "distance_m": round(float(d), 2), "level_db": round(float(lv), 1),
                         "kind": [k for k, c in KIND_CODES.items() if c == kd][0]}
                        for a, e, d, lv, kd in zip(win.azimuth_deg, win.elevation_deg, win.distance_m,
                                                   win.level_db, win.kind)],
        }
        if args.wav:
            import wave

            from edge_msl.arrays import get_array, to_capture

            pcm = to_capture(get_array(settings.array), to_int16(win.audio))  # the board's capture layout
            with wave.open(args.wav, "wb") as w:
                w.setnchannels(pcm.shape[1])
                w.setsampwidth(2)
                w.setframerate(settings.sample_rate_hz)
                w.writeframes(pcm.tobytes())
            truth["wav"] = args.wav
        print(json.dumps(truth, indent=2))
        return 0
    if args.cmd == "windows":
        summary = write_dataset(args.out, "windows", args.n, settings, args.seed, args.bank, args.shard_size,
                                args.workers)
    else:
        summary = write_dataset(args.out, "rir-bank", args.rooms, settings, args.seed, None, args.shard_size,
                                args.workers)
    print(json.dumps(summary))
    return 0
