"""Ingest workers on a real broker: acknowledgements, outages, and two processes with a crash.

The simulated cabinets here behave like the agent's outbox: they keep every sale until an
Ack names it and send the unacknowledged ones again, so a killed worker costs delay only.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from alembic import command
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from fleet_server import cli
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import create_session_factory, session_scope
from fleet_server.core.migrate import alembic_config, head_revision
from fleet_server.ingest.messages import ReceivedMessage
from fleet_server.ingest.runner import build_ingest_worker
from fleet_server.ingest.store import BatchResult, BatchStore
from fleet_server.ingest.worker import IngestWorker
from fleet_server.models import (
    Cabinet,
    DeadLetter,
    HoldStatus,
    KioskEventRecord,
    PaymentHold,
    PurchaseSession,
    PurchaseState,
    Role,
    Sale,
    TransactionKind,
    WalletTransaction,
)
from fleet_server.models.base import utc_now
from fleet_server.services.campus_wallet import CampusWalletProvider, account_for_user
from kiosk_agent.contract import (
    Ack,
    Channel,
    EventType,
    SaleRecord,
    encode_payload,
    kiosk_topic,
    parse_payload,
)
from purchase_helpers import Shop, ShopProduct, fund_wallet, kiosk_event, sale_record
from server_helpers import add_user

pytest_plugins = ["server_fixtures", "purchase_fixtures"]

WAIT_S = 30.0
RESEND_INTERVAL_S = 1.0
RESEND_DEADLINE_S = 60.0


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Return True as soon as ``condition`` holds, or False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    assert wait_for(condition, timeout_s), f"timed out after {timeout_s:.0f} s waiting for {what}"


@dataclass
class SimulatedCabinet:
    """A cabinet's MQTT side: publishes sales and events, keeps them until acknowledged."""

    kiosk_id: str
    broker: tuple[str, int]
    pending: dict[uuid.UUID, bytes] = field(default_factory=dict)
    acked: Counter[uuid.UUID] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{self.kiosk_id}")
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_ack
        self.client.max_inflight_messages_set(1000)

    def __enter__(self) -> "SimulatedCabinet":
        self.client.connect(*self.broker)
        self.client.loop_start()
        self.client.subscribe(kiosk_topic(self.kiosk_id, Channel.ACKS), qos=1)
        assert self.subscribed.wait(WAIT_S)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_ack(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        ack = parse_payload(Ack, message.payload)
        with self.lock:
            for item_id in [*ack.sale_ids, *ack.event_ids]:
                self.acked[item_id] += 1
                self.pending.pop(item_id, None)

    def send(self, item_id: uuid.UUID, channel: Channel, payload: bytes) -> None:
        with self.lock:
            self.pending[item_id] = payload
        self.client.publish(kiosk_topic(self.kiosk_id, channel), payload, qos=1)

    def send_raw(self, channel: Channel, payload: bytes) -> None:
        self.client.publish(kiosk_topic(self.kiosk_id, channel), payload, qos=1)

    def resend_pending(self) -> None:
        with self.lock:
            pending = list(self.pending.values())
        for payload in pending:
            self.client.publish(kiosk_topic(self.kiosk_id, Channel.SALES), payload, qos=1)

    def all_acked(self) -> bool:
        with self.lock:
            return not self.pending


@pytest.fixture
def broker_settings(
    purchase_settings: ServerSettings, mqtt_broker: tuple[str, int]
) -> ServerSettings:
    return purchase_settings.model_copy(
        update={
            "mqtt_host": mqtt_broker[0],
            "mqtt_port": mqtt_broker[1],
            "ingest_group": f"test-{uuid.uuid4().hex[:12]}",
            "ingest_batch_size": 50,
            "ingest_batch_latency_ms": 20,
        }
    )


@pytest.fixture
def worker(
    broker_settings: ServerSettings, seeded: sessionmaker[Session]
) -> Iterator[IngestWorker]:
    ingest = build_ingest_worker(broker_settings, seeded)
    ingest.start()
    yield ingest
    ingest.stop()


# --- One worker in this process ----------------------------------------------------------------


@pytest.mark.mosquitto
def test_worker_stores_and_acknowledges(
    worker: IngestWorker,
    shop: Shop,
    seeded: sessionmaker[Session],
    mqtt_broker: tuple[str, int],
) -> None:
    record = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 2, 350, 0)])
    event = kiosk_event(shop.kiosk_id, EventType.DOOR_LEFT_OPEN, detail={"door": 0})

    with SimulatedCabinet(shop.kiosk_id, mqtt_broker) as cabinet:
        cabinet.send_raw(Channel.SALES, b"not json at all")
        cabinet.send(record.sale_id, Channel.SALES, encode_payload(record))
        cabinet.send(event.event_id, Channel.EVENTS, encode_payload(event))
        wait_until(cabinet.all_acked, WAIT_S, "the first acknowledgements")
        cabinet.send(record.sale_id, Channel.SALES, encode_payload(record))
        wait_until(lambda: cabinet.acked[record.sale_id] == 2, WAIT_S, "the duplicate's ack")

    assert cabinet.acked[event.event_id] == 1
    assert worker.stats.new_sales == 1
    assert worker.stats.duplicate_sales == 1
    assert worker.stats.rejected == 1
    with seeded() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Sale)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(KioskEventRecord)) == 1
        letter = session.scalars(sa.select(DeadLetter)).one()
        assert letter.kiosk_id == shop.kiosk_id
        assert letter.payload_excerpt == "not json at all"


