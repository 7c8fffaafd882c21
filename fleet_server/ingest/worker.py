"""The ingest worker: MQTT shared subscriptions in, batched commits, acknowledgements out.

Threads::

    paho network thread   on_message -> queue.Queue (bounded; a full queue blocks paho,
                          which stops reading the socket: back-pressure to the broker)
    batch thread          takes up to batch_size messages, or what arrived within
                          batch_latency after the first one, commits them in one
                          transaction (BatchStore), then publishes one Ack per cabinet

Acknowledgements leave only after the commit. When the commit fails because the database
is unreachable or busy, the batch is dropped unacknowledged and the cabinets send it again.
When it fails for any other reason, each message is retried alone, so one message that
the database rejects cannot hold back the others. A message that fails alone goes to the
dead-letter table. Several workers in one shared-subscription group split the cabinets'
messages between them, and the broker sends each message to one worker.
"""

import hashlib
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from fleet_server.ingest.messages import ReceivedMessage, Rejection
from fleet_server.ingest.store import BatchResult, BatchStore
from fleet_server.messaging.client import CONNECT_TIMEOUT_S, BrokerAddress, SubscriberClient
from fleet_server.models.base import utc_now
from kiosk_agent.contract import (
    MAX_LIST_ITEMS,
    Ack,
    Channel,
    ContractError,
    encode_payload,
    fleet_topic_filter,
    kiosk_topic,
    parse_kiosk_topic,
    shared_subscription,
)

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
# How long the batch thread waits for a first message before it checks for maintenance
# and for stop.
IDLE_POLL_S = 0.5
# Messages waiting for the batch thread, as a multiple of the batch size (20,000 messages
# at the default size).
QUEUE_BATCHES = 10
# QoS 1 acknowledgements that paho may have in flight at once; 0 means no limit. With a
# limit, paho 2.1 walks all its unconfirmed messages on every PUBACK, which with a batch's
# thousand Acks to a thousand cabinets cost more than committing the batch. MQTT 3.1.1
# brokers take any number of in-flight messages from a client.
MAX_INFLIGHT_ACKS = 0
INGESTED_CHANNELS = (Channel.SALES, Channel.EVENTS)
# Messages that failed alone and went to the dead letters are remembered, so that the
# cabinets' resends skip the database. Each resend would fail its whole batch again, and
# the worker would then commit that batch's messages one by one.
FAILED_MESSAGES_REMEMBERED = 10_000


@dataclass
class WorkerStats:
    """Counters of one worker, written by its batch thread only."""

    batches: int = 0
    new_sales: int = 0
    duplicate_sales: int = 0
    new_events: int = 0
    duplicate_events: int = 0
    rejected: int = 0
    acks_published: int = 0
    unacknowledged: int = 0  # messages of batches that failed on a database error

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.new_sales += result.new_sales
        self.duplicate_sales += result.duplicate_sales
        self.new_events += result.new_events
        self.duplicate_events += result.duplicate_events
        self.rejected += result.rejected


