"""The daemon's [odas] and [live] outputs end to end (issue 32): the packaged model on an ALSA file-plugin PCM
serving the bundled recording, ODAS sst frames to a real TCP listener parsed as odas_web parses them, which
appears late and goes away mid-run without the daemon noticing more than a log line, and the live view served
and kept (same page, same ODAS timeStamps) across a reload."""

import io
import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("alsaaudio")
pytest.importorskip("ai_edge_litert")

from daemon_helpers import alsa_home, free_port, wait_for, write_asoundrc  # noqa: E402
from edge_msl.audio_io import open_audio  # noqa: E402
from edge_msl.config import load_config  # noqa: E402
from edge_msl.daemon import Daemon  # noqa: E402
from test_odas import FrameServer  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "edge_msl" / "examples" / "uca8-r10-3talkers.wav"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with open_audio(EXAMPLE) as r:
        x = np.concatenate(list(r.blocks(16000)))
    h = tmp_path_factory.mktemp("live-daemon-home")
    np.tile(x, (3, 1)).astype("<i2").tofile(h / "example.raw")  # 14 s: time for an outage and a reload
    write_asoundrc(h, {"edgelive": h / "example.raw"})
    with alsa_home(h):
        yield h


def test_odas_socket_and_live_view_survive_outages_and_a_reload(home, tmp_path, caplog):
    odas = FrameServer()  # odas_web's port, nobody listening yet
    cfg = tmp_path / "c.toml"
    text = ('[device]\nname = "edgelive"\npace_realtime = true\n[stdout]\nenabled = false\n'
            f'[odas]\nsst = "socket:127.0.0.1:{odas.port}"\nreconnect_delay_s = 0.2\n'
            f'[live]\nenabled = true\nport = {free_port()}\n')
    cfg.write_text(text)
    daemon = Daemon(lambda: load_config(cfg), stdout=io.StringIO())
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", daemon.run()), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: daemon.messages >= 5, 30)  # runs with no ODAS listener
        live = next(s for s in daemon.sinks if s.name == "live")
        odas.start()
        assert wait_for(lambda: len(odas.splitter.frames) >= 10, 10)
        ts = [f["timeStamp"] for f in odas.splitter.frames]
        assert ts == list(range(ts[0], ts[0] + len(ts))) and ts[0] > 1 and not odas.splitter.unparsed
        assert {s["id"] for f in odas.splitter.frames for s in f["src"]} - {0}  # talkers in the frames
        state = json.loads(urllib.request.urlopen(live.url + "state.json", timeout=5).read())
        assert state["history"] and state["history"][-1]["t_s"] > 0.5

        odas.stop()  # the listener goes away: logged, retried, the daemon goes on
        before = daemon.messages
        assert wait_for(lambda: daemon.messages >= before + 10, 10)
        assert "closed by the listener" in caplog.text or "lost" in caplog.text

        cfg.write_text("threshold = 0.6\n" + text)  # a reload that leaves [odas] and [live] as they are
        daemon.request_reload()
        assert wait_for(lambda: daemon.reloads == 1, 10)
        assert next(s for s in daemon.sinks if s.name == "live") is live  # open pages stay connected
        odas2 = FrameServer(odas.port).start()
        try:
            assert wait_for(lambda: len(odas2.splitter.frames) >= 3, 10)
            assert odas2.splitter.frames[0]["timeStamp"] > ts[-1]  # ODAS timeStamps go on across the reload
        finally:
            odas2.stop()
        assert "odas sst" in daemon.summary() and "live up" in daemon.summary()
    finally:
        daemon.request_stop()
        thread.join(15)
    assert result["rc"] == 0