@pytest.mark.mosquitto
def test_database_outage_leaves_unacknowledged(
    broker_settings: ServerSettings, tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    """A batch that cannot be committed gets no Ack, and the worker keeps running."""
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'zhigui.db'}")
    ingest = build_ingest_worker(broker_settings, create_session_factory(broken))
    record = sale_record("AH-10357-0001", uuid.uuid4())
    ingest.start()
    try:
        with SimulatedCabinet("AH-10357-0001", mqtt_broker) as cabinet:
            cabinet.send(record.sale_id, Channel.SALES, encode_payload(record))
            wait_until(lambda: ingest.stats.unacknowledged == 1, WAIT_S, "the failed batch")
            cabinet.send(record.sale_id, Channel.SALES, encode_payload(record))
            wait_until(lambda: ingest.stats.unacknowledged == 2, WAIT_S, "the resent batch")
    finally:
        ingest.stop()
        broken.dispose()

    assert ingest.stats.acks_published == 0
    assert cabinet.acked == Counter()


class PoisonedStore(BatchStore):
    """A store whose commit raises whenever a batch contains the poisoned payload."""

    def __init__(self, session_factory: sessionmaker[Session], poison: bytes) -> None:
        super().__init__(session_factory)
        self.poison = poison
        self.poisoned_commits = 0

    def commit(self, batch: Sequence[ReceivedMessage]) -> BatchResult:
        if any(message.payload == self.poison for message in batch):
            self.poisoned_commits += 1
            raise ValueError("poisoned payload\nsecond line of detail")
        return super().commit(batch)


