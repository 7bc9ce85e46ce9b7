"""The live view: a small self-contained web page (a polar radar of the talkers with ids, confidence and a short
trail, and a strip of azimuth over time) fed by Server-Sent Events, served with the standard library.

Nothing is downloaded at run time (the page is one HTML file with its script inline, served with a CSP that
forbids any other origin). A browser that leaves or stalls never blocks or stops the daemon.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import LiveSettings

log = logging.getLogger("edge_msl.live")

CLIENT_QUEUE = 200
"""Events held per browser (20 s at a 0.1 s hop); a browser further behind loses the oldest."""
KEEPALIVE_S = 10.0
"""An SSE comment this often keeps proxies and the browser from closing an idle stream."""
MAX_CLIENTS = 16
"""Browsers served at once; more get 503 (each holds a thread)."""


def compact(msg: dict[str, Any]) -> dict[str, Any]:
    """What the page draws from one message."""
    return {"t_s": msg["t_s"], "sources": [
        {"id": s["id"], "azimuth_deg": s["azimuth_deg"], "distance_m": s.get("distance_m"),
         "confidence": s["confidence"], "active": s.get("active", True)} for s in msg["sources"]]}


class _Client:
    __slots__ = ("events", "dropped")

    def __init__(self) -> None:
        self.events: collections.deque[bytes] = collections.deque(maxlen=CLIENT_QUEUE)
        self.dropped = 0


class LiveServer:
    """Serves the page on ``settings.host:settings.port``; :meth:`publish` sends each message to every open page.

    A port that cannot be bound (in use, an address this host does not have) is logged once and retried every
    few seconds in the background; the daemon goes on without the view meanwhile."""

    name = "live"

    def __init__(self, settings: LiveSettings, *, title: str = "edge-msl") -> None:
        self.settings = settings
        self.title = title
        self._history: collections.deque[dict[str, Any]] = collections.deque()
        self._clients: set[_Client] = set()
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._running = False
        self._ended = False
        self._threads: list[threading.Thread] = []
        self.published = 0
        self.served = 0
        self.closed = False

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self, retry: bool = True) -> None:
        """Bind and serve in the background, or keep trying to bind (``retry`` False: raise the OSError instead);
        returns at once."""
        self._running = True
        if not retry:
            s = self.settings
            try:
                server = ThreadingHTTPServer((s.host, s.port), _make_handler(self))
            except OSError as exc:
                raise OSError(f"the live view cannot listen on {s.host}:{s.port} ({exc.strerror or exc}); give "
                              "another port, or an address of this machine") from None
            server.server_close()  # the port is free: bind it for real below
        if not self._bind(first=True):
            t = threading.Thread(target=self._bind_loop, name="edge-msl-live-bind", daemon=True)
            t.start()
            self._threads.append(t)

    def _bind(self, first: bool = False) -> bool:
        s = self.settings
        try:
            server = ThreadingHTTPServer((s.host, s.port), _make_handler(self))
        except OSError as exc:
            if first:
                log.error("live view: cannot listen on %s:%d (%s); retrying every 5 s (another program on the port? "
                          "set [live] port, or host to an address of this machine)", s.host, s.port,
                          exc.strerror or exc)
            return False
        server.daemon_threads = True
        self._server = server
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="edge-msl-live",
                             daemon=True)
        t.start()
        self._threads.append(t)
        log.info("live view on %s", self.url)
        return True

    def _bind_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(5.0)
                if not self._running:
                    return
            if self._bind():
                return

    @property
    def url(self) -> str:
        """The page's address (the bound port when ``port`` was 0)."""
        host = self.settings.host
        port = self._server.server_address[1] if self._server is not None else self.settings.port
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        return f"http://{shown}:{port}/"

    @property
    def port(self) -> int | None:
        """The bound port, None while not listening."""
        return self._server.server_address[1] if self._server is not None else None

    def close(self, timeout_s: float = 1.0) -> None:
        """Tell open pages the stream ended, stop serving."""
        with self._cond:
            self._ended = True
            self._running = False
            self._broadcast(b"event: end\ndata: {}\n\n")
        time.sleep(min(0.2, timeout_s))  # let the handlers write the end event
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.closed = True

    # -- data ---------------------------------------------------------------------------------------------

    def publish(self, msg: dict[str, Any]) -> None:
        """Send one message to every open page and keep it in the history; never blocks or raises."""
        event = compact(msg)
        data = b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
        with self._cond:
            self.published += 1
            self._history.append(event)
            while self._history and self._history[0]["t_s"] < event["t_s"] - self.settings.history_s:
                self._history.popleft()
            self._broadcast(data)

    def _broadcast(self, data: bytes) -> None:
        # with the lock held
        for c in self._clients:
            if len(c.events) == CLIENT_QUEUE:
                c.dropped += 1
            c.events.append(data)
        self._cond.notify_all()

    def summary(self) -> str:
        """Counters for the status line."""
        return f"live {'up' if self._server else 'down'}, {len(self._clients)} page(s) open"

    # -- one browser ----------------------------------------------------------------------------------------

    def _serve_events(self, handler: BaseHTTPRequestHandler) -> None:
        client = _Client()
        with self._cond:
            if len(self._clients) >= MAX_CLIENTS:
                handler.send_error(503, "too many live pages open")
                return
            history = list(self._history)
            self._clients.add(client)
            ended = self._ended
        self.served += 1
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Cache-Control", "no-store")
            handler.send_header("X-Accel-Buffering", "no")
            handler.end_headers()
            hello = {"title": self.title, "history_s": self.settings.history_s, "history": history}
            handler.wfile.write(b"event: hello\ndata: " + json.dumps(hello, separators=(",", ":")).encode() + b"\n\n")
            if ended:
                handler.wfile.write(b"event: end\ndata: {}\n\n")
            handler.wfile.flush()
            last = time.monotonic()
            while True:
                with self._cond:
                    if not client.events and not self._ended:
                        self._cond.wait(1.0)
                    batch = list(client.events)
                    client.events.clear()
                    stop = self._ended and not batch
                if batch:
                    handler.wfile.write(b"".join(batch))
                    handler.wfile.flush()
                    last = time.monotonic()
                elif time.monotonic() - last >= KEEPALIVE_S:
                    handler.wfile.write(b": keep-alive\n\n")
                    handler.wfile.flush()
                    last = time.monotonic()
                if stop or (self._server is None and not self._running) or _gone(handler.connection):
                    return
        except (OSError, ValueError):
            return  # the browser left (closed tab, network gone): only this page stops
        finally:
            with self._cond:
                self._clients.discard(client)

    def _state(self) -> bytes:
        with self._cond:
            return json.dumps({"title": self.title, "history_s": self.settings.history_s,
                               "history": list(self._history)}, separators=(",", ":")).encode()


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); a bare port listens on 127.0.0.1 only."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (sep and not host):
        raise ValueError(f"--live {text!r}: expected PORT or HOST:PORT, e.g. 8077 or 127.0.0.1:8077")
    return host, int(port)


