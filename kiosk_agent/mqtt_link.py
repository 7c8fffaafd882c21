"""MQTT link between the kiosk agent and the fleet server (paho-mqtt 2.x, MQTT 3.1.1).

Threads. Paho's network thread (``loop_start``) runs the socket and calls the
``_paho_on_*`` methods. They touch nothing but paho and a few counters of their own, and
hand everything else to the agent's asyncio loop with ``loop.call_soon_threadsafe``::

    paho network thread                         agent's asyncio loop
    ------------------------------------        ---------------------------------------
    _paho_on_connect     -- subscribe, publish online status
                         -- call_soon_threadsafe --> _handle_connected (resend outbox now)
    _paho_on_disconnect  -- schedule reconnect
                         -- call_soon_threadsafe --> _handle_disconnected
    _paho_on_message     -- call_soon_threadsafe --> _handle_message (parse, command
                                                     handler, Ack -> outbox.acknowledge)
                                                     _resend_loop task: outbox -> publish
                                                     _heartbeat_loop task: telemetry

The outbox, the statistics and the command handler are used on the asyncio loop only.
``client.publish`` is called from both threads, which paho supports while its own thread
runs the network loop.

Delivery. Sales and events are published at QoS 1 from the outbox and stay there until
the server's ``Ack`` names them. Each publish schedules the next attempt with the outbox's
backoff, and a reconnect makes every queued message due at once. Broker restarts,
dropped connections and queue limits therefore delay a sale in the outbox but do not
lose it.

Session. The client connects with clean_session=True. The outbox, not the broker session,
makes uplink delivery reliable. A command waiting in a persistent session would have
expired (an unlock lives for seconds) by the time the cabinet returns, and a missed
``Ack`` costs only a resend that the server acknowledges again. A clean session also
spares the broker from queueing for thousands of offline cabinets. Subscriptions are
renewed on every connect.

Reconnect. Paho's own thread reconnects, waiting between attempts for the delay that
``reconnect_delay_set`` gives it. Paho doubles that delay without jitter, so after every
failed attempt the link draws its own capped exponential delay with jitter and sets it
as paho's next (minimum = maximum) delay. In paho 2.2.0 ``loop_forever`` calls
``on_disconnect`` or ``on_connect_fail`` before each wait, so every wait uses the delay
drawn for it.
"""

import asyncio
import contextlib
import inspect
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kiosk_agent.config import AgentSettings
from kiosk_agent.contract import (
    CHANNEL_QOS,
    Ack,
    Channel,
    Command,
    ContractError,
    KioskState,
    KioskStatus,
    Telemetry,
    encode_payload,
    kiosk_topic,
    parse_command,
    parse_payload,
    utc_now,
)
from kiosk_agent.outbox import MessageKind, Outbox, OutboxError, backoff_delay_s

logger = logging.getLogger(__name__)
paho_logger = logging.getLogger(f"{__name__}.paho")

RECONNECT_MIN_S: Final = 1.0
RECONNECT_MAX_S: Final = 120.0
KEEPALIVE_S: Final = 30
HEARTBEAT_INTERVAL_S: Final = 30.0
# How often the resend task looks for due outbox messages when nothing wakes it.
RESEND_POLL_S: Final = 1.0
# Outbox rows read per query while publishing.
PUBLISH_BATCH: Final = 100
# Paho keeps at most this many unacknowledged QoS 1 messages in memory. Beyond that,
# publish() returns MQTT_ERR_QUEUE_SIZE, and the rest waits in the outbox.
MAX_QUEUED_MESSAGES: Final = 1000
# How long stop() waits for the broker to confirm the offline status.
STOP_PUBLISH_TIMEOUT_S: Final = 2.0
LOG_EXCERPT_CHARS: Final = 120

CommandHandler = Callable[[Command], Awaitable[None] | None]
TelemetrySource = Callable[[], Telemetry]


