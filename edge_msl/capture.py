"""ALSA capture through pyalsaaudio: periods of interleaved S16_LE/S32_LE frames as numpy arrays.

A missing, busy or unplugged device is logged once and reopened with capped exponential backoff,
forever; overruns are counted and logged, never fatal. It must not raise on a device fault and
must not touch the audio (no channel map, no scaling): that is the pipeline's job.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .config import DeviceSettings

log = logging.getLogger("edge_msl.capture")

_DTYPES = {"S16_LE": np.dtype("<i2"), "S32_LE": np.dtype("<i4")}
_INTERRUPTED = os.strerror(errno.EINTR)
_OVERRUN_LOG_EVERY_S = 10.0


class AlsaMissingError(RuntimeError):
    """pyalsaaudio is not installed; the message says how to install it."""


def alsa_module() -> Any:
    """The ``alsaaudio`` module, or :class:`AlsaMissingError` with the install line."""
    try:
        import alsaaudio
    except ImportError:
        raise AlsaMissingError("pyalsaaudio is not installed; pip install 'edge-msl[alsa]' "
                               "(it builds against libasound2-dev)") from None
    return alsaaudio


@dataclass
class CaptureStats:
    """Counters since the capture was created (read by the daemon's status line)."""

    frames: int = 0
    """Frames delivered."""
    overruns: int = 0
    """Overruns reported by ALSA (each is a gap in the audio)."""
    opens: int = 0
    """Successful opens of the device (1 + reopens)."""
    failures: int = 0
    """Failed open attempts and lost streams."""
    waiting_s: float = 0.0
    """Time spent waiting for the device."""


class Capture:
    """Reads one ALSA PCM. :meth:`read` returns the next period, or None when the stream was lost
    (the caller should reset its buffers; the next :meth:`read` reopens the device)."""

    def __init__(self, settings: DeviceSettings, *, rate_hz: int, n_channels: int,
                 stop: threading.Event | None = None, on_wait: Callable[[str], None] | None = None,
                 pcm_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.rate_hz = int(rate_hz)
        self.n_channels = int(n_channels)
        self.dtype = _DTYPES[settings.format]
        self.stop = stop or threading.Event()
        self.on_wait = on_wait
        self.stats = CaptureStats()
        self._factory = pcm_factory or self._open_pcm
        self._pcm: Any = None
        self._alsa = None if pcm_factory is not None else alsa_module()
        self._t0 = 0.0
        self._frames_since_open = 0
        self._last_overrun_log = -1e9
        self._overruns_unlogged = 0

    # -- opening ---------------------------------------------------------------------------------

    def _open_pcm(self) -> Any:
        a = self._alsa
        return a.PCM(type=a.PCM_CAPTURE, mode=a.PCM_NORMAL, device=self.settings.name, channels=self.n_channels,
                     rate=self.rate_hz, format=getattr(a, f"PCM_FORMAT_{self.settings.format}"),
                     periodsize=self.settings.period_frames, periods=self.settings.periods)

    def describe(self) -> str:
        """``name (channels ch, rate Hz, format)`` for log lines."""
        return f"{self.settings.name} ({self.n_channels} ch, {self.rate_hz} Hz, {self.settings.format})"

    def _check_granted(self, pcm: Any) -> str | None:
        """The device may grant other parameters than asked; a mismatch is a reason string."""
        try:
            info = pcm.info()
        except Exception:  # a stand-in PCM without info(): nothing to check
            return None
        got = (info.get("channels"), info.get("rate"), info.get("format_name"))
        want = (self.n_channels, self.rate_hz, self.settings.format)
        if all(g is None or g == w for g, w in zip(got, want)):
            return None
        return (f"the device gives {got[0]} ch, {got[1]} Hz, {got[2]} instead of {want[0]} ch, {want[1]} Hz, "
                f"{want[2]}")

    def open(self) -> bool:
        """Open the device, retrying with backoff until it works or ``stop`` is set; True when open."""
        if self._pcm is not None:
            return True
        delay = self.settings.retry_min_delay_s
        first_fail = None
        last_reason = None
        attempts = 0
        while not self.stop.is_set():
            attempts += 1
            reason = None
            try:
                pcm = self._factory()
                reason = self._check_granted(pcm)
                if reason is not None:
                    _close_quietly(pcm)
            except Exception as exc:  # ALSAAudioError, or OSError from a plugin
                if not _is_alsa_error(exc):
                    raise
                reason = _reason(exc)
            if reason is None:
                self._pcm = pcm
                self.stats.opens += 1
                self._t0 = time.monotonic()
                self._frames_since_open = 0
                if first_fail is not None:
                    waited = time.monotonic() - first_fail
                    self.stats.waiting_s += waited
                    log.warning("capture device %s is back after %.1f s (%d attempts)", self.describe(), waited,
                                attempts)
                else:
                    log.info("capture device %s open", self.describe())
                return True
            self.stats.failures += 1
            if first_fail is None:
                first_fail = time.monotonic()
            if reason != last_reason:
                fix = self._fix(reason)
                log.error("capture device %s unavailable: %s; %s; retrying every %g s at most",
                          self.describe(), reason, fix, self.settings.retry_max_delay_s)
                last_reason = reason
            else:
                log.debug("capture device %s still unavailable: %s (attempt %d)", self.settings.name, reason,
                          attempts)
            if self.on_wait is not None:
                self.on_wait(f"waiting for capture device {self.settings.name}: {reason} (attempt {attempts}, "
                             f"next in {delay:g} s)")
            self._sleep(delay)
            delay = min(delay * 2.0, self.settings.retry_max_delay_s)
        if first_fail is not None:
            self.stats.waiting_s += time.monotonic() - first_fail
        return False

    def _fix(self, reason: str) -> str:
        if reason.startswith("the device gives") or os.strerror(errno.EINVAL) in reason:
            return ("check the channels/rate/format with 'edge-msl devices', or use plughw:CARD=...,DEV=0 to let "
                    "ALSA convert")
        if os.strerror(errno.EBUSY) in reason:
            return "another program holds it (arecord, pulseaudio, a second edge-msl?)"
        return "plug the array in or fix [device] name (list devices with 'edge-msl devices')"

    def _sleep(self, seconds: float) -> None:
        # wake up at once on stop, and keep telling the caller we are alive (watchdog)
        end = time.monotonic() + seconds
        while not self.stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 1.0))
            if self.on_wait is not None and not self.stop.is_set():
                self.on_wait("")

    # -- reading ---------------------------------------------------------------------------------

    def read(self) -> np.ndarray | None:
        """The next period as (frames, n_channels) int16/int32; an empty array after an overrun or an
        interrupted read; None when the device was lost or ``stop`` is set (after a loss the next call
        reopens it)."""
        if self._pcm is None and not self.open():
            return None
        try:
            length, data = self._pcm.read()
        except Exception as exc:
            if not _is_alsa_error(exc):
                raise
            reason = _reason(exc)
            if _INTERRUPTED in reason or self.stop.is_set():
                return np.zeros((0, self.n_channels), self.dtype)
            log.error("capture device %s lost: %s; reopening", self.describe(), reason)
            self.stats.failures += 1
            self.close()
            return None
        if length < 0:
            self._overrun(length)
            return np.zeros((0, self.n_channels), self.dtype)
        frames = np.frombuffer(data, dtype=self.dtype)
        usable = (frames.size // self.n_channels) * self.n_channels
        frames = frames[:usable].reshape(-1, self.n_channels)
        self.stats.frames += len(frames)
        self._frames_since_open += len(frames)
        if self.settings.pace_realtime:
            ahead = self._t0 + self._frames_since_open / self.rate_hz - time.monotonic()
            if ahead > 0:
                # at most one period: a plain sleep (cheaper than an Event wait) is short enough for stop
                time.sleep(min(ahead, 1.0))
        return frames

    def _overrun(self, code: int) -> None:
        self.stats.overruns += 1
        self._overruns_unlogged += 1
        now = time.monotonic()
        if now - self._last_overrun_log >= _OVERRUN_LOG_EVERY_S:
            log.warning("capture overrun on %s (%s): %d since the last report, %d in all; the pipeline is too slow "
                        "or the system too busy (more [device] periods buys time)", self.settings.name,
                        os.strerror(-code) if code < 0 else code, self._overruns_unlogged, self.stats.overruns)
            self._last_overrun_log = now
            self._overruns_unlogged = 0

    def close(self) -> None:
        """Close the PCM (a later :meth:`read` or :meth:`open` reopens it)."""
        if self._pcm is not None:
            _close_quietly(self._pcm)
            self._pcm = None


def _is_alsa_error(exc: Exception) -> bool:
    return type(exc).__name__ == "ALSAAudioError" or isinstance(exc, OSError)


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # pyalsaaudio appends " [device name]"; the log line names the device already
    if text.endswith("]") and " [" in text:
        text = text[: text.rindex(" [")]
    return text


def _close_quietly(pcm: Any) -> None:
    try:
        pcm.close()
    except Exception:
        pass


__all__ = ["Capture", "CaptureStats", "AlsaMissingError", "alsa_module"]