def serve_until_stopped(live: LiveServer, announce: str = "") -> None:
    """Keep serving until Ctrl-C or SIGTERM, then close (``locate --live`` after the end of its file).
    ``announce`` goes to stderr once SIGTERM is handled, so that whoever reads it may send SIGTERM at once."""
    import signal
    import sys

    stop = threading.Event()
    try:
        old = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except ValueError:  # not the main thread
        old = None
    if announce:
        print(announce, file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        live.close()


_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'")


def _make_handler(live: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-msl-live"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # not on stderr: it is the daemon's log
            log.debug("live %s: " + fmt, self.client_address[0], *args)

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", _CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    from .live_page import PAGE

                    self._send(PAGE.replace("{{TITLE}}", _html_escape(live.title)).encode(), "text/html; charset=utf-8")
                elif path == "/events":
                    self.close_connection = True
                    live._serve_events(self)
                elif path == "/state.json":
                    self._send(live._state(), "application/json")
                else:
                    self.send_error(404, "the live view serves /, /events and /state.json")
            except (OSError, ValueError):
                self.close_connection = True

        do_HEAD = do_GET

    return Handler


def _gone(sock: Any) -> bool:
    # a page sends nothing after its request: a readable socket means the browser closed it (a tab closed, the
    # machine gone); noticed here within a second instead of at the next write that fails
    import select
    import socket

    try:
        if not select.select([sock], [], [], 0)[0]:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


__all__ = ["LiveServer", "compact", "parse_listen", "serve_until_stopped", "CLIENT_QUEUE", "KEEPALIVE_S", "MAX_CLIENTS"]
