"""List ALSA capture devices with the channel counts, rates and formats they accept.

Hardware devices are named by card id (hw:CARD=<id>,DEV=<n>, stable across reboots, unlike card
numbers) and probed by opening them briefly (a busy device says so). Other PCMs defined in the
ALSA configuration (default, dsnoop, plugins in ~/.asoundrc) are listed; --probe NAME probes any
PCM by name. Put the name in [device] name of the config. --json prints one object per device.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

CHANNEL_CANDIDATES = (1, 2, 4, 6, 7, 8, 16)
RATE_CANDIDATES = (16000, 48000, 44100, 32000, 8000, 96000)
FORMATS = ("S16_LE", "S32_LE")
_PCM_LINE = re.compile(r"^(\d+)-(\d+):\s*([^:]*?)\s*:\s*([^:]*?)\s*:(.*)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-msl devices``."""
    parser.add_argument("--probe", metavar="NAME", action="append", default=[],
                        help="probe this PCM by name (e.g. default, dsnoop:CARD=x, a plugin); repeatable")
    parser.add_argument("--json", action="store_true", help="one JSON object per device on stdout")


def hardware_capture_devices(proc: Path = Path("/proc/asound")) -> list[dict[str, Any]]:
    """Capture devices of the sound cards from /proc/asound (card id, device number, names)."""
    out = []
    try:
        lines = (proc / "pcm").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        m = _PCM_LINE.match(line)
        if not m or "capture" not in m.group(5):
            continue
        card, dev = int(m.group(1)), int(m.group(2))
        try:
            card_id = (proc / f"card{card}" / "id").read_text().strip()
        except OSError:
            card_id = str(card)
        out.append({"name": f"hw:CARD={card_id},DEV={dev}", "kind": "hardware", "card": card_id,
                    "device": dev, "description": f"{m.group(3)} / {m.group(4)}".strip(" /")})
    return out


def probe(alsaaudio: Any, name: str) -> dict[str, Any]:
    """Open ``name`` with each candidate channel count, rate and format; what it accepted, or why not."""
    accepted: list[tuple[int, int, str]] = []
    error = ""
    for ch in CHANNEL_CANDIDATES:
        for rate in RATE_CANDIDATES:
            for fmt in FORMATS:
                try:
                    pcm = alsaaudio.PCM(type=alsaaudio.PCM_CAPTURE, mode=alsaaudio.PCM_NONBLOCK, device=name,
                                        channels=ch, rate=rate, format=getattr(alsaaudio, f"PCM_FORMAT_{fmt}"),
                                        periodsize=256)
                except alsaaudio.ALSAAudioError as exc:
                    text = str(exc)
                    if os.strerror(errno.EBUSY) in text or os.strerror(errno.ENOENT) in text \
                            or os.strerror(errno.ENODEV) in text:
                        return {"error": text.split(" [")[0]}
                    error = error or text.split(" [")[0]
                    continue
                try:
                    info = pcm.info()
                    if (info.get("channels"), info.get("rate"), info.get("format_name")) == (ch, rate, fmt):
                        accepted.append((ch, rate, fmt))
                finally:
                    pcm.close()
    if not accepted:
        return {"error": error or "accepts none of the probed settings"}
    return {"channels": sorted({a[0] for a in accepted}), "rates_hz": sorted({a[1] for a in accepted}),
            "formats": [f for f in FORMATS if any(a[2] == f for a in accepted)]}


def main(args: argparse.Namespace) -> int:
    """Print the capture devices (table or JSON lines) on stdout."""
    from ..capture import AlsaMissingError, alsa_module

    try:
        alsaaudio = alsa_module()
    except AlsaMissingError as exc:
        print(f"edge-msl devices: {exc}", file=sys.stderr)
        return 2
    devices = hardware_capture_devices()
    for d in devices:
        d.update(probe(alsaaudio, d["name"]))
    known = {d["name"] for d in devices}
    try:
        virtual = [n for n in alsaaudio.pcms(alsaaudio.PCM_CAPTURE) if n not in known]
    except alsaaudio.ALSAAudioError:
        virtual = []
    for name in virtual:
        devices.append({"name": name, "kind": "configured", "description": "PCM from the ALSA configuration"})
    for name in args.probe:
        entry = next((d for d in devices if d["name"] == name), None)
        if entry is None:
            entry = {"name": name, "kind": "configured", "description": "probed by name"}
            devices.append(entry)
        entry.update(probe(alsaaudio, name))
    if args.json:
        for d in devices:
            print(json.dumps(d))
        return 0
    if not any(d["kind"] == "hardware" for d in devices):
        print("edge-msl devices: no sound card with a capture device (is the array plugged in, its driver "
              "loaded? see /proc/asound/cards)", file=sys.stderr)
    print(f"{'name':40s} {'channels':14s} {'rates_hz':30s} {'formats':14s} description")
    for d in devices:
        if "error" in d:
            ch, rates, fmts = "-", f"({d['error']})", "-"
        elif "channels" in d:
            ch = ",".join(map(str, d["channels"]))
            rates = ",".join(map(str, d["rates_hz"]))
            fmts = ",".join(d["formats"])
        else:
            ch, rates, fmts = "?", "? (--probe NAME)", "?"
        print(f"{d['name']:40s} {ch:14s} {rates:30s} {fmts:14s} {d.get('description', '')}")
    return 0
