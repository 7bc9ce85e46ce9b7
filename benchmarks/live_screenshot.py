"""Regenerates docs/figures/live-view.png: ``edge-msl locate example --live`` plays the bundled 3-talker recording
in real time while a headless Chromium (Debian's ``chromium``) shows the live view; the screenshot is taken
4.3 s in, when the third talker has spoken for 1.5 s and the first two left their trails in the time strip.

    .venv/bin/python -m benchmarks.live_screenshot [--out docs/figures/live-view.png] [--at-s 4.3]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.live_browser import CHROMIUM, Browser

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "figures" / "live-view.png"))
    ap.add_argument("--at-s", type=float, default=4.3, help="stream time of the screenshot (the file is 4.8 s)")
    args = ap.parse_args()
    if not CHROMIUM:
        print("live_screenshot: chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    with Browser(width=1130, height=600) as browser:  # started first: its start-up must not eat the recording
        p = subprocess.Popen([sys.executable, "-m", "edge_msl", "locate", "example", "--live", "127.0.0.1:0"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            line = ""
            while "live view at" not in line:
                line = p.stderr.readline()
                if not line:
                    print("live_screenshot: locate ended without serving the page", file=sys.stderr)
                    return 1
            url = re.search(r"(http://\S+/)", line).group(1)
            browser.goto(url)
            browser.wait_for(f"Number(document.getElementById('t').textContent) >= {args.at_s}", timeout_s=30)
            png = browser.screenshot()
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    Path(args.out).write_bytes(png)
    print(f"live_screenshot: {args.out} ({len(png)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
