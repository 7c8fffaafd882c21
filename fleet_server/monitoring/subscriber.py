"""MQTT subscriber that feeds cabinet status and telemetry into the monitoring handlers.

Threads. Paho's network thread (``loop_start``) runs the socket and the ``_on_*``
callbacks. They only parse and validate the message and put it on a bounded queue. One
worker thread owns every database session: it takes messages off the queue, runs the
handler in its own transaction, and runs the offline and alert sweep between messages::

    paho network thread                     worker thread
    -------------------------------         ------------------------------------------
    _on_connect   subscribe                 loop: queue.get (until the next sweep is due)
    _on_message   parse, validate  --put--> handle_status / handle_telemetry, commit
                                            every sweep_interval_s: sweep, commit

A handler that fails is logged with its traceback and its transaction rolled back; the
worker goes on with the next message. A message lost that way costs little: a status is
retained and sent again on reconnect, and telemetry comes with the next heartbeat.

When the queue is full, telemetry is dropped and counted, because the next heartbeat
replaces it. A status waits for room, because the broker would not send it again.

NOTE: run one subscriber per fleet. Two would process one cabinet's messages in
parallel and could apply an older status after a newer one.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.messaging.client import (
    CONNECT_TIMEOUT_S,
    BrokerAddress,
    BrokerConnectionError,
    SubscriberClient,
)
from fleet_server.messaging.publisher import CommandPublisher
from fleet_server.models.base import utc_now
from fleet_server.services.monitoring import (
    MonitoringPolicy,
    handle_status,
    handle_telemetry,
    sweep,
)
from kiosk_agent.contract import (
    CHANNEL_QOS,
    Channel,
    ContractError,
    KioskStatus,
    Telemetry,
    fleet_topic_filter,
    parse_kiosk_topic,
    parse_payload,
)

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
QUEUE_SIZE = 10_000
# How long paho's thread waits for room for a status before dropping it.
STATUS_PUT_TIMEOUT_S = 5.0
# Log one warning per this many dropped or invalid messages.
LOG_EVERY = 100


@dataclass(frozen=True)
class _Message:
    channel: Channel
    payload: KioskStatus | Telemetry
    received_at: datetime


@dataclass
class SubscriberStats:
    processed: int = 0
    failed: int = 0
    invalid: int = 0
    dropped: int = 0
    sweeps: int = 0


# The error that start raises, under the name that callers of this module catch.
SubscriberError = BrokerConnectionError


class MonitoringSubscriber:
    """Subscribes to every cabinet's status and telemetry; see the module docstring."""

    def __init__(
        self,
        broker: BrokerAddress,
        session_factory: sessionmaker[Session],
        *,
        policy: MonitoringPolicy,
        publisher: CommandPublisher | None = None,
        sweep_interval_s: float = 10.0,
        queue_size: int = QUEUE_SIZE,
        client_id: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.broker = broker
        self.stats = SubscriberStats()
        self._factory = session_factory
        self._policy = policy
        self._publisher = publisher
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._queue: queue.Queue[_Message | None] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._client = SubscriberClient(
            broker,
            name="monitoring subscriber",
            client_id=client_id,
            client_id_prefix="fleet-monitor",
            subscriptions=[
                (fleet_topic_filter(Channel.STATUS), CHANNEL_QOS[Channel.STATUS]),
                (fleet_topic_filter(Channel.TELEMETRY), CHANNEL_QOS[Channel.TELEMETRY]),
            ],
            on_message=self._accept,
        )

    # --- Lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Start the worker, connect and subscribe.

        Raises BrokerConnectionError (a ConnectionError) if that does not finish in time.
        """
        self._worker = threading.Thread(target=self._run_worker, name="fleet-monitor", daemon=True)
        self._worker.start()
        try:
            self._client.start(timeout_s)
        except ConnectionError:
            self._stop_worker()
            raise
        logger.info("monitoring subscriber started on %s:%d", self.broker.host, self.broker.port)

    def stop(self) -> None:
        """Disconnect, let the worker finish the queued messages, and stop both threads."""
        self._client.close()
        self._stop_worker()
        logger.info("monitoring subscriber stopped: %s", self.stats)

    def _stop_worker(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(STOP_TIMEOUT_S)
            if self._worker.is_alive():
                logger.error("monitoring worker did not stop within %.0f s", STOP_TIMEOUT_S)

    # --- Paho network thread ----------------------------------------------------------------

    def _accept(self, topic: str, raw: bytes) -> None:
        if not raw:
            return  # a retained status being cleared
        received_at = self._clock()
        try:
            kiosk_id, channel = parse_kiosk_topic(topic)
            payload: KioskStatus | Telemetry
            if channel is Channel.STATUS:
                payload = parse_payload(KioskStatus, raw)
            elif channel is Channel.TELEMETRY:
                payload = parse_payload(Telemetry, raw)
            else:
                return
            if payload.kiosk_id != kiosk_id:
                raise ContractError(
                    f"payload names kiosk {payload.kiosk_id!r} but came on the topic of "
                    f"{kiosk_id!r}"
                )
        except ContractError as error:
            self.stats.invalid += 1
            if self.stats.invalid % LOG_EVERY == 1:
                logger.warning(
                    "invalid message on %s rejected (%d so far): %s",
                    topic,
                    self.stats.invalid,
                    error.reason,
                )
            return

        item = _Message(channel=channel, payload=payload, received_at=received_at)
        try:
            if channel is Channel.STATUS:
                self._queue.put(item, timeout=STATUS_PUT_TIMEOUT_S)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            if self.stats.dropped % LOG_EVERY == 1:
                logger.warning(
                    "monitoring queue full: %s of %s dropped (%d so far)",
                    channel.value,
                    kiosk_id,
                    self.stats.dropped,
                )

    # --- Worker thread ----------------------------------------------------------------------

    def _run_worker(self) -> None:
        next_sweep = time.monotonic() + self._sweep_interval_s
        while True:
            timeout = max(next_sweep - time.monotonic(), 0.0)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
                if self._stopping.is_set():
                    return
            if item is None and self._stopping.is_set() and self._queue.empty():
                return
            if item is not None:
                self._process(item)
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + self._sweep_interval_s

    def _process(self, item: _Message) -> None:
        try:
            with session_scope(self._factory) as db:
                if isinstance(item.payload, KioskStatus):
                    handle_status(
                        db,
                        item.payload,
                        received_at=item.received_at,
                        policy=self._policy,
                        publisher=self._publisher,
                    )
                else:
                    handle_telemetry(
                        db,
                        item.payload,
                        received_at=item.received_at,
                        policy=self._policy,
                        publisher=self._publisher,
                    )
            self.stats.processed += 1
        except SQLAlchemyError:
            self.stats.failed += 1
            logger.exception(
                "database error on %s of %s; message lost",
                item.channel.value,
                item.payload.kiosk_id,
            )
        except Exception:
            self.stats.failed += 1
            logger.exception(
                "monitoring handler failed on %s of %s", item.channel.value, item.payload.kiosk_id
            )

    def _sweep(self) -> None:
        try:
            with session_scope(self._factory) as db:
                report = sweep(db, now=self._clock(), policy=self._policy)
            self.stats.sweeps += 1
            if report.marked_offline:
                logger.info("no heartbeat, marked offline: %s", ", ".join(report.marked_offline))
        except Exception:
            logger.exception("monitoring sweep failed")
