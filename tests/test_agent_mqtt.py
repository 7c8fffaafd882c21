"""MQTT link against a real Mosquitto: outbox delivery, acks, last will, reconnects, bad input.

A paho client in the test plays the fleet server. Conditions are polled with a deadline;
no test sleeps for a fixed time and hopes.
"""

import asyncio
import logging
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_agent.contract import (
    Ack,
    Channel,
    Command,
    EventType,
    KioskEvent,
    KioskState,
    KioskStatus,
    OutboxBacklog,
    SaleOutcome,
    SaleRecord,
    SerialLinkState,
    Telemetry,
    UnlockCommand,
    UnlockMode,
    encode_payload,
    fleet_topic_filter,
    kiosk_topic,
    parse_payload,
    utc_now,
)
from kiosk_agent.mqtt_link import LinkOptions, MqttLink
from kiosk_agent.outbox import Outbox
from private_broker import PrivateBroker, run_private_broker

pytestmark = pytest.mark.mosquitto

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
WAIT_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.02
# Short reconnect and resend delays keep the tests fast.
FAST_LINK = {
    "reconnect_min_s": 0.05,
    "reconnect_max_s": 0.4,
    "resend_poll_s": 0.05,
    "keepalive_s": 10,
}


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class FakeServer:
    """A paho client in the role of the fleet server: records messages, sends acks and commands."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        topic_filters: list[str],
        client_id: str = "",
        clean_session: bool = True,
        auto_ack: bool = False,
    ) -> None:
        self.topic_filters = topic_filters
        self.auto_ack = auto_ack
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_TIMEOUT_S), "fake server did not subscribe"

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe([(topic_filter, 1) for topic_filter in self.topic_filters])

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
        if self.auto_ack and msg.topic.endswith("/sales"):
            sale = parse_payload(SaleRecord, bytes(msg.payload))
            ack = Ack(sale_ids=[sale.sale_id])
            client.publish(kiosk_topic(sale.kiosk_id, Channel.ACKS), encode_payload(ack), qos=1)

    def messages(self, channel: Channel) -> list[Received]:
        with self._lock:
            return [item for item in self.received if item.topic.endswith("/" + channel.value)]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_TIMEOUT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fetch_retained(host: str, port: int, topic: str) -> Received:
    """Subscribe with a fresh client and return the retained message on ``topic``."""
    server = FakeServer(host, port, topic_filters=[topic])
    try:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while not server.received:
            assert time.monotonic() < deadline, f"no retained message on {topic}"
            time.sleep(POLL_INTERVAL_S)
        return server.received[0]
    finally:
        server.close()


async def wait_until(condition: Callable[[], bool], description: str) -> None:
    """Poll ``condition`` on the event loop until it holds, failing after WAIT_TIMEOUT_S."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_TIMEOUT_S:.0f} s waiting for {description}")
        await asyncio.sleep(POLL_INTERVAL_S)


def new_kiosk_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def make_sale(kiosk_id: str) -> SaleRecord:
    now = utc_now()
    return SaleRecord(
        sale_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        session_id=uuid.uuid4(),
        outcome=SaleOutcome.NOTHING_TAKEN,
        opened_at=now,
        closed_at=now,
        recorded_at=now,
        planogram_version=1,
    )


def make_unlock(kiosk_id: str) -> UnlockCommand:
    now = utc_now()
    return UnlockCommand(
        command_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=10),
        nonce=uuid.uuid4().hex,
        signature="00" * 32,
        session_id=uuid.uuid4(),
        door=0,
        mode=UnlockMode.PURCHASE,
    )


def make_link(
    host: str,
    port: int,
    kiosk_id: str,
    outbox: Outbox,
    on_command: Callable[[Command], Any] = lambda command: None,
    **options: object,
) -> MqttLink:
    settings: dict[str, object] = {**FAST_LINK, **options}
    link_options = LinkOptions(
        kiosk_id=kiosk_id,
        host=host,
        port=port,
        agent_version="test",
        **settings,
    )
    return MqttLink(link_options, outbox=outbox, on_command=on_command)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3", retry_base_s=30.0) as box:
        yield box


# --- Delivery -------------------------------------------------------------------------------


