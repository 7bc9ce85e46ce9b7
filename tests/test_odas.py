"""ODAS-compatible output (issue 32): sst/ssl frames byte for byte as ODAS's C code prints them (a C reference
built from the sprintf sequence of introlab/odas src/sink/snk_tracks.c and snk_pots.c, compiled here), parsed by
a port of odas_web's frame splitter (servers.js) fed by a real TCP server, to which the sink connects as ODAS
does and reconnects forever."""

from __future__ import annotations

import io
import json
import math
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edge_msl import cli
from edge_msl.config import OdasSettings, StdoutSettings, load_config, ConfigError
from edge_msl.odas import OdasSink, SslFrames, SstFrames, ssl_text, sst_text
from edge_msl.sinks import StdoutSink

from daemon_helpers import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]

# The formatting of ODAS's snk_tracks_process_format_text_json and snk_pots_process_format_text_json, copied
# call for call (the values are C floats, as in ODAS's tracks/pots objects).
ODAS_C = r"""
#include <stdio.h>
#include <string.h>
int main(void) {
    char kind[8]; unsigned long long timeStamp; unsigned int n, i;
    static char buffer[65536];
    while (scanf("%7s %llu %u", kind, &timeStamp, &n) == 3) {
        buffer[0] = 0x00;
        sprintf(buffer,"%s{\n",buffer);
        sprintf(buffer,"%s    \"timeStamp\": %llu,\n",buffer,timeStamp);
        sprintf(buffer,"%s    \"src\": [\n",buffer);
        for (i = 0; i < n; i++) {
            if (kind[2] == 't') {  /* sst */
                unsigned long long id; char tag[64]; float x, y, z, a;
                scanf("%llu %63s %f %f %f %f", &id, tag, &x, &y, &z, &a);
                if (strcmp(tag, "-") == 0) tag[0] = 0x00;
                sprintf(buffer,"%s        { \"id\": %llu, \"tag\": \"%s\", \"x\": %1.3f, \"y\": %1.3f, \"z\": %1.3f, \"activity\": %1.3f }",
                        buffer, id, tag, x, y, z, a);
            } else {
                float x, y, z, e;
                scanf("%f %f %f %f", &x, &y, &z, &e);
                sprintf(buffer,"%s        { \"x\": %1.3f, \"y\": %1.3f, \"z\": %1.3f, \"E\": %1.3f }", buffer, x, y, z, e);
            }
            if (i != (n - 1)) sprintf(buffer,"%s,",buffer);
            sprintf(buffer,"%s\n",buffer);
        }
        sprintf(buffer,"%s    ]\n",buffer);
        sprintf(buffer,"%s}\n",buffer);
        fwrite(buffer, 1, strlen(buffer), stdout);
    }
    return 0;
}
"""


class OdasWebSplitter:
    """odas_web's servers.js onConnData, ported line for line: split the stream on "}\\n{", keep the last piece
    for the next chunk, mend the braces of the others, hand them to JSON.parse (here json.loads)."""

    def __init__(self) -> None:
        self.remaining = ""
        self.frames: list[dict] = []
        self.unparsed: list[str] = []

    def on_data(self, d: bytes) -> None:
        stream = self.remaining + d.decode()
        strs = stream.split("}\n{")
        if len(strs) < 2:
            self.remaining = stream
            return
        for index, s in enumerate(strs):
            if index == len(strs) - 1:
                self.remaining = s
                return
            if s[0] != "{":
                s = "{" + s
            if s[len(s) - 2] != "}":
                if s[len(s) - 3] != "}":
                    s = s + "}"
            try:  # tcp_link.js: JSON.parse(msg), an error logged and the frame skipped
                self.frames.append(json.loads(s))
            except json.JSONDecodeError:
                self.unparsed.append(s)


