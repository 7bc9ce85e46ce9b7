"""ODAS-compatible output: ``sst`` (tracked sources) and ``ssl`` (potential sources) frames byte for byte in
ODAS's own layout (introlab/odas src/sink/snk_tracks.c and snk_pots.c), to stdout, a file or a TCP socket
the way ODAS's sinks write them, so odas_web and programs written for ODAS read them unchanged.

A target that is down (no listener, a full disk) drops frames and is retried forever in the background; nothing
here may block or raise into the processing loop.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import select
import socket
import struct
import threading
import time
from typing import Any, Sequence

from .config import OdasSettings

log = logging.getLogger("edge_msl.odas")

TRACK_SLOTS = 4
"""Tracks per sst frame: ODAS lists one line per ``sst.N_inactive`` entry (4 in every shipped config)."""
POT_SLOTS = 4
"""Potential sources per ssl frame: ODAS's ``ssl.nPots`` (4 in every shipped config)."""
SOCKET_QUEUE_FRAMES = 50
"""Frames a socket target holds while it sends (5 s at a 0.1 s hop); older ones are dropped when it lags."""


def _f(value: float) -> str:
    # ODAS keeps these as C floats and prints them with %1.3f: round through float32 as it does
    return f"{struct.unpack('f', struct.pack('f', float(value)))[0]:1.3f}"


def sst_text(time_stamp: int, tracks: Sequence[tuple[int, str, float, float, float, float]]) -> str:
    """One sst frame exactly as ODAS's snk_tracks prints it; ``tracks`` are (id, tag, x, y, z, activity)."""
    out = ["{\n", f'    "timeStamp": {int(time_stamp)},\n', '    "src": [\n']
    for k, (id_, tag, x, y, z, activity) in enumerate(tracks):
        out.append(f'        {{ "id": {int(id_)}, "tag": "{tag}", "x": {_f(x)}, "y": {_f(y)}, "z": {_f(z)}, '
                   f'"activity": {_f(activity)} }}' + ("," if k != len(tracks) - 1 else "") + "\n")
    out += ["    ]\n", "}\n"]
    return "".join(out)


def ssl_text(time_stamp: int, pots: Sequence[tuple[float, float, float, float]]) -> str:
    """One ssl frame exactly as ODAS's snk_pots prints it; ``pots`` are (x, y, z, E)."""
    out = ["{\n", f'    "timeStamp": {int(time_stamp)},\n', '    "src": [\n']
    for k, (x, y, z, e) in enumerate(pots):
        out.append(f'        {{ "x": {_f(x)}, "y": {_f(y)}, "z": {_f(z)}, "E": {_f(e)} }}'
                   + ("," if k != len(pots) - 1 else "") + "\n")
    out += ["    ]\n", "}\n"]
    return "".join(out)


def unit_vector(source: dict[str, Any]) -> tuple[float, float, float]:
    """ODAS's direction of a source: a unit vector (x towards azimuth 0, z up; z = 0 without an elevation)."""
    a = math.radians(source["azimuth_deg"])
    e = math.radians(source.get("elevation_deg") or 0.0)
    return math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)


class SstFrames:
    """edge-msl messages -> sst frames: ``timeStamp`` counts frames from 1 as ODAS does, and a track keeps its
    slot while it lasts (a new one takes the first free slot, as in ODAS's mod_sst). Raw detections (``id``
    null, ``track = false``) get id ``region + 1``: at most one source per region, so it is stable per region."""

    kind = "sst"

    def __init__(self, slots: int = TRACK_SLOTS) -> None:
        self.slot_ids: list[int | None] = [None] * slots
        self.time_stamp = 0
        self.dropped = 0
        """Sources left out because every slot was taken (the weakest go first)."""

    def frame(self, msg: dict[str, Any]) -> str:
        """The next frame, for one message."""
        self.time_stamp += 1
        by_id = {}
        for s in msg["sources"]:
            id_ = s["id"] if s["id"] is not None else int(s["region"]) + 1
            by_id.setdefault(id_, s)
        self.slot_ids = [i if i in by_id else None for i in self.slot_ids]
        for id_, s in sorted(by_id.items(), key=lambda kv: -kv[1]["confidence"]):
            if id_ in self.slot_ids:
                continue
            if None in self.slot_ids:
                self.slot_ids[self.slot_ids.index(None)] = id_
            else:
                self.dropped += 1
        rows = []
        for id_ in self.slot_ids:
            if id_ is None:
                rows.append((0, "", 0.0, 0.0, 0.0, 0.0))
            else:
                s = by_id[id_]
                rows.append((id_, "dynamic", *unit_vector(s), s["confidence"]))
        return sst_text(self.time_stamp, rows)