def test_sale_stays_queued_until_ack(mqtt_broker: tuple[str, int], outbox: Outbox) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    server = FakeServer(host, port, topic_filters=[kiosk_topic(kiosk_id, Channel.SALES)])
    sale = make_sale(kiosk_id)

    async def scenario() -> None:
        link = make_link(host, port, kiosk_id, outbox)
        await link.start()
        try:
            assert await link.wait_connected(WAIT_TIMEOUT_S)
            outbox.record_sale(sale, in_transaction=None)
            link.notify_outbox()
            await wait_until(lambda: bool(server.messages(Channel.SALES)), "the sale to arrive")

            assert parse_payload(SaleRecord, server.messages(Channel.SALES)[0].payload) == sale
            assert outbox.backlog().sales == 1

            ack = Ack(sale_ids=[sale.sale_id])
            server.publish(kiosk_topic(kiosk_id, Channel.ACKS), encode_payload(ack))
            await wait_until(lambda: outbox.backlog().sales == 0, "the ack to delete the sale")

            assert link.stats.messages_acknowledged == 1
            assert link.stats.sales_published == 1
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()


def test_unacknowledged_sale_resent_on_backoff(
    mqtt_broker: tuple[str, int], tmp_path: Path
) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    server = FakeServer(host, port, topic_filters=[kiosk_topic(kiosk_id, Channel.SALES)])
    sale = make_sale(kiosk_id)

    async def scenario(outbox: Outbox) -> None:
        link = make_link(host, port, kiosk_id, outbox)
        await link.start()
        try:
            await wait_until(lambda: len(server.messages(Channel.SALES)) >= 3, "two resends")

            payloads = {item.payload for item in server.messages(Channel.SALES)}
            assert len(payloads) == 1
            assert parse_payload(SaleRecord, payloads.pop()).sale_id == sale.sale_id
            assert outbox.backlog().sales == 1
        finally:
            await link.stop()

    with Outbox(tmp_path / "outbox.sqlite3", retry_base_s=0.1, retry_cap_s=0.2) as outbox:
        outbox.record_sale(sale, in_transaction=None)
        try:
            asyncio.run(scenario(outbox))
        finally:
            server.close()


def test_event_delivered_and_acknowledged(mqtt_broker: tuple[str, int], outbox: Outbox) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    server = FakeServer(host, port, topic_filters=[kiosk_topic(kiosk_id, Channel.EVENTS)])
    event = KioskEvent(
        event_id=uuid.uuid4(), kiosk_id=kiosk_id, type=EventType.DOOR_FORCED, at=utc_now()
    )
    outbox.record_event(event)

    async def scenario() -> None:
        link = make_link(host, port, kiosk_id, outbox)
        await link.start()
        try:
            await wait_until(lambda: bool(server.messages(Channel.EVENTS)), "the event")
            ack = Ack(event_ids=[event.event_id])
            server.publish(kiosk_topic(kiosk_id, Channel.ACKS), encode_payload(ack))
            await wait_until(lambda: outbox.backlog().events == 0, "the ack to delete the event")
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()

    assert parse_payload(KioskEvent, server.messages(Channel.EVENTS)[0].payload) == event


def test_heartbeat_published_at_qos0(mqtt_broker: tuple[str, int], outbox: Outbox) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    server = FakeServer(host, port, topic_filters=[kiosk_topic(kiosk_id, Channel.TELEMETRY)])

    def telemetry() -> Telemetry:
        return Telemetry(
            kiosk_id=kiosk_id,
            sent_at=utc_now(),
            doors=[],
            shelves=[],
            backlog=outbox.backlog(),
            firmware_version=None,
            agent_version="test",
            serial_link=SerialLinkState.DOWN,
            session_state="idle",
            planogram_version=None,
            disk_free_bytes=1,
        )

    async def scenario() -> None:
        link = MqttLink(
            LinkOptions(
                kiosk_id=kiosk_id,
                host=host,
                port=port,
                agent_version="test",
                heartbeat_interval_s=0.1,
            ),
            outbox=outbox,
            on_command=lambda command: None,
            telemetry_source=telemetry,
        )
        await link.start()
        try:
            await wait_until(lambda: len(server.messages(Channel.TELEMETRY)) >= 3, "heartbeats")
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()

    heartbeat = parse_payload(Telemetry, server.messages(Channel.TELEMETRY)[0].payload)
    assert heartbeat.backlog == OutboxBacklog(sales=0, events=0)


# --- Status and last will -------------------------------------------------------------------


