"""The live view (issue 32): a self-contained page (nothing from another origin), Server-Sent Events that reach a
real headless Chromium (Debian's chromium, driven over the DevTools pipe) which draws the talkers where they are,
browsers that leave without hurting the server, ``locate --live`` end to end, and ``locate --plot``'s polar
view."""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edge_msl.config import LiveSettings
from edge_msl.live import LiveServer, parse_listen
from edge_msl.live_page import PAGE

from daemon_helpers import wait_for
from live_browser import CHROMIUM, Browser

REPO = Path(__file__).resolve().parents[1]


def msg(t, *talkers, active=True):
    return {"schema": "edge-msl/sources-v2", "t_s": round(t, 3), "sources": [
        {"id": i, "azimuth_deg": az, "elevation_deg": None, "distance_m": d, "confidence": c, "region": 0,
         "active": active} for i, az, d, c in talkers]}


@pytest.fixture
def live():
    server = LiveServer(LiveSettings(enabled=True, port=0, history_s=10.0), title="test room")
    server.start(retry=False)
    yield server
    server.close()


def test_the_page_needs_nothing_from_anywhere_else(live):
    assert not re.search(r"https?://|\bsrc\s*=|\bhref\s*=|@import|url\(", PAGE)
    with urllib.request.urlopen(live.url, timeout=5) as r:
        body = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert "<title>test room - live</title>" in body and 'new EventSource("events")' in body
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp  # the browser itself refuses other origins
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(live.url + "nothing", timeout=5)
    assert e.value.code == 404


def test_events_reach_a_client_and_one_that_leaves_costs_nothing(live):
    live.publish(msg(0.1, (1, 10.0, 1.0, 0.9)))
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    r = sock.makefile("rb")
    assert r.readline() == b"HTTP/1.1 200 OK\r\n"
    headers = iter(r.readline, b"\r\n")
    assert b"Content-Type: text/event-stream\r\n" in list(headers)
    assert r.readline() == b"event: hello\n"
    hello = json.loads(r.readline()[len(b"data: "):])
    assert hello["history"][0]["sources"][0]["azimuth_deg"] == 10.0 and hello["history_s"] == 10.0
    r.readline()
    live.publish(msg(0.2, (2, 250.0, 2.0, 0.7)))
    line = r.readline()
    assert json.loads(line[len(b"data: "):])["sources"][0]["id"] == 2
    assert wait_for(lambda: "1 page(s)" in live.summary(), 5)
    r.close()
    sock.close()  # the browser leaves without a word
    for k in range(300):  # more than a client's queue
        live.publish(msg(0.3 + k / 10, (3, 100.0, 1.0, 0.5)))
    assert wait_for(lambda: "0 page(s)" in live.summary(), 5)
    state = json.loads(urllib.request.urlopen(live.url + "state.json", timeout=5).read())
    assert state["history"][-1]["t_s"] == pytest.approx(30.2) and len(state["history"]) == 101  # 10 s kept


def test_a_port_in_use_is_retried_in_the_background_not_fatal(live, caplog):
    other = LiveServer(LiveSettings(enabled=True, port=live.port))
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{live.port}"):
        other.start(retry=False)  # locate: one line, exit 2
    daemon_side = LiveServer(LiveSettings(enabled=True, port=live.port))
    daemon_side.start()  # the daemon: logged once, retried
    daemon_side.publish(msg(0.1, (1, 10.0, 1.0, 0.9)))
    assert "retrying every 5 s" in caplog.text and daemon_side.port is None
    daemon_side.close()
    assert parse_listen("8077") == ("127.0.0.1", 8077) and parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="expected PORT or HOST:PORT"):
        parse_listen("localhost")


@pytest.mark.skipif(not CHROMIUM, reason="/usr/bin/chromium is absent (Debian package chromium; "
                                         ".ci/system-deps.sh installs it in CI)")