class SslFrames:
    """edge-msl messages -> ssl frames: as ODAS's SSL module gives them before tracking, the window's candidates
    (the pipeline's :class:`~edge_msl.pipeline.Message` ``candidates``: regions above the decode's lowest
    threshold, at their refined fine azimuth) as potential sources, strongest first, ``E`` the region's activity,
    the remaining slots zero (ODAS always prints ``nPots`` lines). A plain message (e.g. read back from JSON
    lines) has no candidates: its talkers stand in, ``E`` their confidence."""

    kind = "ssl"

    def __init__(self, slots: int = POT_SLOTS) -> None:
        self.slots = slots
        self.time_stamp = 0

    def frame(self, msg: dict[str, Any]) -> str:
        """The next frame, for one message."""
        self.time_stamp += 1
        cands = getattr(msg, "candidates", None)
        if cands is not None:
            pots = [(*unit_vector({"azimuth_deg": d.azimuth_deg}), d.confidence)
                    for d in sorted(cands, key=lambda d: (-d.confidence, d.region))[:self.slots]]
        else:
            srcs = sorted(msg["sources"], key=lambda s: -s["confidence"])[:self.slots]
            pots = [(*unit_vector(s), s["confidence"]) for s in srcs]
        pots += [(0.0, 0.0, 0.0, 0.0)] * (self.slots - len(pots))
        return ssl_text(self.time_stamp, pots)


def frames_for(fmt: str) -> SstFrames | SslFrames:
    """The formatter of an output format: ``odas``/``sst`` or ``odas-ssl``/``ssl``."""
    return SslFrames() if fmt in ("ssl", "odas-ssl") else SstFrames()


# -- targets ------------------------------------------------------------------------------------------------


class FileTarget:
    """Frames appended to a file (truncated at start, as ODAS's ``fopen(..., "wb")``); write errors drop frames
    (counted, logged once per outage) and the file is reopened on the next frame after the retry delay."""

    def __init__(self, path: str, retry_delay_s: float = 1.0, what: str = "sst") -> None:
        self.path = path
        self.what = what
        self.retry_delay_s = retry_delay_s
        self._f: Any = None
        self._next_try = 0.0
        self._failing = ""
        self._opened_once = False
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        self._open()

    def _open(self) -> bool:
        try:
            self._f = open(self.path, "a" if self._opened_once else "w", encoding="ascii")
            self._opened_once = True
            return True
        except OSError as exc:
            self._fail(exc)
            return False

    def _fail(self, exc: OSError) -> None:
        why = exc.strerror or str(exc)
        if why != self._failing:
            log.error("ODAS %s file %s: cannot write (%s): dropping frames until it works again (counted); check "
                      "the [odas] %s path and its directory", self.what, self.path, why, self.what)
            self._failing = why
        self._next_try = time.monotonic() + self.retry_delay_s
        self.close()

    def write(self, text: str) -> None:
        """Append one frame; never raises."""
        if self._f is None and (time.monotonic() < self._next_try or not self._open()):
            self.dropped += 1
            return
        try:
            self._f.write(text)
            self._f.flush()
        except (OSError, ValueError) as exc:
            self.dropped += 1
            self._fail(exc if isinstance(exc, OSError) else OSError(str(exc)))
            return
        self.written += 1
        if self._failing:
            log.warning("ODAS %s file %s writable again (%d frames were dropped)", self.what, self.path, self.dropped)
            self._failing = ""

    def close(self, timeout_s: float = 0.0) -> None:
        """Close the file (a close error is ignored: the frames are already flushed or counted)."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None

    @property
    def connected(self) -> bool:
        return self._f is not None


class SocketTarget:
    """A TCP client like ODAS's socket interface (it connects to a listener at HOST:PORT, e.g. odas_web's 9000),
    but it never exits: it connects in the background, reconnects forever after ``retry_delay_s``, and drops
    frames (counted) while nobody listens; a listener that stops reading is dropped after a 5 s send timeout."""

    def __init__(self, host: str, port: int, retry_delay_s: float = 1.0, what: str = "sst") -> None:
        self.host = host.strip("[]")
        self.port = port
        self.what = what
        self.retry_delay_s = retry_delay_s
        self._queue: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._running = False
        self._connected = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.dropped = 0
        self.connects = 0

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"edge-msl-odas-{self.what}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    def write(self, text: str) -> None:
        """Queue one frame for the sender; dropped (counted) while not connected. Never blocks or raises."""
        with self._cond:
            if not self._connected:
                self.dropped += 1
                return
            if len(self._queue) >= SOCKET_QUEUE_FRAMES:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(text.encode("ascii"))
            self._cond.notify()

    def _loop(self) -> None:
        last_error = ""
        down_since = time.monotonic()
        while self._running:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=5.0)
            except OSError as exc:
                why = exc.strerror or str(exc) or type(exc).__name__
                if why != last_error:
                    log.error("ODAS %s socket %s:%d: cannot connect (%s); retrying every %g s (is odas_web or your "
                              "server listening? check [odas] %s)", self.what, self.host, self.port, why,
                              self.retry_delay_s, self.what)
                    last_error = why
                self._sleep(self.retry_delay_s)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(5.0)
            self.connects += 1
            log.info("ODAS %s: connected to %s:%d%s", self.what, self.host, self.port,
                     f" after {time.monotonic() - down_since:.1f} s" if self.connects > 1 else "")
            last_error = ""
            with self._cond:
                self._queue.clear()
                self._connected = True
            try:
                self._send_until_error(sock)
            finally:
                with self._cond:
                    self._connected = False
                    self._queue.clear()
                try:
                    sock.close()
                except OSError:
                    pass
                down_since = time.monotonic()
            if self._running:
                self._sleep(self.retry_delay_s)

    def _peer_closed(self, sock: socket.socket) -> bool:
        # a listener never sends (odas_web does not): readable means it closed, so reconnect now rather than
        # at the next frame that fails
        try:
            if not select.select([sock], [], [], 0)[0]:
                return False
            return sock.recv(4096, socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _send_until_error(self, sock: socket.socket) -> None:
        while True:
            with self._cond:
                while self._running and not self._queue:
                    self._cond.wait(0.2)
                    if self._queue or not self._running:
                        break
                    if self._peer_closed(sock):
                        log.warning("ODAS %s socket %s:%d closed by the listener: reconnecting every %g s",
                                    self.what, self.host, self.port, self.retry_delay_s)
                        return
                if not self._queue:
                    return  # stopping, everything sent
                data = self._queue.popleft()
            try:
                sock.sendall(data)
            except OSError as exc:
                why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
                log.warning("ODAS %s socket %s:%d lost (%s): reconnecting every %g s, frames dropped meanwhile",
                            self.what, self.host, self.port, why, self.retry_delay_s)
                self.dropped += 1
                return
            self.sent += 1

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if self._running:
                self._cond.wait(seconds)

    def close(self, timeout_s: float = 1.0) -> None:
        """Send what is queued (up to ``timeout_s``), then disconnect."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue and self._connected and time.monotonic() < deadline:
                self._cond.wait(0.02)
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, deadline - time.monotonic()) + 5.0)


