"""The MQTT sink (paho-mqtt 2): messages to a broker with a bounded queue that survives broker
outages: nothing within the bound is lost, what falls out is counted and logged; status, state and
Home Assistant discovery topics. It never raises into the processing loop on a transient fault
(broker down) and must not log secrets (the MQTT password). Re-exported by edge_msl.sinks.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import threading
import time
from typing import Any

from .config import ConfigError, MqttSettings
from .ha import STATE_LEAF, StateLimiter, discovery_messages

log = logging.getLogger("edge_msl.sinks")  # the daemon's log name for every sink

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
MAX_INFLIGHT = 20
"""Messages handed to paho and not yet confirmed (PUBACK for QoS 1/2, written for QoS 0) at one time."""


class _NotConnectedFilter(logging.Filter):
    """Drops paho's "Client is not connected" (once per retry and at every stop, never saying why); the sink
    logs the cause instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


def connect_error_text(exc: BaseException | None, s: MqttSettings) -> str:
    """Why a connection attempt failed, with what to check, in one line."""
    if exc is None:
        return "the connection failed; check [mqtt] host and port"
    detail = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the broker's certificate is not accepted ({exc.verify_message or detail}); check [mqtt] "
                f"ca_file = {s.ca_file!r} and that host {s.host!r} is a name in the certificate")
    if isinstance(exc, ssl.SSLError) or (s.tls and isinstance(exc, (ConnectionResetError, ConnectionAbortedError,
                                                                     BrokenPipeError))):
        return (f"TLS handshake failed ({detail}); is port {s.effective_port} a TLS listener? check [mqtt] tls, port, "
                "cert_file/key_file")
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused (nothing listens on port {s.effective_port}); check [mqtt] host/port and the broker"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return f"the broker closed the connection while connecting ({detail}); does the port want TLS? [mqtt] tls"
    if isinstance(exc, socket.gaierror):
        return f"host name {s.host!r} cannot be resolved ({detail}); check [mqtt] host"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer (timed out); check [mqtt] host/port and any firewall"
    return f"{detail}; check [mqtt] host/port"


class _Entry:
    __slots__ = ("seq", "payload", "info")

    def __init__(self, seq: int, payload: bytes) -> None:
        self.seq = seq
        self.payload = payload
        self.info: Any = None


def _published(info: Any) -> bool | None:
    """True/False from paho's MQTTMessageInfo; None when the publish failed and must be retried."""
    try:
        return bool(info.is_published())
    except (ValueError, RuntimeError):
        return None