def test_status_online_then_offline_on_stop(mqtt_broker: tuple[str, int], outbox: Outbox) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    status_topic = kiosk_topic(kiosk_id, Channel.STATUS)

    async def scenario() -> None:
        link = make_link(host, port, kiosk_id, outbox)
        await link.start()
        try:
            assert await link.wait_connected(WAIT_TIMEOUT_S)
            online = await asyncio.to_thread(fetch_retained, host, port, status_topic)

            status = parse_payload(KioskStatus, online.payload)
            assert online.retain
            assert status.state is KioskState.ONLINE
            assert status.since is not None
        finally:
            await link.stop()

    asyncio.run(scenario())

    offline = fetch_retained(host, port, status_topic)
    status = parse_payload(KioskStatus, offline.payload)
    assert status.state is KioskState.OFFLINE
    assert status.since is not None


CHILD_AGENT = """
import asyncio
import sys

from kiosk_agent.mqtt_link import LinkOptions, MqttLink
from kiosk_agent.outbox import Outbox


async def main() -> None:
    host, port, kiosk_id, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    options = LinkOptions(kiosk_id=kiosk_id, host=host, port=port, agent_version="child")
    link = MqttLink(options, outbox=Outbox(path), on_command=lambda command: None)
    await link.start()
    if not await link.wait_connected(10):
        sys.exit("child agent did not connect")
    print("connected", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


def read_line(process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"child wrote no line within {timeout_s} s"
    return process.stdout.readline()


def test_last_will_offline_after_agent_killed(mqtt_broker: tuple[str, int], tmp_path: Path) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    status_topic = kiosk_topic(kiosk_id, Channel.STATUS)
    server = FakeServer(host, port, topic_filters=[status_topic])
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD_AGENT, host, str(port), kiosk_id, str(tmp_path / "o.db")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert read_line(process, WAIT_TIMEOUT_S) == b"connected\n"

        # SIGKILL closes the socket without an MQTT DISCONNECT, as a power cut would.
        process.send_signal(signal.SIGKILL)
        process.wait(WAIT_TIMEOUT_S)
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while len(server.messages(Channel.STATUS)) < 2:
            assert time.monotonic() < deadline, "no offline status after the kill"
            time.sleep(POLL_INTERVAL_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server.close()

    states = [parse_payload(KioskStatus, item.payload) for item in server.messages(Channel.STATUS)]
    assert [status.state for status in states] == [KioskState.ONLINE, KioskState.OFFLINE]
    will = fetch_retained(host, port, status_topic)
    assert will.retain
    assert parse_payload(KioskStatus, will.payload).state is KioskState.OFFLINE
    assert parse_payload(KioskStatus, will.payload).since is None


# --- Commands and malformed input -----------------------------------------------------------


def test_malformed_command_counted_and_link_survives(
    mqtt_broker: tuple[str, int], outbox: Outbox
) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    server = FakeServer(host, port, topic_filters=[kiosk_topic(kiosk_id, Channel.SALES)])
    commands: list[Command] = []
    command = make_unlock(kiosk_id)
    commands_topic = kiosk_topic(kiosk_id, Channel.COMMANDS)
    acks_topic = kiosk_topic(kiosk_id, Channel.ACKS)

    async def scenario() -> None:
        link = make_link(host, port, kiosk_id, outbox, on_command=commands.append)
        await link.start()
        try:
            assert await link.wait_connected(WAIT_TIMEOUT_S)
            for garbage in [b"\x00\xff not json", b"[]", b'{"v": 1, "type": "unlock"}']:
                server.publish(commands_topic, garbage)
            server.publish(acks_topic, b'{"v": 1, "sale_ids": ["not-a-uuid"]}')
            server.publish(commands_topic, encode_payload(command))
            await wait_until(lambda: bool(commands), "the valid command")

            assert link.stats.malformed_commands == 3
            assert link.stats.malformed_acks == 1
            assert commands == [command]

            sale = make_sale(kiosk_id)
            outbox.record_sale(sale, in_transaction=None)
            link.notify_outbox()
            await wait_until(lambda: bool(server.messages(Channel.SALES)), "a sale afterwards")
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()


def test_failing_handler_logged_and_link_survives(
    mqtt_broker: tuple[str, int], outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = mqtt_broker
    kiosk_id = new_kiosk_id()
    server = FakeServer(host, port, topic_filters=[kiosk_topic(kiosk_id, Channel.STATUS)])
    handled: list[uuid.UUID] = []
    commands_topic = kiosk_topic(kiosk_id, Channel.COMMANDS)

    async def handler(command: Command) -> None:
        handled.append(command.command_id)
        if len(handled) == 1:
            raise RuntimeError("handler bug in async handler")

    async def scenario() -> None:
        link = make_link(host, port, kiosk_id, outbox, on_command=handler)
        await link.start()
        try:
            assert await link.wait_connected(WAIT_TIMEOUT_S)
            server.publish(commands_topic, encode_payload(make_unlock(kiosk_id)))
            server.publish(commands_topic, encode_payload(make_unlock(kiosk_id)))
            await wait_until(lambda: len(handled) == 2, "both commands")
            await wait_until(lambda: link.stats.handler_errors == 1, "the handler error")
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()

    failures = [record for record in caplog.records if record.message == "command handler failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "handler bug" in str(failures[0].exc_info[1])


# --- Broker restart -------------------------------------------------------------------------


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    with run_private_broker() as broker:
        yield broker


def test_backlog_delivered_once_after_broker_restart(
    private_broker: PrivateBroker, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kiosk_agent.mqtt_link")
    kiosk_id = new_kiosk_id()
    port = private_broker.port
    server = FakeServer(
        LOOPBACK,
        port,
        topic_filters=[fleet_topic_filter(Channel.SALES)],
        client_id=f"server-{kiosk_id}",
        clean_session=False,
        auto_ack=True,
    )
    backlog = [make_sale(kiosk_id) for _ in range(5)]

    def failed_reconnects() -> int:
        return sum("MQTT reconnect to" in record.message for record in caplog.records)

    async def scenario() -> None:
        link = make_link(LOOPBACK, port, kiosk_id, outbox)
        await link.start()
        try:
            assert await link.wait_connected(WAIT_TIMEOUT_S)

            await asyncio.to_thread(private_broker.stop)
            await wait_until(lambda: not link.connected, "the link to notice the outage")
            await wait_until(lambda: failed_reconnects() >= 3, "three failed reconnects")
            for sale in backlog:
                outbox.record_sale(sale, in_transaction=None)
            link.notify_outbox()
            await asyncio.to_thread(private_broker.start)

            await wait_until(lambda: link.stats.connects == 2, "the link to reconnect")
            await wait_until(lambda: outbox.backlog().sales == 0, "acks for the whole backlog")
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()

    received = [parse_payload(SaleRecord, item.payload).sale_id for item in server.received]
    assert sorted(received) == sorted(sale.sale_id for sale in backlog)
    outage_warnings = [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and "is down" in record.message
    ]
    assert len(outage_warnings) == 1


def test_unacked_sale_resent_at_once_after_reconnect(
    private_broker: PrivateBroker, outbox: Outbox
) -> None:
    kiosk_id = new_kiosk_id()
    port = private_broker.port
    server = FakeServer(
        LOOPBACK,
        port,
        topic_filters=[kiosk_topic(kiosk_id, Channel.SALES)],
        client_id=f"server-{kiosk_id}",
        clean_session=False,
    )
    sale = make_sale(kiosk_id)
    outbox.record_sale(sale, in_transaction=None)

    async def scenario() -> None:
        # The outbox's next retry is 15 to 30 s away, so a copy within the wait below can
        # only come from the resend after the reconnect.
        link = make_link(LOOPBACK, port, kiosk_id, outbox)
        await link.start()
        try:
            await wait_until(lambda: len(server.messages(Channel.SALES)) == 1, "the first copy")

            await asyncio.to_thread(private_broker.stop)
            await wait_until(lambda: not link.connected, "the link to notice the outage")
            await asyncio.to_thread(private_broker.start)

            await wait_until(lambda: len(server.messages(Channel.SALES)) == 2, "the resend")
            assert outbox.backlog().sales == 1
        finally:
            await link.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()

    copies = {item.payload for item in server.messages(Channel.SALES)}
    assert [parse_payload(SaleRecord, payload).sale_id for payload in copies] == [sale.sale_id]


def test_rejected_credentials_logged_once_and_retried(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kiosk_agent.mqtt_link")
    kiosk_id = new_kiosk_id()

    def failures() -> int:
        return sum("MQTT reconnect to" in record.message for record in caplog.records)

    async def scenario(port: int) -> None:
        link = make_link(
            LOOPBACK, port, kiosk_id, outbox, username=kiosk_id, password="wrong-password-123"
        )
        await link.start()
        try:
            await wait_until(lambda: failures() >= 3, "three rejected attempts")

            assert not link.connected
            assert not await link.wait_connected(0.05)
        finally:
            await link.stop()

    # Mosquitto without a password file and without anonymous access rejects every client.
    with run_private_broker(allow_anonymous=False) as broker:
        asyncio.run(scenario(broker.port))

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "broker rejected the connection" in warnings[0].message
    assert "wrong-password-123" not in caplog.text