def test_headless_chromium_receives_live_updates_and_draws_them(live):
    for k in range(10):  # history the page starts with
        live.publish(msg(k / 10, (1, 300.0, 2.0, 0.8)))
    with Browser() as b:
        b.goto(live.url)
        b.wait_for("document.getElementById('status').textContent === 'live'")
        assert b.evaluate("document.getElementById('t').textContent") == "0.9"
        for k in range(10, 40):  # talker 3 walks from 100 to 129 degrees at 1.5 m; talker 1 pauses
            live.publish(msg(k / 10, (3, 100.0 + k - 10, 1.5, 0.9), (1, 300.0, 2.0, 0.6)))
            time.sleep(0.02)
        b.wait_for("document.getElementById('received').textContent === '30'")
        rows = b.evaluate("[...document.querySelectorAll('#talkers li')].map(li => li.textContent)")
        assert rows == ["#3  129.0°  1.50 m  confidence 0.90", "#1  300.0°  2.00 m  confidence 0.60"]
        assert b.evaluate("document.getElementById('count').textContent") == "2"
        # the radar drew talker 3 where it is: 129 deg, 1.5 m on rings of 1 m (2 rings over a 182 px radius)
        import math
        x, y = 210 + 1.5 * 91 * math.cos(math.radians(129)), 210 - 1.5 * 91 * math.sin(math.radians(129))
        rgba = b.evaluate(f"Array.from(document.getElementById('radar').getContext('2d')"
                          f".getImageData({x:.0f}, {y:.0f}, 1, 1).data)")
        assert rgba == [214, 39, 40, 255]  # COLORS[3], #d62728
        png = b.screenshot()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1130, 600)
        b.proc.kill()  # the browser dies mid-stream
        b.proc.wait()
    for k in range(40, 100):
        live.publish(msg(k / 10, (3, 130.0, 1.5, 0.9)))
    assert wait_for(lambda: "0 page(s)" in live.summary(), 5)
    state = json.loads(urllib.request.urlopen(live.url + "state.json", timeout=5).read())
    assert state["history"][-1]["t_s"] == 9.9


def test_locate_live_plays_in_real_time_and_stops_on_sigterm():
    p = subprocess.Popen([sys.executable, "-m", "edge_msl", "locate", "example", "--live", "127.0.0.1:0"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "live view at" not in line:
            line = p.stderr.readline()
            assert line, "locate ended without serving the page"
        url = re.search(r"(http://\S+/)", line).group(1)
        t0 = time.monotonic()
        state = json.loads(urllib.request.urlopen(url + "state.json", timeout=5).read())
        assert len(state["history"]) < 30  # real time: not the whole file at once
        while "end of" not in line:
            line = p.stderr.readline()
        assert time.monotonic() - t0 > 3.0  # a 4.8 s recording
        state = json.loads(urllib.request.urlopen(url + "state.json", timeout=5).read())
        assert len(state["history"]) == 44  # still served after the end
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and len(out.splitlines()) == 44


def test_ctrl_c_while_locate_live_plays_is_one_line_and_exit_130():
    # SIGINT as the terminal sends it (its default action restored: a shell's background job ignores it)
    p = subprocess.Popen([sys.executable, "-m", "edge_msl", "locate", "example", "--live", "127.0.0.1:0"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = ""
        while "live view at" not in line:
            line = p.stderr.readline()
            assert line, "locate ended without serving the page"
        time.sleep(1.0)  # mid-file: it plays in real time
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert err.strip().splitlines() == ["edge-msl locate: interrupted"] and "Traceback" not in err
    assert 0 < len(out.splitlines()) < 44  # the lines written before Ctrl-C, each whole
    assert all(json.loads(line)["schema"] == "edge-msl/sources-v2" for line in out.splitlines())


def test_locate_live_bad_address_is_one_line(capsys):
    from edge_msl import cli

    assert cli.main(["locate", "example", "--live", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edge-msl locate: --live 'nowhere': expected PORT or HOST:PORT, e.g. 8077 or 127.0.0.1:8077"


def test_locate_plot_has_a_polar_view_beside_the_strip(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    from edge_msl.truth import plot

    msgs = [msg(k / 10, (1, 0.0, 2.0, 0.9)) for k in range(20)]  # one talker due east (azimuth 0) at 2 m
    png = tmp_path / "p.png"
    plot(msgs, png, title="polar")
    img = mpimg.imread(png)
    h, w = img.shape[:2]
    assert (w, h) == (1430, 506)
    blue = (abs(img[..., 0] - 0.122) < 0.06) & (abs(img[..., 1] - 0.467) < 0.06) & (abs(img[..., 2] - 0.706) < 0.06)
    ys, xs = blue.nonzero()
    polar = xs < 0.3 * w
    # in the polar view the talker sits right of the centre on its row (0 deg points right); the strip has it too
    assert polar.any() and (~polar).any()
    assert xs[polar].min() > 0.15 * w and abs(ys[polar].mean() - ys[polar].mean()) < 1
