"""List the built-in microphone arrays, or show one array's geometry and channel map.

Positions are in metres in the array frame: x forward, y left, z up; azimuth of each mic is
counter-clockwise from x. ``--json`` prints a table that can be pasted into a config file
as a custom array.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..arrays import ArrayConfigError, azimuth_deg, get_array, list_arrays


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl arrays``."""
    parser.add_argument("name", nargs="?", help="array to show (default: list all)")
    parser.add_argument("--json", action="store_true", help="print the array description as JSON")


def main(args: argparse.Namespace) -> int:
    """Print arrays to stdout."""
    try:
        names = [args.name] if args.name else list_arrays()
        arrays = [get_array(n) for n in names]
    except ArrayConfigError as exc:
        print(f"edge-msl arrays: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = [a.to_dict() for a in arrays]
        print(json.dumps(out[0] if args.name else out, indent=2))
        return 0
    if not args.name:
        print(f"{'name':18s} {'mics':>4s} {'channels':>8s} {'rate_hz':>7s} {'aperture_mm':>11s}")
        for a in arrays:
            print(f"{a.name:18s} {a.n_mics:4d} {a.n_channels:8d} {a.native_rate_hz:7d} {a.aperture_m() * 1000:11.1f}")
        return 0
    a = arrays[0]
    print(f"{a.name}: {a.n_mics} mics, {a.n_channels} capture channels, {a.native_rate_hz} Hz")
    print(f"source: {a.source}")
    if a.notes:
        print(f"notes: {a.notes}")
    print(f"{'mic':>3s} {'channel':>7s} {'x_m':>8s} {'y_m':>8s} {'z_m':>8s} {'azimuth_deg':>11s}")
    for i, (p, ch) in enumerate(zip(a.positions_m, a.channel_map)):
        az = float(azimuth_deg([p[0], p[1]])) if abs(p[0]) + abs(p[1]) > 1e-9 else float("nan")
        print(f"{i:3d} {ch:7d} {p[0]:8.4f} {p[1]:8.4f} {p[2]:8.4f} {az:11.1f}")
    return 0
