"""Print a model's parameters (array, regions, window, quantization, hash) and the runtime that runs it.

Without --model: the packaged model for --array (default uca8-r10). The model is loaded, so a
model that would be refused at run time is refused here with the same one-line message (exit 2).
``--json`` prints one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl info``."""
    parser.add_argument("--model", default=None, help="int8 .tflite with its .json (default: the packaged model)")
    parser.add_argument("--array", default=None, help="built-in array name or TOML file with an [array] table; the "
                                                      "model must match its geometry")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def describe(model) -> dict:
    """The facts ``edge-msl info`` prints, as a JSON-friendly dict."""
    from ..symmetry import model_cycle

    info = model.info
    raw = info.raw
    layout = info.layout
    return {
        "model": str(info.path),
        "sidecar": str(info.sidecar_path),
        "sha256": info.sha256,
        "bytes": info.path.stat().st_size,
        "runtime": model.runtime,
        "runtime_version": getattr(model, "runtime_version", None),
        "num_threads": getattr(model, "num_threads", None),
        "array": {"name": info.array.name, "n_mics": info.array.n_mics, "n_channels": info.array.n_channels,
                  "channel_map": list(info.array.channel_map),
                  "aperture_mm": round(info.array.aperture_m() * 1000, 1)},
        "sample_rate_hz": info.sample_rate_hz,
        "window_samples": info.window_samples,
        "window_s": info.window_samples / info.sample_rate_hz,
        "hop_s": raw.get("hop_s"),
        "regions": layout.to_dict(),
        "threshold": info.threshold,
        "decode": info.temporal.to_dict(),
        "symmetry": info.symmetry,
        "temporal_head": _head(model),
        "symmetric_images": len(model_cycle(info.array.positions(), layout)),
        "input_scaling": raw.get("input_scaling"),
        "input": raw.get("input"),
        "output": raw.get("output"),
        "macs_per_window": raw.get("macs_per_window"),
        "converter": raw.get("converter"),
    }


def _head(model) -> dict | None:
    """The model's learned temporal head: its file, size, windows read and MACs (None without one)."""
    side = model.info.raw.get("temporal_head")
    if not side:
        return None
    from ..model_store import head_file

    path = head_file(model.info.path)
    k, dim = side["input"]["shape"][1:3]
    return {"file": str(path), "bytes": path.stat().st_size, "k": k, "embedding": dim}


def main(args: argparse.Namespace) -> int:
    """Load the model and print what it is."""
    from ..arrays import ArrayConfigError
    from ..runtime import ModelError, load_model
    from .locate import load_array

    try:
        array = load_array(args.array) if args.array else None
        model = load_model(args.model, array=array)
    except (ArrayConfigError, ModelError) as exc:
        print(f"edge-msl info: {exc}", file=sys.stderr)
        return 2
    d = describe(model)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    lay = d["regions"]
    q_in, q_out = d["input"] or {}, d["output"] or {}
    rows = [
        ("model", d["model"]),
        ("sha256", d["sha256"]),
        ("size", f"{d['bytes'] / 1e6:.2f} MB, {d['macs_per_window'] / 1e6:.1f} M MACs per window"
         if d["macs_per_window"] else f"{d['bytes'] / 1e6:.2f} MB"),
        ("runtime", f"{d['runtime']} {d['runtime_version']}, {d['num_threads']} thread(s)"),
        ("array", f"{d['array']['name']}: {d['array']['n_mics']} mics on channels {d['array']['channel_map']} of "
                  f"{d['array']['n_channels']}, aperture {d['array']['aperture_mm']} mm"),
        ("audio", f"{d['sample_rate_hz']} Hz, window {d['window_samples']} samples ({d['window_s']:g} s), "
                  f"hop {d['hop_s'] if d['hop_s'] is not None else 0.1} s"),
        ("regions", f"{lay['n_regions']} azimuth sectors from {lay['offset_deg']:g} deg, distance "
                    f"{lay['d_min_m']:g}-{lay['d_max_m']:g} m, duplicates within {lay['min_separation_deg']:g} deg "
                    f"merged" + (f", fine azimuth stretched x{lay['fine_stretch']:g}"
                                 if lay.get("fine_stretch", 1.0) != 1.0 else "")),
        ("decode", f"temporal: a talker is born at {d['decode']['birth_threshold']:g} "
                   f"({d['decode']['confirm_hits']} of {d['decode']['confirm_windows']} windows, or once at "
                   f"{d['decode']['confirm_confidence']:g}), listed while its evidence is >= "
                   f"{d['decode']['keep_threshold']:g}, unlisted {d['decode']['miss_windows']} window(s) after it "
                   f"falls; --no-track: each window alone at {d['threshold']:g}"),
        ("head", "none: each window's outputs are the network's alone" if not d["temporal_head"] else
                 f"{d['temporal_head']['file']} ({d['temporal_head']['bytes'] / 1e3:.0f} kB): each window's outputs "
                 f"from the network's embeddings ({d['temporal_head']['embedding']} values) of it and the "
                 f"{d['temporal_head']['k'] - 1} before it"),
        ("symmetry", f"{d['symmetry']}: " + ("not used with the temporal head (windows as they are)"
                                             if d["temporal_head"] else
                                             f"each window on the next of the array's {d['symmetric_images']} "
                                             f"symmetric images" if d["symmetry"] == "cycle" else
                                             f"windows as they are (the array has {d['symmetric_images']} symmetric "
                                             f"images)")),
        ("input", f"{q_in.get('name')} {q_in.get('shape')} {q_in.get('dtype')}, scale {q_in.get('scale')}, zero point "
                  f"{q_in.get('zero_point')}, after {d['input_scaling']}"),
        ("output", f"{q_out.get('name')} {q_out.get('shape')} {q_out.get('dtype')}, scale {q_out.get('scale')}, zero "
                   f"point {q_out.get('zero_point')}, columns {q_out.get('columns')}"),
        ("converter", str(d["converter"])),
    ]
    for k, v in rows:
        print(f"{k:10s} {v}")
    return 0
