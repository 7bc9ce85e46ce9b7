"""The device daemon: ALSA capture -> Pipeline.push -> sinks (stdout, MQTT), with systemd's notify protocol.

It survives transient faults (device missing or unplugged, broker down) by waiting and retrying;
SIGTERM/SIGINT stop it cleanly, SIGHUP reloads config and model. It must not exit on a transient
fault, and exits with 78 only for a configuration that cannot work (before anything is opened).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

from . import model_store
from .capture import AlsaMissingError, Capture
from .channel_check import StartupCheck
from .config import EX_CONFIG, Config, ConfigError
from .notify import Notifier
from .pipeline import Pipeline, PipelineError
from .runtime import Model, ModelError, load_model
from .separate import SeparatedAudio, SeparateSettings, Separator, TrackWriter
from .sinks import MqttSink, StdoutSink, make_sinks, reload_extra_sinks

log = logging.getLogger("edge_msl.daemon")

STATUS_EVERY_S = 2.0
"""How often the systemd STATUS= line is refreshed (sent only when it changed)."""


@dataclasses.dataclass
class _Engine:
    """What a configuration builds: the model and the pipeline around it."""

    config: Config
    model: Model
    pipeline: Pipeline
    model_sha256: str


def model_path(config: Config) -> Path:
    """The model the daemon runs: the configured one; else the model store's (``edge_msl.model_store``): a
    calibrated model that ``edge-msl calibrate`` installed for this array in the state directory
    ($STATE_DIRECTORY), else the packaged one."""
    if config.model:
        return Path(config.model)
    return model_store.installed_model(model_store.state_dir(), config.array.name)


def build_engine(config: Config) -> _Engine:
    """Load the model and build the pipeline; ModelError/PipelineError become ConfigError (exit 78)."""
    try:
        model = load_model(model_path(config), array=config.array, num_threads=config.num_threads)
        rate = config.device.rate_hz or model.info.sample_rate_hz
        pipeline = Pipeline(model, hop_s=config.hop_s, threshold=config.threshold, track=config.track,
                            decode=config.decode, input_rate_hz=rate, array=config.array)
    except (ModelError, PipelineError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    table = dict(config.separate)
    directory = table.pop("dir", "")
    if directory:
        # [separate] dir: a WAV per track id; a write error is logged and never stops the daemon
        pipeline.audio_listener = SeparatedAudio(
            Separator(pipeline.array.positions(), pipeline.sample_rate_hz, SeparateSettings.from_dict(table)),
            TrackWriter(directory, pipeline.sample_rate_hz, tolerant=True))
    return _Engine(config, model, pipeline, model.info.sha256)


def _close_audio(engine: _Engine | None) -> None:
    listener = engine.pipeline.audio_listener if engine is not None else None
    if listener is not None:
        try:
            listener.close()  # the open tracks' files are closed and indexed
        except Exception:  # noqa: BLE001 (stopping or reloading must go on)
            log.exception("closing the per-track audio failed")


def _continue_stream(new: Pipeline, old: Pipeline) -> None:
    # a reload must not restart t_s at 0 or reuse track ids: carry both over to the new pipeline
    try:
        new._offset_s = old._offset_s + old.windower.samples_seen / old.sample_rate_hz
        if new.decoder is not None and old.decoder is not None:
            new.decoder._next_id = max(new.decoder._next_id, old.decoder.next_id)
    except AttributeError as exc:  # pipeline internals changed: times/ids restart, nothing worse
        log.debug("could not carry stream time/ids over the reload: %s", exc)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InstanceLock:
    """One daemon per MQTT identity (broker + client id) on this host: a second one would take over the client
    id and the two would flap the retained status online/offline. Held as a listening abstract unix socket, which
    needs no writable directory (the unit's sandbox and a manual run as another user see the same namespace) and
    is released by the kernel however the process ends."""

    def __init__(self) -> None:
        self.key: str | None = None
        self._sock: Any = None

    @staticmethod
    def key_of(config: Config) -> str | None:
        m = config.mqtt
        return f"{m.host}:{m.effective_port}:{m.client_id or f'edge-msl-{m.node}'}" if m.enabled else None

    def acquire(self, config: Config) -> None:
        """Hold the lock for ``config``'s MQTT identity (releasing the one held before); ConfigError when another
        process holds it."""
        import socket
        import struct

        key = self.key_of(config)
        if key == self.key:
            return
        sock = None
        if key is not None:
            name = b"\0edge-msl-instance/" + hashlib.sha256(key.encode()).hexdigest()[:32].encode()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(name)
                sock.listen(64)
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    log.warning("instance lock for MQTT client %s not taken (%s); not guarding against a second "
                                "daemon", key, exc)
                    sock = None
                else:
                    holder = ""
                    try:
                        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                            probe.settimeout(1.0)
                            probe.connect(name)
                            pid = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
                            holder = f" (pid {pid})"
                    except OSError:
                        pass
                    raise ConfigError(f"another edge-msl daemon{holder} already publishes as MQTT client "
                                      f"{key.rsplit(':', 1)[1]!r} to {key.rsplit(':', 1)[0]}; stop it (systemctl stop "
                                      "edge-msl) or give this one another [mqtt] node_id/client_id") from None
        self.release()
        self.key, self._sock = key, sock

    def release(self) -> None:
        """Let the lock go (the kernel does it too when the process ends)."""
        if self._sock is not None:
            self._sock.close()
        self.key, self._sock = None, None


class Daemon:
    """One run of ``edge-msl run``. ``loader`` (re)reads the configuration (at start and on SIGHUP)."""

    def __init__(self, loader: Callable[[], Config], *, notifier: Notifier | None = None,
                 stdout: IO[str] | None = None, pcm_factory: Callable[[], Any] | None = None) -> None:
        self.loader = loader
        self.notifier = notifier or Notifier()
        self.stdout = stdout
        self.pcm_factory = pcm_factory
        self.stop_event = threading.Event()
        self._reload_requested = False
        self.engine: _Engine | None = None
        self.capture: Capture | None = None
        self.sinks: list[Any] = []
        self._retiring: list[threading.Thread] = []
        self.lock = InstanceLock()
        self._stopped = threading.Event()
        self.messages = 0
        self.reloads = 0
        self.last_sources = 0
        self._started = time.monotonic()
        self._last_status = 0.0
        self._last_log = time.monotonic()

    # -- signals --------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop; SIGHUP: reload (call from the main thread).

        The signals reach a thread of their own through :func:`signal.set_wakeup_fd`: a Python handler runs
        only when the main thread comes back from C, which a hung ALSA read (a frozen PulseAudio) never does, and
        the signal may be delivered to any thread (the runtime's, BLAS's). A stop the processing loop has not
        finished within :data:`STOP_GRACE_S` ends the process from there."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _no_op)  # not the default action; the work is done by the thread below
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        threading.Thread(target=self._signal_loop, args=(r,), name="edge-msl-signals", daemon=True).start()

    def _signal_loop(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except InterruptedError:
                continue
            if not data:
                return
            for signum in data:
                if signum == signal.SIGHUP:
                    self._reload_requested = True
                elif signum in (signal.SIGTERM, signal.SIGINT):
                    again = self.stop_event.is_set()
                    if not again:
                        log.info("%s: stopping", signal.Signals(signum).name)
                    self.stop_event.set()
                    if again and signum == signal.SIGINT:
                        self._stop_now("a second SIGINT")  # a second Ctrl-C: the user really wants out
                    elif not again:
                        threading.Thread(target=self._stop_watch, name="edge-msl-stop-watch", daemon=True).start()

    def _stop_watch(self) -> None:
        if self._stopped.wait(STOP_GRACE_S):
            return
        self._stop_now(f"the processing loop did not stop within {STOP_GRACE_S:g} s (capture read blocked?)")

    def _stop_now(self, why: str) -> None:
        """End the process from a side thread: sinks closed briefly (MQTT says offline), then exit 0."""
        log.warning("%s: exiting without waiting for it", why)
        self.notifier.stopping(f"stopping after {self.messages} messages")
        for s in list(self.sinks):
            try:
                s.close(timeout_s=0.5)
            except Exception:  # noqa: BLE001 (we are leaving anyway)
                pass
        logging.shutdown()
        os._exit(0)

    def request_stop(self) -> None:
        """Stop from another thread (tests, embedding)."""
        self.stop_event.set()

    def request_reload(self) -> None:
        """Reload at the next period, as SIGHUP does."""
        self._reload_requested = True

    # -- set-up ---------------------------------------------------------------------------------------

    def _make_capture(self, config: Config, rate_hz: int) -> Capture:
        return Capture(config.device, rate_hz=rate_hz, n_channels=config.array.n_channels, stop=self.stop_event,
                       on_wait=self._on_wait, pcm_factory=self.pcm_factory)

    def _start_sinks(self, config: Config) -> list[Any]:
        model_name = self.engine.model.info.path.name if self.engine else ""
        sinks = make_sinks(config.stdout, config.mqtt, array_name=config.array.name, model_name=model_name,
                           stream=self.stdout, odas=config.odas, live=config.live)
        for s in sinks:
            if hasattr(s, "start"):
                s.start()
        return sinks

    def _rate(self, engine: _Engine) -> int:
        return engine.config.device.rate_hz or engine.model.info.sample_rate_hz

    def _on_wait(self, status: str) -> None:
        # called while the capture waits for its device: the process is healthy, keep the watchdog fed
        self.notifier.watchdog()
        if status:
            self.notifier.status(status)

    def start(self) -> None:
        """Load config and model, start sinks, create the capture (opened by :meth:`run`).

        Raises ConfigError (exit 78) before anything is opened when the configuration cannot work."""
        config = self.loader()
        self.lock.acquire(config)
        self.engine = build_engine(config)
        try:
            self.capture = self._make_capture(config, self._rate(self.engine))
        except AlsaMissingError as exc:
            raise ConfigError(str(exc)) from None
        self.sinks = self._start_sinks(config)

    # -- main loop ------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start, then process until stopped; returns the exit code (0 after SIGTERM/SIGINT)."""
        try:
            self.start()
        except ConfigError:
            self._close_sinks()
            self.lock.release()
            raise
        try:
            return self._loop()
        finally:
            self._stopped.set()  # the loop is out; closing the sinks below has its own bounds
            self.notifier.stopping(f"stopping after {self.messages} messages")
            summary = self.summary()
            _close_audio(self.engine)
            self._close_sinks()
            self.lock.release()
            if self.capture is not None:
                self.capture.close()
            log.info("stopped: %s", summary)

    def _loop(self) -> int:
        assert self.engine is not None and self.capture is not None
        if not self.capture.open():
            return 0  # stopped while waiting for the device
        self.notifier.ready(self._status_line())
        log.info("ready: model %s, array %s, device %s", self.engine.model.info.path.name,
                 self.engine.config.array.name, self.capture.describe())
        check: StartupCheck | None = None
        opened: tuple | None = None
        while not self.stop_event.is_set():
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            frames = self.capture.read()
            if frames is None:
                if self.stop_event.is_set():
                    break
                # the device went away: what is buffered no longer joins up with what comes next
                self.engine.pipeline.reset()
                continue
            if check is None or opened != (self.capture, self.capture.stats.opens) or \
                    check.configured != self.engine.config.array:
                # (re)opened or reconfigured: check the channel order again (seeed-voicecard picks one per open)
                opened = (self.capture, self.capture.stats.opens)
                check = StartupCheck(self.engine.config.array, self.engine.config.device.channel_check,
                                     sample_rate_hz=self.capture.rate_hz)
            frames = check.feed(frames)
            self.engine.pipeline.array = check.array  # same geometry; only the channel map may move
            if len(frames):
                for msg in self.engine.pipeline.push(frames):
                    self.messages += 1
                    self.last_sources = len(msg["sources"])
                    for sink in self.sinks:
                        sink.publish(msg)
                if self.sinks and all(getattr(s, "closed", False) for s in self.sinks):
                    log.info("every output is closed (stdout reader left): stopping")
                    break
            self._tick()
        return 0

    def _tick(self) -> None:
        now = time.monotonic()
        self.notifier.watchdog(now)
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.notifier.status(self._status_line())
        interval = self.engine.config.logging.status_interval_s if self.engine else 0
        if interval and now - self._last_log >= interval:
            self._last_log = now
            log.info("status: %s", self.summary())

    def _status_line(self) -> str:
        parts = [f"{self.last_sources} source(s)", f"{self.messages} messages"]
        if self.capture is not None:
            st = self.capture.stats
            parts.append(f"{st.overruns} overruns")
            if st.opens > 1:
                parts.append(f"device reopened {st.opens - 1}x")
        for s in self.sinks:
            if s.name == "mqtt":
                parts.append(f"mqtt {'up' if s.connected else 'down'}, {s.queued} queued, {s.dropped} dropped")
        return ", ".join(parts)

    def summary(self) -> str:
        """One line of counters (the periodic log line and the last one)."""
        up = time.monotonic() - self._started
        st = self.capture.stats if self.capture is not None else None
        audio_s = st.frames / self.capture.rate_hz if st is not None and self.capture is not None else 0.0
        parts = [f"up {up:.0f} s", f"audio {audio_s:.1f} s", f"{self.messages} messages"]
        if st is not None:
            parts += [f"{st.overruns} overruns", f"{st.opens} opens", f"{st.failures} device faults"]
        parts += [s.summary() for s in self.sinks]
        if self.reloads:
            parts.append(f"{self.reloads} reloads")
        return ", ".join(parts)

    def _close_sinks(self) -> None:
        for s in self.sinks:
            try:
                s.close()
            except Exception:  # closing must not hide why we stop
                log.exception("closing the %s output failed", s.name)
        self.sinks = []
        for t in self._retiring:
            t.join(timeout=5.0)
        self._retiring = []

    # -- reload ---------------------------------------------------------------------------------------

    def _new_mqtt(self, before: Config, after: Config, engine: _Engine) -> Any:
        """The MQTT sink a reload needs (not started), None to keep the running one or when MQTT is off; built
        before anything changes, so bad [mqtt] settings refuse the reload (ConfigError)."""
        if not after.mqtt.enabled or (after.mqtt == before.mqtt and after.mqtt.password == before.mqtt.password
                                      and any(s.name == "mqtt" for s in self.sinks)):
            return None
        return MqttSink(after.mqtt, array_name=after.array.name, model_name=engine.model.info.path.name)

    def _reload_sinks(self, before: Config, after: Config, new_mqtt: Any = None) -> None:
        """Apply changed [stdout]/[mqtt] settings without losing a message: stdout takes its new settings in
        place; a new MQTT sink takes over the old one's queue, and the old one stops without draining."""
        sinks: list[Any] = []
        old_stdout = next((s for s in self.sinks if s.name == "stdout"), None)
        old_mqtt = next((s for s in self.sinks if s.name == "mqtt"), None)
        if after.stdout.enabled:
            if old_stdout is None:
                old_stdout = StdoutSink(after.stdout, self.stdout)
            old_stdout.settings = after.stdout
            sinks.append(old_stdout)
        if new_mqtt is None and after.mqtt.enabled and old_mqtt is not None:
            sinks.append(old_mqtt)
        else:
            carried = old_mqtt.take_queue() if old_mqtt is not None else []
            if old_mqtt is not None:
                if new_mqtt is None or new_mqtt.status_topic != old_mqtt.status_topic:
                    self._retire(old_mqtt.close, timeout_s=0.0)  # says offline on its own topic
                elif old_mqtt.connected:
                    old_mqtt.retire()  # a clean DISCONNECT (ms) before the new client, maybe of the same id, connects
                else:
                    self._retire(old_mqtt.retire)  # may be inside a connect attempt: do not wait for it
            if new_mqtt is not None:
                new_mqtt.adopt(carried)
                new_mqtt.start()
                sinks.append(new_mqtt)
                if carried:
                    log.info("reload: the new MQTT connection took over %d queued messages", len(carried))
            elif carried:
                log.warning("reload: MQTT is off now; %d queued messages are dropped", len(carried))
        sinks += reload_extra_sinks([s for s in self.sinks if s.name in ("odas", "live")], after.odas, after.live,
                                    array_name=after.array.name)
        self.sinks = sinks

    def _retire(self, stop: Callable[..., None], **kw: Any) -> None:
        # stops an MQTT output the new configuration replaced, in the background, so processing never waits for
        # a broker; joined at exit
        t = threading.Thread(target=stop, kwargs=kw, name="edge-msl-retire", daemon=True)
        t.start()
        self._retiring.append(t)

    def reload(self) -> bool:
        """Re-read the configuration and the model; the audio stream stays open when the device settings
        are unchanged. A bad new configuration is logged and the running one kept. True when applied."""
        assert self.engine is not None and self.capture is not None
        self.notifier.reloading()
        old = self.engine
        try:
            config = self.loader()
            # a calibration installed since the last load changes the resolved path or the file's hash
            same_model = (model_path(config).resolve() == old.model.info.path.resolve() and config.num_threads == old.config.num_threads
                          and _file_sha256(old.model.info.path) == old.model_sha256)
            same_pipeline = same_model and config.device.rate_hz == old.config.device.rate_hz and all(
                getattr(config, k) == getattr(old.config, k) for k in ("array", "hop_s", "threshold", "decode", "track",
                                                                  "separate"))
            engine = old if same_pipeline else build_engine(config)
            new_mqtt = self._new_mqtt(old.config, config, engine)
            self.lock.acquire(config)  # a new MQTT identity that another daemon holds refuses the reload
        except (ConfigError, ModelError, OSError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.notifier.ready(self._status_line())
            return False
        if engine is old:
            engine = dataclasses.replace(old, config=config)
        else:
            _continue_stream(engine.pipeline, old.pipeline)
            _close_audio(old)
        old_key = old.config.device.capture_key(self._rate(old), old.config.array.n_channels)
        new_key = config.device.capture_key(self._rate(engine), config.array.n_channels)
        if new_key != old_key:
            log.info("reload: device settings changed, reopening the capture")
            self.capture.close()
            self.capture = self._make_capture(config, self._rate(engine))
        elif config.device != old.config.device:
            # only retry delays changed: keep the open stream, use the new settings from now on
            self.capture.settings = config.device
        self.engine = engine
        self._reload_sinks(old.config, config, new_mqtt)
        self.reloads += 1
        log.info("reloaded %s: model %s (%s), capture %s", config.source, engine.model.info.path.name,
                 "kept" if engine.model is old.model else "reloaded", "kept" if new_key == old_key else "reopened")
        self.notifier.ready(self._status_line())
        return True


def run_daemon(loader: Callable[[], Config], **kw: Any) -> int:
    """Run until stopped with signal handlers installed; ConfigError -> logged, exit 78."""
    daemon = Daemon(loader, **kw)
    daemon.install_signal_handlers()
    try:
        return daemon.run()
    except ConfigError as exc:
        log.error("%s", exc)
        return EX_CONFIG


def _no_op(signum: int, frame: Any) -> None:
    pass


STOP_GRACE_S = 1.5
"""After SIGTERM/SIGINT, how long the processing loop has to stop before the process ends without it."""

__all__ = ["Daemon", "build_engine", "run_daemon", "STATUS_EVERY_S"]
