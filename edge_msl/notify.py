"""systemd's sd_notify protocol, written out: datagrams like ``READY=1`` to the socket in ``$NOTIFY_SOCKET``.

Used by the daemon for READY=1, WATCHDOG=1, STATUS= and STOPPING=1. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a no-op; a notification must never raise into the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger("edge_msl.notify")


class Notifier:
    """Sends sd_notify messages; ``watchdog_interval_s`` tells how often :meth:`watchdog` should be called."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            # abstract namespace: the name starts with a NUL byte instead of '@'
            self._address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self._address = path
        elif path:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name; not notifying systemd", path)
        self._sock: socket.socket | None = None
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for; a child must not ping for it
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._last_ping = 0.0
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens (``$NOTIFY_SOCKET`` set)."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float:
        """Half the watchdog timeout (sd_watchdog_enabled's advice), or 0 when no watchdog is set."""
        return self.watchdog_usec / 2e6

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False (logged at debug) when it could not be sent."""
        if self._address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, self._address)
            return True
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", fields[0] if fields else "", exc)
            return False

    def ready(self, status: str = "") -> bool:
        """READY=1 (with a STATUS line): the model is loaded and the device is open."""
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """STATUS=<one line>, sent only when it changed."""
        text = _one_line(text)
        if text == self._last_status:
            return False
        self._last_status = text
        return self.send(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1, at most once per :attr:`watchdog_interval_s` (call it as often as you like)."""
        if not self.watchdog_usec:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval_s:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """RELOADING=1 with the monotonic time systemd 253+ asks for; follow with :meth:`ready`."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str = "") -> bool:
        """STOPPING=1: the daemon is shutting down."""
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        """Close the socket (notifications after this reopen it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:400]


__all__ = ["Notifier"]