def is_transient(error: Exception) -> bool:
    """Return whether a database error means "try later" rather than "this data is bad"."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def ack_messages(sale_ids: Sequence[uuid.UUID], event_ids: Sequence[uuid.UUID]) -> list[Ack]:
    """Split acknowledgements into Acks of at most MAX_LIST_ITEMS ids per list."""
    acks = []
    for start in range(0, max(len(sale_ids), len(event_ids)), MAX_LIST_ITEMS):
        acks.append(
            Ack(
                sale_ids=list(sale_ids[start : start + MAX_LIST_ITEMS]),
                event_ids=list(event_ids[start : start + MAX_LIST_ITEMS]),
            )
        )
    return acks


class IngestWorker:
    """One ingest worker; see the module docstring. ``start`` then ``stop``, or ``run``."""

    def __init__(
        self,
        *,
        broker: BrokerAddress,
        store: BatchStore,
        group: str | None,
        batch_size: int,
        batch_latency_s: float,
        maintenance: Callable[[], None] | None = None,
        maintenance_interval_s: float = 10.0,
        client_id: str | None = None,
    ) -> None:
        self.stats = WorkerStats()
        self._store = store
        self._batch_size = batch_size
        self._batch_latency_s = batch_latency_s
        self._maintenance = maintenance
        self._maintenance_interval_s = maintenance_interval_s
        # Without a group the worker subscribes directly, so it receives every message and
        # a second worker would store and acknowledge each one again.
        topics = [
            shared_subscription(group, channel)
            if group is not None
            else fleet_topic_filter(channel)
            for channel in INGESTED_CHANNELS
        ]
        self._queue: queue.Queue[ReceivedMessage] = queue.Queue(batch_size * QUEUE_BATCHES)
        # Digests of messages that failed alone, oldest first; used by the batch thread only.
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._stopping = threading.Event()
        self._batch_thread: threading.Thread | None = None
        self._client = SubscriberClient(
            broker,
            name="ingest worker",
            client_id=client_id,
            client_id_prefix="fleet-ingest",
            subscriptions=[(topic, 1) for topic in topics],
            on_message=self._on_message,
            max_inflight_messages=MAX_INFLIGHT_ACKS,
        )
        self.broker = broker
        self.client_id = self._client.client_id

    # --- Lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect, subscribe and start the batch thread.

        Raises BrokerConnectionError (a ConnectionError) if the broker does not confirm the
        subscriptions in time.
        """
        self._batch_thread = threading.Thread(
            target=self._run_batches, name=f"{self.client_id}-batches", daemon=True
        )
        self._batch_thread.start()
        try:
            self._client.start(timeout_s)
        except ConnectionError:
            self._stop_batches(timeout_s)
            raise
        logger.info(
            "ingest worker %s ready: %s, batches of %d or %.0f ms",
            self.client_id,
            ", ".join(self._client.topic_filters),
            self._batch_size,
            self._batch_latency_s * 1000,
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Unsubscribe, commit and acknowledge what is queued, then disconnect."""
        self._client.unsubscribe()
        self._stop_batches(timeout_s)
        self._client.close()
        logger.info("ingest worker %s stopped: %s", self.client_id, self.stats)

    def _stop_batches(self, timeout_s: float) -> None:
        self._stopping.set()
        if self._batch_thread is not None:
            self._batch_thread.join(timeout_s)
            if self._batch_thread.is_alive():
                logger.error("ingest batch thread did not finish within %.0f s", timeout_s)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, e.g. by a signal handler."""
        self.start()
        try:
            while not stop.wait(1.0):
                if self._batch_thread is not None and not self._batch_thread.is_alive():
                    raise RuntimeError("the ingest batch thread died")
        finally:
            self.stop()

    # --- paho network thread --------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        # A full queue blocks paho's thread, which stops reading the socket: back-pressure.
        self._queue.put(ReceivedMessage(topic, payload, utc_now()))

    # --- Batch thread -----------------------------------------------------------------------

    def _next_batch(self) -> list[ReceivedMessage]:
        try:
            first = self._queue.get(timeout=IDLE_POLL_S)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self._batch_latency_s
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _run_batches(self) -> None:
        next_maintenance = time.monotonic()
        while True:
            batch = self._next_batch()
            if batch:
                self._process(batch)
            elif self._stopping.is_set():
                return
            if self._maintenance is not None and time.monotonic() >= next_maintenance:
                next_maintenance = time.monotonic() + self._maintenance_interval_s
                try:
                    self._maintenance()
                except Exception:
                    logger.exception(
                        "ingest maintenance failed; retrying in %.0f s",
                        self._maintenance_interval_s,
                    )

    def _process(self, batch: list[ReceivedMessage]) -> None:
        if self._failed:
            batch = self._without_failed(batch)
            if not batch:
                return
        try:
            result = self._store.commit(batch)
        except Exception as error:
            if is_transient(error):
                self.stats.unacknowledged += len(batch)
                logger.error(
                    "database unavailable: %d messages left unacknowledged for the cabinets "
                    "to send again: %s",
                    len(batch),
                    error,
                )
                return
            if len(batch) > 1:
                logger.exception(
                    "batch of %d failed; committing its messages one by one", len(batch)
                )
                for message in batch:
                    self._process([message])
                return
            self._dead_letter(batch[0], error)
            return
        self.stats.add(result)
        self._publish_acks(result)

    def _without_failed(self, batch: list[ReceivedMessage]) -> list[ReceivedMessage]:
        unseen = []
        for message in batch:
            if _digest(message) in self._failed:
                # Already in the dead letters, and left unacknowledged like the first time.
                self.stats.rejected += 1
                logger.warning(
                    "message on %s failed alone before and is in the dead letters; "
                    "skipping this copy",
                    message.topic[:256],
                )
            else:
                unseen.append(message)
        return unseen

    def _dead_letter(self, message: ReceivedMessage, error: Exception) -> None:
        logger.exception(
            "message on %s failed alone; moving it to the dead letters", message.topic[:256]
        )
        self._failed[_digest(message)] = None
        if len(self._failed) > FAILED_MESSAGES_REMEMBERED:
            self._failed.popitem(last=False)
        lines = str(error).splitlines()
        reason = f"storing the message failed: {type(error).__name__}: {lines[0] if lines else ''}"
        try:
            kiosk_id: str | None = parse_kiosk_topic(message.topic)[0]
        except ContractError:
            kiosk_id = None
        try:
            self._store.store_rejections([Rejection(message, kiosk_id, reason[:500])])
            self.stats.rejected += 1
        except Exception:
            self.stats.unacknowledged += 1
            logger.exception("cannot store the dead letter of a message on %s", message.topic[:256])

    def _publish_acks(self, result: BatchResult) -> None:
        for kiosk_id, ids in result.acks.items():
            for ack in ack_messages(ids.sale_ids, ids.event_ids):
                info = self._client.publish(
                    kiosk_topic(kiosk_id, Channel.ACKS), encode_payload(ack), qos=1
                )
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self.stats.acks_published += 1
                else:
                    # The cabinet sends the sale or event again and gets an Ack then.
                    logger.warning(
                        "ack to %s not published: %s", kiosk_id, mqtt.error_string(info.rc)
                    )


def _digest(message: ReceivedMessage) -> bytes:
    return hashlib.blake2b(
        message.topic.encode("utf-8", "surrogatepass") + b"\x00" + message.payload,
        digest_size=16,
    ).digest()