@pytest.mark.mosquitto
def test_failed_message_skipped_when_resent(
    broker_settings: ServerSettings,
    shop: Shop,
    seeded: sessionmaker[Session],
    mqtt_broker: tuple[str, int],
) -> None:
    """A resent copy of a message that failed alone is not committed again."""
    poison = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    first = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    second = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 2, 350, 0)])
    store = PoisonedStore(seeded, encode_payload(poison))
    ingest = IngestWorker(
        broker=build_ingest_worker(broker_settings, seeded).broker,
        store=store,
        group=broker_settings.ingest_group,
        batch_size=50,
        batch_latency_s=0.05,
    )
    ingest.start()
    try:
        with SimulatedCabinet(shop.kiosk_id, mqtt_broker) as cabinet:
            cabinet.send(poison.sale_id, Channel.SALES, encode_payload(poison))
            cabinet.send(first.sale_id, Channel.SALES, encode_payload(first))
            wait_until(lambda: ingest.stats.rejected == 1, WAIT_S, "the dead letter")
            wait_until(lambda: cabinet.acked[first.sale_id] == 1, WAIT_S, "the first Ack")
            attempts = store.poisoned_commits

            cabinet.send(poison.sale_id, Channel.SALES, encode_payload(poison))
            cabinet.send(second.sale_id, Channel.SALES, encode_payload(second))
            wait_until(lambda: cabinet.acked[second.sale_id] == 1, WAIT_S, "the second Ack")
            wait_until(lambda: ingest.stats.rejected == 2, WAIT_S, "the skipped copy")
    finally:
        ingest.stop()

    assert store.poisoned_commits == attempts
    assert cabinet.acked[poison.sale_id] == 0
    with seeded() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Sale)) == 2
        letter = session.scalars(sa.select(DeadLetter)).one()
    assert letter.kiosk_id == shop.kiosk_id
    assert letter.reason == "storing the message failed: ValueError: poisoned payload"


@pytest.mark.mosquitto
def test_serve_starts_broker_clients(
    broker_settings: ServerSettings, engine: sa.Engine, purchase_settings: ServerSettings
) -> None:
    without = cli._start_broker_clients(purchase_settings, engine)
    publisher, ingest, monitor = cli._start_broker_clients(broker_settings, engine)
    assert publisher is not None
    assert ingest is not None
    assert monitor is not None
    try:
        assert ingest.stats.batches == 0
    finally:
        monitor.stop()
        ingest.stop()
        publisher.stop()

    assert without == (None, None, None)