class MqttSink:
    """Publishes messages to ``<prefix>/<node>/sources``, and ``online``/``offline`` (retained, also the
    last will) to ``<prefix>/<node>/status``; the compact state (retained, on a change, at most
    ``state_max_rate_hz``) to ``<prefix>/<node>/state``; optional Home Assistant discovery reading that state.

    Every message is held here until paho confirms it (PUBACK for QoS 1/2): while the broker is away
    messages wait in a queue of at most ``queue_max_messages`` (the oldest are dropped and counted),
    and after a reconnect they are sent in order. A message whose confirmation was lost with the
    connection is sent again, so QoS 1 delivery is at least once (``t_s`` tells duplicates apart).
    """

    name = "mqtt"

    def __init__(self, settings: MqttSettings, *, array_name: str = "", model_name: str = "") -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ConfigError("[mqtt] host is set but paho-mqtt is not installed; allowed: pip install "
                              "'edge-msl[mqtt]', or an empty [mqtt] host") from None
        from .sinks import encode  # edge_msl.sinks re-exports this module: imported here, not at its top

        self._encode = encode
        self._mqtt = mqtt
        self.settings = s = settings
        self.sources_topic = s.topic("sources")
        self.status_topic = s.topic("status")
        self.state_topic = s.topic(STATE_LEAF)
        self.state = StateLimiter(s.state_max_rate_hz, s.state_min_move_deg)
        self.array_name = array_name
        self.model_name = model_name
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._inflight: list[_Entry] = []
        self._max_inflight = min(MAX_INFLIGHT, s.queue_max_messages)
        self._seq = 0
        self._connected = False
        self._dropped_mids: set[int] = set()
        self._draining = False
        self._running = False
        self._sender: threading.Thread | None = None
        self.delivered = 0
        self.dropped = 0
        self.resent = 0
        self.connects = 0
        self._dropped_in_outage = 0
        self._down_since: float | None = time.monotonic()
        self._last_connect_error = ""

        client_id = s.client_id or f"edge-msl-{s.node}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                        clean_session=True)
        c.reconnect_delay_set(min_delay=s.reconnect_min_delay_s, max_delay=s.reconnect_max_delay_s)
        c.max_inflight_messages_set(self._max_inflight)
        c.will_set(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        if s.username:
            c.username_pw_set(s.username, s.password or None)
        if s.tls:
            try:
                c.tls_set(ca_certs=s.ca_file or None, certfile=s.cert_file or None, keyfile=s.key_file or None,
                          cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"[mqtt] tls files ca_file={s.ca_file!r} cert_file={s.cert_file!r} "
                                  f"key_file={s.key_file!r} are invalid ({exc}); allowed: readable PEM files") \
                    from None
        # a bug in a callback must not end paho's network thread (and with it every reconnect)
        c.suppress_exceptions = True
        paho_log = logging.getLogger("edge_msl.paho")
        paho_log.setLevel(max(logging.WARNING, paho_log.level))
        if not any(isinstance(f, _NotConnectedFilter) for f in paho_log.filters):
            paho_log.addFilter(_NotConnectedFilter())
        c.enable_logger(paho_log)
        # paho retries a failed connect but drops its exception: keep it, so the log can say why
        self._connect_exc: BaseException | None = None
        real_reconnect = c.reconnect

        def reconnect() -> Any:
            try:
                return real_reconnect()
            except OSError as exc:
                self._connect_exc = exc
                raise

        c.reconnect = reconnect  # type: ignore[method-assign]
        c.on_connect_fail = self._on_connect_fail
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying forever) and start the sender; returns at once."""
        s = self.settings
        self._running = True
        self._sender = threading.Thread(target=self._send_loop, name="edge-msl-mqtt-sender", daemon=True)
        self._sender.start()
        log.info("MQTT: publishing to %s:%d as %s on %s (QoS %d%s%s), queue bound %d messages", s.host,
                 s.effective_port, s.username or "anonymous", self.sources_topic, s.qos, ", TLS" if s.tls else "",
                 ", Home Assistant discovery" if s.discovery else "", s.queue_max_messages)
        self.client.connect_async(s.host, s.effective_port, keepalive=s.keepalive_s)
        self.client.loop_start()

    def take_queue(self) -> list[bytes]:
        """Every message not yet confirmed, oldest first, removed from this sink (for the sink that replaces it
        on a reload; one that was in flight may then arrive twice, which QoS 1 allows)."""
        with self._cond:
            self._confirm()
            entries = sorted([*self._inflight, *self._pending], key=lambda e: e.seq)
            self._inflight = []
            self._pending.clear()
            self._cond.notify_all()
        return [e.payload for e in entries]

    def adopt(self, payloads: list[bytes]) -> None:
        """Queue messages taken from the sink this one replaces, ahead of any new ones (the bound still holds)."""
        with self._cond:
            for payload in payloads:
                self._seq += 1
                self._pending.append(_Entry(self._seq, payload))
            excess = len(self._pending) - self.settings.queue_max_messages
            for _ in range(max(0, excess)):
                self._pending.popleft()
                self.dropped += 1
            self._cond.notify_all()

    def retire(self) -> None:
        """Stop at once for the sink that replaces this one on a reload: no draining, no ``offline`` (the
        replacement says ``online`` on the same topic); a clean DISCONNECT, so the broker keeps the will."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s`` while connected), publish ``offline``, disconnect."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._pending or self._inflight) and self._connected and time.monotonic() < deadline:
                self._confirm()
                self._cond.notify_all()
                self._cond.wait(0.02)
            self._confirm()
            self._running = False
            self._cond.notify_all()
            left = len(self._pending) + len(self._inflight)
            connected = self._connected
        if self._sender is not None:
            self._sender.join(timeout=2.0)
        if connected:
            info = self.client.publish(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (ValueError, RuntimeError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        log.info("MQTT closed: %d messages delivered, %d dropped by the queue bound, %d resent, %d undelivered",
                 self.delivered, self.dropped, self.resent, left)

    # -- publishing ---------------------------------------------------------------------------------

    def publish(self, msg: dict[str, Any]) -> None:
        """Send one message, or queue it while the broker is away (never blocks, never raises)."""
        payload = self._encode(msg).encode()
        direct = None
        with self._cond:
            self._seq += 1
            self._confirm()
            if self._connected and not self._pending and not self._draining \
                    and len(self._inflight) < self._max_inflight:
                # the common case, no backlog: hand it to paho from this thread, no thread switch
                direct = _Entry(self._seq, payload)
                self._inflight.append(direct)
            elif len(self._pending) + len(self._inflight) >= self.settings.queue_max_messages:
                if self._pending:
                    self._pending.popleft()
                    self._pending.append(_Entry(self._seq, payload))
                self.dropped += 1
                self._dropped_in_outage += 1
                if self._dropped_in_outage == 1:
                    log.warning("MQTT queue full (%d messages) while the broker is away: dropping the oldest "
                                "(counted; raise [mqtt] queue_max_messages to keep more)",
                                self.settings.queue_max_messages)
            else:
                self._pending.append(_Entry(self._seq, payload))
                self._cond.notify_all()
        if direct is not None:
            self._hand_over(direct)
        state = self.state.offer(msg)
        if state is not None and self._connected:
            # latest-wins and retained: not queued (after a reconnect the current one is sent)
            self.client.publish(self.state_topic, state, qos=1, retain=True)

    def _hand_over(self, e: _Entry) -> None:
        """client.publish one entry that is in flight; called without our lock (paho takes its own)."""
        qos = self.settings.qos
        info = self.client.publish(self.sources_topic, e.payload, qos=qos)
        ok, no_conn = self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN
        # with QoS 1/2 paho keeps a message it could not send (NO_CONN) and sends it after the
        # reconnect: it stays ours in flight then, so it is neither lost nor sent twice
        paho_holds = info.rc == ok or (qos > 0 and info.rc == no_conn)
        with self._cond:
            paho_holds = paho_holds and info.mid not in self._dropped_mids
            e.info = info
            if e not in self._inflight:
                # a disconnect put it back in the queue while paho was taking it
                if paho_holds and qos > 0 and e in self._pending:
                    self._pending.remove(e)
                    self._inflight.append(e)
            elif not paho_holds:
                self._inflight.remove(e)
                self._requeue([e])
                self._cond.notify_all()

    @property
    def queued(self) -> int:
        """Messages not yet confirmed by the broker."""
        with self._lock:
            return len(self._pending) + len(self._inflight)

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected

    def summary(self) -> str:
        """Counters for the status line."""
        state = "up" if self._connected else "down"
        return f"mqtt {state}, {self.delivered} delivered, {self.queued} queued, {self.dropped} dropped"

    def _confirm(self) -> None:
        # with the lock held: drop confirmed entries, put failed ones back in front
        if not self._inflight:
            return
        keep, retry = [], []
        for e in self._inflight:
            state = _published(e.info) if e.info is not None else False
            if state is True:
                self.delivered += 1
            elif state is None:
                retry.append(e)
            else:
                keep.append(e)
        self._inflight = keep
        self._requeue(retry)

    def _requeue(self, entries: list[_Entry]) -> None:
        if not entries:
            return
        self.resent += len(entries)
        for e in sorted(entries, key=lambda e: e.seq, reverse=True):
            e.info = None
            self._pending.appendleft(e)

    def _send_loop(self) -> None:
        # drains the backlog after an outage (publish() sends directly when there is none)
        while True:
            with self._cond:
                while True:
                    self._confirm()
                    if not self._running:
                        return
                    if self._connected and self._pending and len(self._inflight) < self._max_inflight:
                        break
                    # woken by publish() when it queues, by paho's on_publish/on_connect; the timeout is
                    # only a safety net
                    self._cond.wait(1.0)
                batch = []
                while self._pending and len(self._inflight) < self._max_inflight:
                    e = self._pending.popleft()
                    self._inflight.append(e)
                    batch.append(e)
                self._draining = True
            try:
                for e in batch:
                    self._hand_over(e)
            finally:
                with self._cond:
                    self._draining = False

    # -- paho callbacks (paho's network thread) -------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        s = self.settings
        if reason_code.is_failure:
            text = str(reason_code)
            if text != self._last_connect_error:
                log.error("MQTT broker %s:%d refused the connection: %s; check [mqtt] username/password_file/tls "
                          "(retrying)", s.host, s.effective_port, text)
                self._last_connect_error = text
            return
        self._last_connect_error = ""
        client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
        if s.discovery:
            client.subscribe(f"{s.discovery_prefix}/status", qos=1)
            self.publish_discovery()
        state = self.state.current()
        if state is not None:
            client.publish(self.state_topic, state, qos=1, retain=True)
        with self._cond:
            self.connects += 1
            self._connected = True
            down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
            self._down_since = None
            queued = len(self._pending) + len(self._inflight)
            dropped = self._dropped_in_outage
            self._dropped_in_outage = 0
            self._cond.notify_all()
        if self.connects == 1:
            log.info("MQTT connected to %s:%d", s.host, s.effective_port)
        else:
            log.warning("MQTT broker %s:%d back after %.1f s: sending %d queued messages (%d dropped by the queue "
                        "bound)", s.host, s.effective_port, down, queued, dropped)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # one line per outage and cause (paho retries every reconnect delay; repeating it would flood the journal)
        s = self.settings
        text = connect_error_text(self._connect_exc, s)
        if text != self._last_connect_error:
            self._last_connect_error = text
            log.error("MQTT cannot connect to %s:%d: %s (retrying every %d s at most, messages are queued)",
                      s.host, s.effective_port, text, s.reconnect_max_delay_s)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        # paho would resend its unconfirmed QoS>0 messages itself; we resend ours instead, in order
        dropped = client.drop_out_messages()
        with self._cond:
            # the sender may be inside client.publish() right now: tell it which messages paho let go
            self._dropped_mids = {m.mid for m in dropped}
            was = self._connected
            self._connected = False
            self._confirm()
            self._requeue(self._inflight)
            self._inflight = []
            if was:
                self._down_since = time.monotonic()
            queued = len(self._pending)
        if was and self._running:
            s = self.settings
            log.warning("MQTT connection to %s:%d lost (%s): reconnecting with backoff up to %d s; holding %d "
                        "messages (bound %d)", s.host, s.effective_port, reason_code, s.reconnect_max_delay_s,
                        queued, s.queue_max_messages)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # a confirmation frees a slot in flight: wake the sender if it has a backlog to send
        with self._cond:
            if self._pending or not self._running:
                self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        s = self.settings
        if s.discovery and message.topic == f"{s.discovery_prefix}/status" and message.payload == b"online":
            log.info("Home Assistant is online: publishing discovery again")
            self.publish_discovery()

    # -- Home Assistant -------------------------------------------------------------------------------

    def discovery_messages(self) -> dict[str, dict[str, Any]]:
        """Topic -> retained config of the Home Assistant entities (:func:`edge_msl.ha.discovery_messages`)."""
        return discovery_messages(self.settings, status_topic=self.status_topic, array_name=self.array_name)

    def publish_discovery(self) -> None:
        """Publish (retained) the Home Assistant discovery configs."""
        for topic, cfg in self.discovery_messages().items():
            self.client.publish(topic, self._encode(cfg), qos=1, retain=True)