class FrameServer:
    """A TCP listener like odas_web's tracking server: every connection's bytes go through one splitter."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.splitter = OdasWebSplitter()
        self.connections = 0
        self.conns: list[socket.socket] = []
        self._srv: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> "FrameServer":
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", self.port))
        self._srv.listen(4)
        self._srv.settimeout(0.1)
        self._stop.clear()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    d = conn.recv(random.choice([7, 64, 4096]))  # frames cut anywhere, as TCP may
                except OSError:
                    return
                if not d:
                    return
                self.splitter.on_data(d)

    def drop_connections(self) -> None:
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []

    def stop(self) -> None:
        self._stop.set()
        self.drop_connections()
        if self._srv is not None:
            self._srv.close()


def msg(t, *srcs):
    return {"schema": "edge-msl/sources-v2", "t_s": t, "sources": [
        {"id": i, "azimuth_deg": az, "elevation_deg": None, "distance_m": 1.5, "confidence": c, "region": 0,
         "active": True} for i, az, c in srcs]}


@pytest.fixture(scope="module")
def odas_c(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("no C compiler to build the ODAS formatting reference")
    d = tmp_path_factory.mktemp("odasc")
    (d / "odas_json.c").write_text(ODAS_C)
    subprocess.run([gcc, "-O0", "-w", "-o", str(d / "odas_json"), str(d / "odas_json.c")], check=True)
    return str(d / "odas_json")


def test_frames_are_byte_for_byte_what_odas_prints(odas_c):
    rng = random.Random(32)
    rows_in, ours = [], []
    for ts in range(1, 301):
        tracks = []
        for k in range(4):
            if rng.random() < 0.3:
                tracks.append((0, "", 0.0, 0.0, 0.0, 0.0))
            else:
                a, e = rng.uniform(0, 2 * math.pi), rng.uniform(-0.5, 0.5)
                # values on the edge of a rounding step too: 0.0005, -0.0005, 0.1235
                x = rng.choice([math.cos(e) * math.cos(a), 0.0005, -0.0005, 0.1235, -0.0])
                tracks.append((rng.randint(1, 10**6), "dynamic", x, math.cos(e) * math.sin(a), math.sin(e),
                               rng.random()))
        rows_in.append(f"sst {ts} 4 " + " ".join(f"{i} {t or '-'} {x!r} {y!r} {z!r} {a!r}"
                                                 for i, t, x, y, z, a in tracks))
        ours.append(sst_text(ts, tracks))
        pots = [(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1), rng.random()) for _ in range(4)]
        rows_in.append(f"ssl {ts} 4 " + " ".join(f"{x!r} {y!r} {z!r} {e!r}" for x, y, z, e in pots))
        ours.append(ssl_text(ts, pots))
    ref = subprocess.run([odas_c], input="\n".join(rows_in) + "\n", capture_output=True, text=True, check=True).stdout
    assert "".join(ours) == ref


def test_sst_layout_timestamp_from_1_and_slots_kept_as_odas_does():
    f = SstFrames()
    first = f.frame(msg(0.5, (5, 0.0, 0.9)))
    assert first == ('{\n    "timeStamp": 1,\n    "src": [\n'
                     '        { "id": 5, "tag": "dynamic", "x": 1.000, "y": 0.000, "z": 0.000, "activity": 0.900 },\n'
                     '        { "id": 0, "tag": "", "x": 0.000, "y": 0.000, "z": 0.000, "activity": 0.000 },\n'
                     '        { "id": 0, "tag": "", "x": 0.000, "y": 0.000, "z": 0.000, "activity": 0.000 },\n'
                     '        { "id": 0, "tag": "", "x": 0.000, "y": 0.000, "z": 0.000, "activity": 0.000 }\n'
                     '    ]\n}\n')
    ids = lambda text: [s["id"] for s in json.loads(text)["src"]]  # noqa: E731
    assert ids(f.frame(msg(0.6, (5, 0.0, 0.9), (6, 90.0, 0.8)))) == [5, 6, 0, 0]
    assert ids(f.frame(msg(0.7, (6, 90.0, 0.8)))) == [0, 6, 0, 0]  # 6 keeps its slot when 5 leaves
    assert ids(f.frame(msg(0.8, (6, 90.0, 0.8), (7, 180.0, 0.7)))) == [7, 6, 0, 0]  # the first free slot
    many = f.frame(msg(0.9, *[(i, 10.0 * i, 0.1 * i) for i in range(1, 7)]))
    assert json.loads(many)["timeStamp"] == 5 and sorted(ids(many)) == [3, 4, 5, 6] and f.dropped == 2
    y = json.loads(f.frame(msg(1.0, (9, 90.0, 0.5))))["src"]
    assert [s for s in y if s["id"] == 9][0]["y"] == 1.0


def test_ssl_frames_strongest_first_with_energy():
    f = SslFrames()
    frame = json.loads(f.frame(msg(0.5, (1, 180.0, 0.4), (2, 90.0, 0.95))))
    assert frame["timeStamp"] == 1 and len(frame["src"]) == 4
    assert frame["src"][0] == {"x": 0.0, "y": 1.0, "z": 0.0, "E": 0.95}
    assert frame["src"][1] == {"x": -1.0, "y": 0.0, "z": 0.0, "E": 0.4}
    assert frame["src"][2] == frame["src"][3] == {"x": 0.0, "y": 0.0, "z": 0.0, "E": 0.0}


def test_stdout_odas_formats():
    for fmt, key in (("odas", "activity"), ("odas-ssl", "E")):
        buf = io.StringIO()
        sink = StdoutSink(StdoutSettings(format=fmt), buf)
        for k in range(3):
            sink.publish(msg(0.5 + k / 10, (1, 90.0, 0.9)))
        sp = OdasWebSplitter()
        sp.on_data(buf.getvalue().encode())
        assert buf.getvalue().count("\n") == 3 * 9 and [f["timeStamp"] for f in sp.frames] == [1, 2]
        assert key in sp.frames[0]["src"][0] and not sp.unparsed


def test_odas_web_splitter_reads_every_locate_frame(capsys):
    assert cli.main(["locate", "example", "--format", "odas"]) == 0
    out = capsys.readouterr().out
    sp = OdasWebSplitter()
    for k in range(0, len(out), 100):
        sp.on_data(out[k:k + 100].encode())
    # the splitter hands a frame on when the next one starts: all but the last, which stays in its buffer
    n = out.count('"timeStamp"')
    assert n == 44 and not sp.unparsed and [f["timeStamp"] for f in sp.frames] == list(range(1, n))
    assert json.loads("{" + sp.remaining)["timeStamp"] == n
    assert all(len(f["src"]) == 4 and set(f["src"][0]) == {"id", "tag", "x", "y", "z", "activity"} for f in sp.frames)
    assert {s["id"] for f in sp.frames for s in f["src"]} == {0, 1, 2, 3}


def test_socket_target_connects_like_odas_and_reconnects_forever(caplog):
    server = FrameServer()  # not listening yet: the sink must wait for it, not fail
    sink = OdasSink(OdasSettings(sst=f"socket:127.0.0.1:{server.port}", reconnect_delay_s=0.1))
    sink.start()
    try:
        for k in range(5):
            sink.publish(msg(k / 10, (1, 45.0, 0.9)))  # nobody listens: dropped, counted
        target = sink.outputs[0][1]
        assert target.dropped == 5 and not target.connected
        server.start()
        assert wait_for(lambda: target.connected, 5.0)
        for k in range(5, 60):
            sink.publish(msg(k / 10, (1, 45.0 + k, 0.9), (2, 200.0, 0.5)))
            time.sleep(0.002)
        assert wait_for(lambda: len(server.splitter.frames) == 54, 5.0)
        assert [f["timeStamp"] for f in server.splitter.frames] == list(range(6, 60)) and not server.splitter.unparsed

        server.drop_connections()  # the listener goes away mid-stream (odas_web closed, network gone)
        assert wait_for(lambda: server.connections == 2, 5.0), "no reconnect"
        assert wait_for(lambda: target.connected, 5.0)
        for k in range(60, 80):
            sink.publish(msg(k / 10, (3, 300.0, 0.7)))
            time.sleep(0.002)
        assert wait_for(lambda: any(s["id"] == 3 for f in server.splitter.frames for s in f["src"]), 5.0)
        assert "ODAS sst socket 127.0.0.1" in caplog.text
    finally:
        sink.close()
        server.stop()
    assert "sst" in sink.summary()


def test_file_target_and_a_file_that_cannot_be_written(tmp_path):
    path = tmp_path / "sst.json"
    sink = OdasSink(OdasSettings(sst=f"file:{path}", ssl=f"file:{tmp_path}/missing-dir/ssl.json"))
    sink.start()
    for k in range(10):
        sink.publish(msg(k / 10, (4, 10.0 * k, 0.8)))
    sink.close()
    sp = OdasWebSplitter()
    sp.on_data(path.read_bytes())
    assert [f["timeStamp"] for f in sp.frames] == list(range(1, 10)) and json.loads("{" + sp.remaining)["timeStamp"] == 10
    assert sink.outputs[1][1].dropped == 10  # the missing directory: dropped, counted, nothing raised


@pytest.mark.parametrize("value", ["socket:127.0.0.1", "socket:host:70000", "tcp://h:1", "file:", "/tmp/x"])
def test_bad_targets_are_one_line_config_errors(value):
    with pytest.raises(ConfigError) as e:
        load_config(None, [("odas.sst", value)])
    text = str(e.value)
    assert "[odas] sst" in text and "socket:HOST:PORT" in text and "\n" not in text


@pytest.mark.parametrize("srp_refine", [False, True])
def test_ssl_frames_carry_the_windows_candidates_before_the_temporal_decode(srp_refine):
    """ssl frames are ODAS's potential sources: the network's per-window candidates (refined as the decode takes
    them), E the region's activity; a quiet second talker below the birth threshold is in ssl, never in sst."""
    import numpy as np

    from edge_msl.pipeline import Pipeline
    from edge_msl.regions import decode
    from edge_msl.runtime import load_model
    from edge_msl.audio_io import open_audio
    from edge_msl.commands.locate import example_path
    from edge_msl.sinks import encode

    model = load_model()
    info, t = model.info, model.info.temporal
    # never listed: under every confirmation (the newest audio's too, where the model takes it)
    listed_at = min(t.birth_threshold, t.confirm_mean, t.now_confirm_min if t.now_confirm_strength > 0 else 1.0)
    quiet = (min(t.seed_threshold, t.keep_threshold) + listed_at) / 2
    y = np.zeros((info.layout.n_regions, 3))
    y[0] = (0.95, 0.5, 0.5)
    y[info.layout.n_regions // 4] = (quiet, 0.5, 0.25)
    want = sorted(decode(info.layout, y, min(t.seed_threshold, t.keep_threshold)), key=lambda d: -d.confidence)
    assert len(want) == 2 and want[1].confidence == quiet < listed_at
    p = Pipeline(model, srp_refine=srp_refine)
    p.outputs = lambda window: y  # the network's outputs, fixed: one loud region, one quiet
    with open_audio(example_path(".wav")) as r:
        msgs = p.push(np.concatenate(list(r.blocks(16000)))[:32000])
    assert len(msgs) > 10
    sst, ssl = SstFrames(), SslFrames()
    for m in msgs:
        tracks = [s for s in json.loads(sst.frame(m))["src"] if s["id"]]
        pots = json.loads(ssl.frame(m))["src"]
        assert len(tracks) <= 1 and len(pots) == 4 and pots[2]["E"] == pots[3]["E"] == 0.0
        assert [p["E"] for p in pots[:2]] == [0.95, round(quiet, 3)]
        for pot, d in zip(pots, want):
            az = math.degrees(math.atan2(pot["y"], pot["x"])) % 360
            tol = info.srp_refine["half_deg"] + 0.1 if srp_refine else 0.1
            assert abs((az - d.azimuth_deg + 180) % 360 - 180) <= tol and pot["z"] == 0.0
        assert "candidates" not in encode(m) and json.loads(encode(m)) == dict(m)  # the JSON is as it was
    heard = [s for m in msgs for s in m["sources"]]
    assert heard and all(s["region"] == 0 for s in heard)  # the quiet one never becomes a track