@dataclass(frozen=True)
class TlsFiles:
    """TLS files. Without ``ca_file``, the system's CA certificates verify the broker."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class LinkOptions:
    kiosk_id: str
    host: str
    port: int
    agent_version: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsFiles | None = None
    keepalive_s: int = KEEPALIVE_S
    reconnect_min_s: float = RECONNECT_MIN_S
    reconnect_max_s: float = RECONNECT_MAX_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    resend_poll_s: float = RESEND_POLL_S
    publish_batch: int = PUBLISH_BATCH
    max_queued_messages: int = MAX_QUEUED_MESSAGES

    def __post_init__(self) -> None:
        if self.password is not None and self.username is None:
            raise ValueError("a broker password needs a username; set username as well")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be less than reconnect_min_s")

    @classmethod
    def from_settings(cls, settings: AgentSettings, *, agent_version: str) -> "LinkOptions":
        tls = None
        if settings.broker_tls:
            tls = TlsFiles(
                ca_file=settings.broker_tls_ca_file,
                cert_file=settings.broker_tls_cert_file,
                key_file=settings.broker_tls_key_file,
            )
        password = settings.broker_password
        return cls(
            kiosk_id=settings.kiosk_id,
            host=settings.broker_host,
            port=settings.broker_port,
            agent_version=agent_version,
            username=settings.mqtt_username,
            password=password.get_secret_value() if password is not None else None,
            tls=tls,
            keepalive_s=settings.broker_keepalive_s,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
            heartbeat_interval_s=settings.heartbeat_interval_s,
        )


@dataclass
class LinkStats:
    """Counters of the link, updated on the asyncio loop only."""

    connects: int = 0
    connection_losses: int = 0
    sales_published: int = 0
    events_published: int = 0
    messages_acknowledged: int = 0
    telemetry_published: int = 0
    malformed_commands: int = 0
    malformed_acks: int = 0
    handler_errors: int = 0


async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until the event is set or ``timeout_s`` passes, then clear the event."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    event.clear()


def _excerpt(text: str) -> str:
    return text if len(text) <= LOG_EXCERPT_CHARS else text[:LOG_EXCERPT_CHARS] + "..."


class MqttLink:
    """Connection of one cabinet to the broker: outbox delivery, commands, acks and heartbeats.

    ``on_command`` runs on the asyncio loop for every well-formed command, which it must
    verify (``kiosk_agent.signing.verify_command``) before obeying it. It may return an
    awaitable, which runs as a task. An exception from it is logged with its traceback and
    counted in ``stats.handler_errors``.
    """

    def __init__(
        self,
        options: LinkOptions,
        *,
        outbox: Outbox,
        on_command: CommandHandler,
        telemetry_source: TelemetrySource | None = None,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self.stats = LinkStats()
        self._outbox = outbox
        self._on_command = on_command
        self._telemetry_source = telemetry_source
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._topics = {channel: kiosk_topic(options.kiosk_id, channel) for channel in Channel}

        # Used on the asyncio loop only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        # Set once the broker confirmed the subscriptions of the current connection.
        self._ready_event = asyncio.Event()
        self._wake_resend = asyncio.Event()
        self._wake_heartbeat = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._handler_tasks: set[asyncio.Future[None]] = set()

        # Used on paho's network thread only, except _stopping.
        self._stopping = threading.Event()
        self._failed_attempts = 0
        self._outage_started: float | None = None
        self._rejection: str | None = None

        self._client = self._build_client()

    # --- Set-up ---------------------------------------------------------------------------

    def _build_client(self) -> mqtt.Client:
        options = self.options
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.kiosk_id,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.on_log = self._paho_on_log
        client.on_connect = self._paho_on_connect
        client.on_connect_fail = self._paho_on_connect_fail
        client.on_disconnect = self._paho_on_disconnect
        client.on_message = self._paho_on_message
        client.on_subscribe = self._paho_on_subscribe

        if options.username is not None:
            client.username_pw_set(options.username, options.password)
        if options.tls is not None:
            client.tls_set(
                ca_certs=str(options.tls.ca_file) if options.tls.ca_file else None,
                certfile=str(options.tls.cert_file) if options.tls.cert_file else None,
                keyfile=str(options.tls.key_file) if options.tls.key_file else None,
            )

        # The broker publishes this retained status if the connection ends without a
        # DISCONNECT: a crash, a power cut or a keepalive timeout.
        offline = KioskStatus(
            kiosk_id=options.kiosk_id,
            state=KioskState.OFFLINE,
            since=None,
            agent_version=options.agent_version,
        )
        client.will_set(
            self._topics[Channel.STATUS],
            encode_payload(offline),
            qos=CHANNEL_QOS[Channel.STATUS],
            retain=True,
        )

        client.max_queued_messages_set(options.max_queued_messages)
        self._set_reconnect_delay(client, options.reconnect_min_s)
        return client

    @staticmethod
    def _set_reconnect_delay(client: mqtt.Client, delay_s: float) -> None:
        # Paho 2.2.0 annotates the delays as int, but _reconnect_wait() only adds them to
        # time.time() and sleeps, so fractional seconds work and keep the jitter fine-grained.
        client.reconnect_delay_set(min_delay=delay_s, max_delay=delay_s)  # type: ignore[arg-type]

    # --- Lifecycle (asyncio loop) ---------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in paho's thread and start the resend and heartbeat tasks.

        Returns at once; the link keeps reconnecting until ``stop()``. Use
        ``wait_connected()`` to wait for the first connection.
        """
        if self._loop is not None:
            raise RuntimeError("the MQTT link is already started")
        self._loop = asyncio.get_running_loop()
        logger.info(
            "MQTT link of kiosk %s connecting to %s:%d (TLS %s)",
            self.options.kiosk_id,
            self.options.host,
            self.options.port,
            "on" if self.options.tls is not None else "off",
        )
        self._client.connect_async(
            self.options.host, self.options.port, keepalive=self.options.keepalive_s
        )
        self._client.loop_start()
        self._tasks = [
            asyncio.create_task(self._resend_loop(), name="mqtt-resend"),
            asyncio.create_task(self._heartbeat_loop(), name="mqtt-heartbeat"),
        ]

    async def stop(self) -> None:
        """Publish the offline status, disconnect cleanly and stop paho's thread."""
        self._stopping.set()
        for task in [*self._tasks, *self._handler_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._handler_tasks, return_exceptions=True)
        self._tasks = []

        if self._connected:
            offline = KioskStatus(
                kiosk_id=self.options.kiosk_id,
                state=KioskState.OFFLINE,
                since=self._clock(),
                agent_version=self.options.agent_version,
            )
            info = self._client.publish(
                self._topics[Channel.STATUS], encode_payload(offline), qos=1, retain=True
            )
            try:
                await asyncio.to_thread(info.wait_for_publish, STOP_PUBLISH_TIMEOUT_S)
            except (ValueError, RuntimeError) as exc:
                logger.warning("offline status not confirmed before disconnect: %s", exc)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._connected = False
        self._ready_event.clear()
        logger.info("MQTT link of kiosk %s stopped", self.options.kiosk_id)

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection, as last seen by the asyncio loop."""
        return self._connected

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until the broker accepted the connection and confirmed the subscriptions.

        Returns False if ``timeout_s`` passed first. From then on, commands and acks
        published to this cabinet reach the link.
        """
        try:
            await asyncio.wait_for(self._ready_event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def notify_outbox(self) -> None:
        """Publish due outbox messages now instead of at the next poll (asyncio loop only)."""
        self._wake_resend.set()

    # --- Paho network thread --------------------------------------------------------------
    # Each callback catches every exception: paho re-raises exceptions from callbacks,
    # which would end its network thread and with it every reconnect.

    def _hand_off(self, callback: Callable[..., None], *args: object) -> None:
        """Schedule ``callback(*args)`` on the asyncio loop. Called from paho's thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed: the agent is shutting down.
            logger.debug("event loop closed, so %s was dropped", callback.__name__)

    def _paho_on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                # Paho closes the socket next and calls on_disconnect, which logs this reason.
                self._rejection = f"broker rejected the connection: {reason_code}"
                return
            self._rejection = None
            client.subscribe(
                [
                    (self._topics[Channel.COMMANDS], CHANNEL_QOS[Channel.COMMANDS]),
                    (self._topics[Channel.ACKS], CHANNEL_QOS[Channel.ACKS]),
                ]
            )
            online = KioskStatus(
                kiosk_id=self.options.kiosk_id,
                state=KioskState.ONLINE,
                since=self._clock(),
                agent_version=self.options.agent_version,
            )
            client.publish(
                self._topics[Channel.STATUS],
                encode_payload(online),
                qos=CHANNEL_QOS[Channel.STATUS],
                retain=True,
            )
            if self._outage_started is not None:
                logger.info(
                    "MQTT link to %s:%d restored after %.1f s and %d failures",
                    self.options.host,
                    self.options.port,
                    time.monotonic() - self._outage_started,
                    self._failed_attempts,
                )
            else:
                logger.info("MQTT link connected to %s:%d", self.options.host, self.options.port)
            self._failed_attempts = 0
            self._outage_started = None
            self._set_reconnect_delay(client, self.options.reconnect_min_s)
            self._hand_off(self._handle_connected)
        except Exception:
            logger.exception("MQTT on_connect handling failed")

    def _paho_on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        try:
            self._schedule_reconnect(client, "cannot open a connection to the broker")
        except Exception:
            logger.exception("MQTT on_connect_fail handling failed")

    def _paho_on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            self._hand_off(self._handle_disconnected)
            if self._stopping.is_set():
                return
            reason = self._rejection or f"connection lost: {reason_code}"
            self._rejection = None
            self._schedule_reconnect(client, reason)
        except Exception:
            logger.exception("MQTT on_disconnect handling failed")

    def _schedule_reconnect(self, client: mqtt.Client, reason: str) -> None:
        """Draw the delay before paho's next connection attempt, and log the outage."""
        self._failed_attempts += 1
        delay_s = backoff_delay_s(
            self._failed_attempts,
            base_s=self.options.reconnect_min_s,
            cap_s=self.options.reconnect_max_s,
            rng=self._rng,
        )
        self._set_reconnect_delay(client, delay_s)
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            logger.warning(
                "MQTT link to %s:%d is down (%s); reconnecting with backoff of up to %.1f s",
                self.options.host,
                self.options.port,
                reason,
                self.options.reconnect_max_s,
            )
        else:
            logger.debug(
                "MQTT reconnect to %s:%d failed (%s), failure %d of this outage; "
                "next attempt in %.2f s",
                self.options.host,
                self.options.port,
                reason,
                self._failed_attempts,
                delay_s,
            )

    def _paho_on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            refused = [str(code) for code in reason_codes if code.is_failure]
            if refused:
                # Without these subscriptions the cabinet receives no commands and no acks.
                logger.error(
                    "broker rejected the subscriptions of kiosk %s (%s); check the broker ACL",
                    self.options.kiosk_id,
                    ", ".join(refused),
                )
                return
            self._hand_off(self._handle_subscribed)
        except Exception:
            logger.exception("MQTT on_subscribe handling failed")

    def _paho_on_log(self, client: mqtt.Client, userdata: object, level: int, text: str) -> None:
        # Paho's own messages go out at debug. The link logs connection losses, refusals
        # and failures itself, and paho 2.2.0 reports a normal disconnect as an error
        # ("Client is not connected").
        paho_logger.debug("%s", text)

    def _paho_on_message(
        self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        try:
            self._hand_off(self._handle_message, message.topic, bytes(message.payload))
        except Exception:
            logger.exception("MQTT on_message handling failed")

    # --- Asyncio loop ---------------------------------------------------------------------

    def _handle_connected(self) -> None:
        self._connected = True
        self.stats.connects += 1
        try:
            due_now = self._outbox.reschedule_all(self._clock())
        except OutboxError:
            logger.exception("cannot reschedule the outbox after connecting")
        else:
            if due_now:
                logger.info("resending %d queued messages after connecting", due_now)
        self._wake_resend.set()
        self._wake_heartbeat.set()

    def _handle_disconnected(self) -> None:
        if self._connected:
            self.stats.connection_losses += 1
        self._connected = False
        self._ready_event.clear()

    def _handle_subscribed(self) -> None:
        if self._connected:
            self._ready_event.set()

    def _handle_message(self, topic: str, payload: bytes) -> None:
        if topic == self._topics[Channel.COMMANDS]:
            self._dispatch_command(payload)
        elif topic == self._topics[Channel.ACKS]:
            self._apply_ack(payload)
        else:
            logger.debug("ignored a message on unexpected topic %r", _excerpt(topic))

    def _dispatch_command(self, payload: bytes) -> None:
        try:
            command = parse_command(payload)
        except ContractError as exc:
            self.stats.malformed_commands += 1
            logger.warning(
                "discarded malformed command (%d so far): %s", self.stats.malformed_commands, exc
            )
            return
        logger.info("received %s command %s", command.type, command.command_id)
        try:
            result = self._on_command(command)
        except Exception:
            self.stats.handler_errors += 1
            logger.exception("command handler failed on command %s", command.command_id)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._handler_tasks.add(task)
            task.add_done_callback(self._command_task_done)

    def _command_task_done(self, task: asyncio.Future[None]) -> None:
        self._handler_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.stats.handler_errors += 1
            logger.error("command handler failed", exc_info=exc)

    def _apply_ack(self, payload: bytes) -> None:
        try:
            ack = parse_payload(Ack, payload)
        except ContractError as exc:
            self.stats.malformed_acks += 1
            logger.warning(
                "discarded malformed ack (%d so far): %s", self.stats.malformed_acks, exc
            )
            return
        try:
            deleted = self._outbox.acknowledge([*ack.sale_ids, *ack.event_ids])
        except OutboxError:
            logger.exception("cannot delete acknowledged messages from the outbox")
            return
        self.stats.messages_acknowledged += deleted
        logger.debug(
            "ack for %d sales and %d events deleted %d queued messages",
            len(ack.sale_ids),
            len(ack.event_ids),
            deleted,
        )

    async def _resend_loop(self) -> None:
        while True:
            await _wait_event(self._wake_resend, self.options.resend_poll_s)
            if not self._connected:
                continue
            try:
                self._publish_due()
            except Exception:
                logger.exception(
                    "publishing from the outbox failed; retrying in %.1f s",
                    self.options.resend_poll_s,
                )

    def _publish_due(self) -> None:
        """Publish due outbox messages until none is due or paho's queue is full."""
        now = self._clock()
        # A pass publishes at most one queue's worth, so it ends even if mark_sent()
        # leaves messages due (a zero backoff).
        budget = self.options.max_queued_messages
        while budget > 0 and self._connected:
            batch = self._outbox.due(now, min(self.options.publish_batch, budget))
            if not batch:
                return
            published = []
            for message in batch:
                channel = Channel.SALES if message.kind is MessageKind.SALE else Channel.EVENTS
                info = self._client.publish(
                    self._topics[channel], message.payload, qos=CHANNEL_QOS[channel]
                )
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    logger.debug("paho's queue is full; the rest of the outbox waits")
                    budget = 0
                    break
                # On MQTT_ERR_NO_CONN paho keeps a QoS 1 message and sends it after the
                # next connect, so it counts as published too.
                published.append(message.message_id)
                if message.kind is MessageKind.SALE:
                    self.stats.sales_published += 1
                else:
                    self.stats.events_published += 1
                logger.debug(
                    "published %s %s (attempt %d, monotonic %.4f s)",
                    message.kind.value,
                    message.message_id,
                    message.attempts + 1,
                    time.monotonic(),
                )
            self._outbox.mark_sent_many(published, now)
            budget -= len(published)
            if len(batch) < self.options.publish_batch:
                return

    async def _heartbeat_loop(self) -> None:
        while True:
            await _wait_event(self._wake_heartbeat, self.options.heartbeat_interval_s)
            if not self._connected or self._telemetry_source is None:
                continue
            try:
                telemetry = self._telemetry_source()
                self._client.publish(
                    self._topics[Channel.TELEMETRY],
                    encode_payload(telemetry),
                    qos=CHANNEL_QOS[Channel.TELEMETRY],
                )
                self.stats.telemetry_published += 1
            except Exception:
                logger.exception("publishing telemetry failed")
