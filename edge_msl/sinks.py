"""Where the daemon's messages go: JSON lines on stdout, MQTT (edge_msl.mqtt_sink, re-exported here:
a bounded queue that survives broker outages), ODAS and the live page; which ones a configuration asks for.

Sinks never raise into the processing loop on a transient fault (closed pipe, broker down);
they must not log secrets (the MQTT password).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Any

from .config import MqttSettings, StdoutSettings

log = logging.getLogger("edge_msl.sinks")


def encode(msg: dict[str, Any]) -> str:
    """One message as compact JSON (no spaces), the form used on stdout and MQTT."""
    return json.dumps(msg, separators=(",", ":"))


class StdoutSink:
    """JSON lines on stdout, flushed per line; a closed pipe (``| head``) closes only this sink, and any other
    write error (a full disk, ``> /dev/full``, EIO) drops lines until writes work again, never the daemon
    (``tolerant``), or closes the sink with :attr:`error` set (``edge-msl locate``, which then exits)."""

    name = "stdout"

    def __init__(self, settings: StdoutSettings, stream: IO[str] | None = None, *, tolerant: bool = True) -> None:
        self.settings = settings
        self.stream = stream
        self.tolerant = tolerant
        self.error: str | None = None
        """Why the last write failed (other than a closed pipe)."""
        self.closed = False
        self.written = 0
        self.lost = 0
        """Lines dropped by write errors (other than a closed pipe)."""
        self._lost_in_outage = 0
        self._torn = False  # a write failed part-way: the next line starts on a new line
        self._frames: Any = None  # the ODAS formatter while format is odas/odas-ssl (it counts timeStamp)

    def _write(self, line: str) -> None:
        if self.stream is None:
            try:
                fd = sys.stdout.fileno()
            except (OSError, ValueError, AttributeError):  # a replaced stdout without a file (tests)
                fd = None
            if fd is not None:
                # the file descriptor itself, not sys.stdout's buffer: a failed write leaves nothing behind to
                # grow or to fail again at exit
                data = memoryview(line.encode())
                while data:
                    try:
                        n = os.write(fd, data)
                    except BlockingIOError:  # a non-blocking stdout whose reader is slow: wait, keep the line
                        time.sleep(0.01)
                        continue
                    except OSError:
                        if len(data) != len(line.encode()):
                            self._torn = True
                        raise
                    data = data[n:]
                return
        stream = self.stream or sys.stdout
        stream.write(line)
        stream.flush()

    def publish(self, msg: dict[str, Any]) -> None:
        """Write one message (in the configured format); never raises."""
        if self.closed:
            return
        if self.settings.format.startswith("odas"):
            from .odas import frames_for

            if self._frames is None or self._frames.kind != ("ssl" if self.settings.format == "odas-ssl" else "sst"):
                self._frames = frames_for(self.settings.format)
            text = self._frames.frame(msg)  # ODAS's multi-line layout, ending in a newline
        else:
            text = encode(msg) + "\n"
        try:
            self._write(("\n" if self._torn else "") + text)
            self._torn = False
        except BrokenPipeError:
            self.closed = True
            log.info("stdout closed by its reader after %d lines; no more JSON lines", self.written)
            self._silence()
            return
        except (OSError, ValueError) as exc:
            self.lost += 1
            self._lost_in_outage += 1
            why = self.error = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            if not self.tolerant:
                self.closed = True
                self._silence()
                return
            if self._lost_in_outage == 1:
                log.error("stdout: cannot write JSON lines (%s): dropping them until it works again (counted); "
                          "other sinks go on", why)
            return
        self.written += 1
        if self._lost_in_outage:
            log.warning("stdout writable again: %d JSON lines were lost", self._lost_in_outage)
            self._lost_in_outage = 0

    def _silence(self) -> None:
        """The interpreter flushes stdout at exit; point it at /dev/null so that is silent."""
        if self.stream is None:
            try:
                fd = sys.stdout.fileno()
            except (OSError, ValueError, AttributeError):
                return
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)

    def summary(self) -> str:
        """Counters for the status line."""
        return (f"stdout {self.written} lines" + (f", {self.lost} lost to write errors" if self.lost else "")
                + (" (closed)" if self.closed else ""))

    def close(self, timeout_s: float = 0.0) -> None:
        """Flush (nothing is buffered beyond the stream)."""
        if not self.closed:
            try:
                (self.stream or sys.stdout).flush()
            except (OSError, ValueError):
                self.closed = True



def make_sinks(stdout: StdoutSettings, mqtt: MqttSettings, *, array_name: str = "", model_name: str = "",
               stream: IO[str] | None = None, odas: Any = None, live: Any = None) -> list[Any]:
    """The sinks a configuration asks for (not started); ``odas``/``live`` are the [odas]/[live] settings."""
    sinks: list[Any] = []
    if stdout.enabled:
        sinks.append(StdoutSink(stdout, stream))
    if mqtt.enabled:
        from .mqtt_sink import MqttSink
        sinks.append(MqttSink(mqtt, array_name=array_name, model_name=model_name))
    sinks += make_extra_sinks(odas, live, array_name=array_name)
    return sinks


def make_extra_sinks(odas: Any, live: Any, *, array_name: str = "") -> list[Any]:
    """The [odas] and [live] outputs (not started)."""
    out: list[Any] = []
    if odas is not None and odas.enabled:
        from .odas import OdasSink

        out.append(OdasSink(odas))
    if live is not None and live.enabled:
        from .live import LiveServer

        out.append(LiveServer(live, title=f"edge-msl {array_name}".strip()))
    return out


def reload_extra_sinks(sinks: list[Any], odas: Any, live: Any, *, array_name: str = "") -> list[Any]:
    """On a reload: the [odas]/[live] outputs of ``sinks`` whose settings did not change are kept (a live page
    stays connected, ODAS timeStamps go on); changed ones are closed and replaced by new, started ones."""
    keep, new = [], []
    for s in sinks:
        wanted = odas if s.name == "odas" else live
        if wanted is not None and wanted.enabled and s.settings == wanted:
            keep.append(s)
        else:
            s.close(timeout_s=0.5)
    for s in make_extra_sinks(odas, live, array_name=array_name):
        if not any(k.name == s.name for k in keep):
            s.start()
            new.append(s)
    return keep + new


__all__ = ["StdoutSink", "MqttSink", "make_sinks", "make_extra_sinks", "reload_extra_sinks", "encode", "STATUS_ONLINE",
           "STATUS_OFFLINE", "MAX_INFLIGHT"]


_FROM_MQTT_SINK = ("MqttSink", "MAX_INFLIGHT", "STATUS_OFFLINE", "STATUS_ONLINE")


def __getattr__(name: str) -> Any:
    """``MqttSink`` and its constants, imported from :mod:`edge_msl.mqtt_sink` on first use: a run without MQTT
    (``locate``, a stdout-only daemon) does not load ``ssl`` and the MQTT code (about 8 ms of start-up)."""
    if name in _FROM_MQTT_SINK:
        from . import mqtt_sink
        return getattr(mqtt_sink, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