def make_target(spec: str, retry_delay_s: float = 1.0, what: str = "sst") -> FileTarget | SocketTarget:
    """The target of an ``[odas]`` value: ``socket:HOST:PORT`` or ``file:PATH`` (checked by the config)."""
    if spec.startswith("file:"):
        return FileTarget(os.path.expanduser(spec[5:]), retry_delay_s, what)
    host, _, port = spec[len("socket:"):].rpartition(":")
    return SocketTarget(host, int(port), retry_delay_s, what)


class OdasSink:
    """The daemon's ``[odas]`` output: sst and/or ssl frames, each to its own socket or file."""

    name = "odas"

    def __init__(self, settings: OdasSettings) -> None:
        self.settings = settings
        self.outputs: list[tuple[SstFrames | SslFrames, FileTarget | SocketTarget]] = []
        for kind, spec in (("sst", settings.sst), ("ssl", settings.ssl)):
            if spec:
                self.outputs.append((frames_for(kind), make_target(spec, settings.reconnect_delay_s, kind)))
        self.closed = False

    def start(self) -> None:
        """Open files, start connecting sockets (in the background); returns at once."""
        for _, target in self.outputs:
            target.start()

    def publish(self, msg: dict[str, Any]) -> None:
        """One frame per target (timeStamp advances whether or not the target is up, as in ODAS)."""
        for frames, target in self.outputs:
            try:
                target.write(frames.frame(msg))
            except Exception:  # noqa: BLE001 (an output must never stop the daemon)
                log.exception("ODAS %s output failed on a message; going on", frames.kind)

    def summary(self) -> str:
        """Counters for the status line."""
        parts = []
        for frames, t in self.outputs:
            sent = t.sent if isinstance(t, SocketTarget) else t.written
            parts.append(f"odas {frames.kind} {'up' if t.connected else 'down'}, {sent} sent, {t.dropped} dropped")
        return "; ".join(parts)

    def close(self, timeout_s: float = 1.0) -> None:
        """Flush and disconnect every target."""
        for _, target in self.outputs:
            target.close(timeout_s=min(timeout_s, 1.0))


__all__ = ["TRACK_SLOTS", "POT_SLOTS", "sst_text", "ssl_text", "unit_vector", "SstFrames", "SslFrames", "frames_for",
           "FileTarget", "SocketTarget", "make_target", "OdasSink"]