def test_ingest_command_needs_schema(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ZHIGUI_MODE", "ZHIGUI_SECRET_KEY", "ZHIGUI_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", database_url)

    status = cli.main(["ingest"])
    empty_error = capsys.readouterr().err
    command.upgrade(alembic_config(database_url), "0003")
    partial_status = cli.main(["ingest"])
    partial_error = capsys.readouterr().err

    assert status == 1
    assert f"has no schema, but this version needs revision {head_revision()}" in empty_error
    assert partial_status == 1
    assert f"has revision 0003, but this version needs revision {head_revision()}" in (
        partial_error
    )


def test_worker_module_needs_database(tmp_path: Path) -> None:
    """`python -m fleet_server.ingest` exits at once, in one line, when the database is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = {
        **os.environ,
        "ZHIGUI_DATABASE_URL": f"postgresql+psycopg://zhigui@127.0.0.1:{closed_port}/none",
        "ZHIGUI_MQTT_HOST": "127.0.0.1",
        "ZHIGUI_MQTT_PORT": str(closed_port),
    }
    for name in ("ZHIGUI_MODE", "ZHIGUI_SECRET_KEY", "ZHIGUI_SETTINGS_FILE"):
        env.pop(name, None)

    finished = subprocess.run(
        [sys.executable, "-m", "fleet_server.ingest"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode == 1
    errors = [line for line in finished.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, finished.stderr
    assert "cannot connect to the database" in errors[0]
    assert "check ZHIGUI_DATABASE_URL" in errors[0]
    assert "Traceback" not in finished.stderr


# --- Two worker processes, one killed ----------------------------------------------------------

CABINETS = 4
SALES_PER_CABINET = 150
# Every third sale settles a purchase session with a payment hold.
PAID_EVERY = 3
HOLD_FEN = 2_000
# Worker 1 is killed once this many sales are stored, while the cabinets still publish.
KILL_AFTER_STORED = 150
PUBLISH_PACE_S = 0.005


def stored_sales(seeded: sessionmaker[Session]) -> int:
    with seeded() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Sale)) or 0


def start_worker_process(
    settings: ServerSettings, database_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ZHIGUI_DATABASE_URL": database_url,
        "ZHIGUI_MQTT_HOST": settings.mqtt_host,
        "ZHIGUI_MQTT_PORT": str(settings.mqtt_port),
        "ZHIGUI_INGEST_GROUP": settings.ingest_group,
        "ZHIGUI_INGEST_BATCH_SIZE": "50",
        "ZHIGUI_INGEST_BATCH_LATENCY_MS": "20",
    }
    env.pop("ZHIGUI_SETTINGS_FILE", None)
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "fleet_server.ingest"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_for_log(process: subprocess.Popen[bytes], log: Path, text: str) -> None:
    def logged() -> bool:
        assert process.poll() is None, f"worker exited early:\n{log.read_text()}"
        return text in log.read_text()

    wait_until(logged, WAIT_S, f"{text!r} in {log}")


def add_cabinets(seeded: sessionmaker[Session], shop: Shop) -> list[str]:
    kiosk_ids = [shop.kiosk_id, shop.other_kiosk_id]
    with session_scope(seeded) as session:
        template = session.scalars(
            sa.select(Cabinet).where(Cabinet.kiosk_id == shop.kiosk_id)
        ).one()
        for number in range(2, CABINETS):
            kiosk_id = f"AH-10357-{number:04d}"
            session.add(
                Cabinet(
                    kiosk_id=kiosk_id,
                    placement_id=template.placement_id,
                    operator_id=template.operator_id,
                )
            )
            kiosk_ids.append(kiosk_id)
    return kiosk_ids


def open_expired_sessions(
    seeded: sessionmaker[Session], shop: Shop, kiosk_ids: list[str], count: int
) -> dict[str, list[tuple[uuid.UUID, int]]]:
    """Create ``count`` expired purchase sessions with holds; return (session, student) per cabinet.

    Expired sessions keep their holds and do not block their cabinet, so one cabinet can
    have many of them waiting for their sales at once.
    """
    sessions: dict[str, list[tuple[uuid.UUID, int]]] = {kiosk_id: [] for kiosk_id in kiosk_ids}
    with session_scope(seeded) as session:
        cabinets = {
            row.kiosk_id: row.id for row in session.execute(sa.select(Cabinet.kiosk_id, Cabinet.id))
        }
        students = []
        for index in range(10):
            student = add_user(
                session, f"student-{index}", Role.STUDENT, school_id=shop.world.a.school_id
            )
            fund_wallet(session, student.id, 100_000)
            students.append(student.id)
        session.flush()
        provider = CampusWalletProvider(session)
        for index in range(count):
            kiosk_id = kiosk_ids[index % len(kiosk_ids)]
            student_id = students[index % len(students)]
            purchase_id = uuid.uuid4()
            hold_id = provider.hold(
                account_for_user(student_id), HOLD_FEN, f"purchase:{purchase_id}"
            )
            session.add(
                PurchaseSession(
                    id=purchase_id,
                    user_id=student_id,
                    cabinet_id=cabinets[kiosk_id],
                    door=0,
                    state=PurchaseState.EXPIRED,
                    hold_id=hold_id,
                    hold_amount_fen=HOLD_FEN,
                    deadline_at=utc_now() - timedelta(seconds=1),
                )
            )
            sessions[kiosk_id].append((purchase_id, student_id))
    return sessions


@pytest.mark.mosquitto
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_killed_worker_loses_no_sale(
    broker_settings: ServerSettings,
    database_url: str,
    shop: Shop,
    seeded: sessionmaker[Session],
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
) -> None:
    kiosk_ids = add_cabinets(seeded, shop)
    paid_count = CABINETS * SALES_PER_CABINET // PAID_EVERY
    sessions = open_expired_sessions(seeded, shop, kiosk_ids, paid_count)
    product: ShopProduct = shop.products[0]
    sales: dict[str, list[SaleRecord]] = {}
    for kiosk_id in kiosk_ids:
        paid = iter(sessions[kiosk_id])
        sales[kiosk_id] = [
            sale_record(
                kiosk_id,
                next(paid)[0] if number % PAID_EVERY == 0 else uuid.uuid4(),
                [(product, 1 + number % 3, 350, number % 4)],
            )
            for number in range(SALES_PER_CABINET)
        ]
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_worker_process(broker_settings, database_url, log) for log in logs]
    try:
        for process, log in zip(workers, logs, strict=True):
            wait_for_log(process, log, "ready")
        with contextlib.ExitStack() as stack:
            cabinets = [
                stack.enter_context(SimulatedCabinet(kiosk_id, mqtt_broker))
                for kiosk_id in kiosk_ids
            ]

            def publish_all() -> None:
                for number in range(SALES_PER_CABINET):
                    for cabinet in cabinets:
                        record = sales[cabinet.kiosk_id][number]
                        payload = encode_payload(record)
                        cabinet.send(record.sale_id, Channel.SALES, payload)
                        if number % 10 == 0:  # the agent resends before an Ack arrives
                            cabinet.send(record.sale_id, Channel.SALES, payload)
                    # Load shape, not synchronisation: cabinets sell over time.
                    time.sleep(PUBLISH_PACE_S)

            publisher = threading.Thread(target=publish_all)
            publisher.start()
            wait_until(
                lambda: stored_sales(seeded) >= KILL_AFTER_STORED, WAIT_S, "sales to be stored"
            )
            assert workers[0].poll() is None, "worker 1 must be alive until killed"
            os.kill(workers[0].pid, signal.SIGKILL)
            publisher.join(WAIT_S)
            assert stored_sales(seeded) < len(kiosk_ids) * SALES_PER_CABINET, "killed mid-stream"

            def everything_acked() -> bool:
                return all(cabinet.all_acked() for cabinet in cabinets)

            deadline = time.monotonic() + RESEND_DEADLINE_S
            # Like the agent's outbox: send what is unacknowledged again until it is.
            while not wait_for(everything_acked, RESEND_INTERVAL_S):
                assert time.monotonic() < deadline, "sales still unacknowledged"
                for cabinet in cabinets:
                    cabinet.resend_pending()
            acked = {cabinet.kiosk_id: dict(cabinet.acked) for cabinet in cabinets}
        assert workers[1].poll() is None, f"worker 2 died:\n{logs[1].read_text()}"
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(WAIT_S) == 0
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert workers[0].returncode == -signal.SIGKILL
    for kiosk_id in kiosk_ids:
        assert all(acked[kiosk_id].get(record.sale_id, 0) >= 1 for record in sales[kiosk_id])
    expected = {
        (record.kiosk_id, record.sale_id): record for batch in sales.values() for record in batch
    }
    with seeded() as session:
        stored = session.execute(
            sa.select(
                Sale.kiosk_id,
                Sale.sale_id,
                Sale.total_fen,
                Sale.captured_fen,
                Sale.purchase_session_id,
            )
        ).all()
        assert len(stored) == len(expected) == CABINETS * SALES_PER_CABINET
        assert {(row.kiosk_id, row.sale_id) for row in stored} == set(expected)
        for row in stored:
            record = expected[(row.kiosk_id, row.sale_id)]
            assert row.total_fen == record.total_fen
            if row.purchase_session_id is None:
                assert row.captured_fen == 0
            else:
                assert row.purchase_session_id == record.session_id
                assert row.captured_fen == record.total_fen
        captures = session.scalars(
            sa.select(WalletTransaction).where(WalletTransaction.kind == TransactionKind.CAPTURE)
        ).all()
        assert len(captures) == paid_count
        paid_ids = {purchase for pairs in sessions.values() for purchase, _ in pairs}
        expected_captured = sum(
            record.total_fen for record in expected.values() if record.session_id in paid_ids
        )
        assert sum(capture.amount_fen for capture in captures) == expected_captured
        holds = session.scalars(sa.select(PaymentHold)).all()
        assert {hold.status for hold in holds} == {HoldStatus.CAPTURED}
        completed = session.scalar(
            sa.select(sa.func.count())
            .select_from(PurchaseSession)
            .where(PurchaseSession.state == PurchaseState.COMPLETED)
        )
        assert completed == paid_count
