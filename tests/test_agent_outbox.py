"""Durable outbox: same-transaction writes, retry backoff, acknowledgement, crashes, full disk."""

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk_agent.contract import (
    EventType,
    KioskEvent,
    SaleOutcome,
    SaleRecord,
    parse_payload,
)
from kiosk_agent.outbox import (
    DuplicateMessageError,
    MessageKind,
    Outbox,
    OutboxError,
    OutboxFullError,
    backoff_delay_s,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 5, 6, 8, 30, tzinfo=UTC)
CHILD_TIMEOUT_S = 30.0
COMMITS_BEFORE_KILL = 40


class MaxJitter(random.Random):
    """A random source whose uniform() returns the upper bound, making backoff deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3", rng=MaxJitter(), clock=lambda: NOW) as box:
        yield box


def make_sale(**changes: object) -> SaleRecord:
    fields: dict[str, object] = {
        "sale_id": uuid.uuid4(),
        "kiosk_id": "hfut-dorm3-01",
        "session_id": uuid.uuid4(),
        "outcome": SaleOutcome.NOTHING_TAKEN,
        "opened_at": NOW,
        "closed_at": NOW + timedelta(seconds=5),
        "recorded_at": NOW + timedelta(seconds=8),
        "planogram_version": 1,
    }
    fields.update(changes)
    return SaleRecord.model_validate(fields)


def make_event() -> KioskEvent:
    return KioskEvent(
        event_id=uuid.uuid4(), kiosk_id="hfut-dorm3-01", type=EventType.DOOR_FORCED, at=NOW
    )


# --- Transactions ---------------------------------------------------------------------------


def test_sale_and_session_state_commit_together(outbox: Outbox) -> None:
    sale = make_sale()

    with outbox.transaction() as tx:
        tx.put_state("session", '{"state": "recorded"}')
        outbox.record_sale(sale, in_transaction=tx)

    assert outbox.get_state("session") == '{"state": "recorded"}'
    assert [message.message_id for message in outbox.due(NOW, 10)] == [sale.sale_id]


def test_failed_transaction_keeps_neither(outbox: Outbox) -> None:
    with outbox.transaction() as tx:
        tx.put_state("session", "door_open")

    def end_session_then_fail() -> None:
        with outbox.transaction() as tx:
            tx.put_state("session", "recorded")
            outbox.record_sale(make_sale(), in_transaction=tx)
            raise RuntimeError("decoding failed")

    with pytest.raises(RuntimeError, match="decoding failed"):
        end_session_then_fail()

    assert outbox.get_state("session") == "door_open"
    assert outbox.backlog().sales == 0


def test_state_get_put_delete_in_transaction(outbox: Outbox) -> None:
    with outbox.transaction() as tx:
        assert tx.get_state("session") is None
        tx.put_state("session", "one")
        tx.put_state("session", "two")
        assert tx.get_state("session") == "two"

    with outbox.transaction() as tx:
        tx.delete_state("session")

    assert outbox.get_state("session") is None


def test_transaction_of_other_outbox_rejected(outbox: Outbox, tmp_path: Path) -> None:
    with (
        Outbox(tmp_path / "other.sqlite3") as other,
        other.transaction() as foreign,
        pytest.raises(OutboxError, match="not the open transaction"),
    ):
        outbox.record_sale(make_sale(), in_transaction=foreign)


def test_nested_transaction_rejected(outbox: Outbox) -> None:
    with outbox.transaction(), pytest.raises(OutboxError, match="do not nest"):
        outbox.record_event(make_event())


def test_closed_transaction_rejected(outbox: Outbox) -> None:
    with outbox.transaction() as tx:
        pass

    with pytest.raises(OutboxError, match="already closed"):
        tx.record_sale(make_sale())


def test_duplicate_sale_rejected(outbox: Outbox) -> None:
    sale = make_sale()
    outbox.record_sale(sale, in_transaction=None)

    with pytest.raises(DuplicateMessageError, match=str(sale.sale_id)):
        outbox.record_sale(sale, in_transaction=None)

    assert outbox.backlog().sales == 1


def test_wal_and_full_sync_enabled(outbox: Outbox) -> None:
    with outbox.transaction() as tx:
        synchronous = tx.connection.execute("PRAGMA synchronous").fetchone()[0]
    journal_mode = sqlite3.connect(outbox.path).execute("PRAGMA journal_mode").fetchone()[0]

    assert synchronous == 2  # FULL
    assert journal_mode == "wal"


# --- Delivery schedule ----------------------------------------------------------------------


def test_new_messages_due_at_once(outbox: Outbox) -> None:
    sale = make_sale()
    event = make_event()
    outbox.record_sale(sale, in_transaction=None)
    outbox.record_event(event)

    due = outbox.due(NOW, 10)

    assert {(message.kind, message.message_id) for message in due} == {
        (MessageKind.SALE, sale.sale_id),
        (MessageKind.EVENT, event.event_id),
    }
    sale_message = next(message for message in due if message.kind is MessageKind.SALE)
    assert parse_payload(SaleRecord, sale_message.payload) == sale
    assert sale_message.attempts == 0


def test_due_respects_limit(outbox: Outbox) -> None:
    for _ in range(5):
        outbox.record_sale(make_sale(), in_transaction=None)

    assert len(outbox.due(NOW, 3)) == 3


def test_retry_schedule_doubles_to_cap(outbox: Outbox) -> None:
    sale = make_sale()
    outbox.record_sale(sale, in_transaction=None)
    now = NOW
    delays = []

    for _ in range(11):
        next_attempt_at = outbox.mark_sent(sale.sale_id, now)
        assert next_attempt_at is not None
        delays.append((next_attempt_at - now).total_seconds())
        assert outbox.due(next_attempt_at - timedelta(milliseconds=1), 10) == []
        assert len(outbox.due(next_attempt_at, 10)) == 1
        now = next_attempt_at

    assert delays == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert outbox.due(now, 10)[0].attempts == 11


@pytest.mark.parametrize(
    ("attempt", "ceiling_s"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0), (10_000, 300.0)],
)
def test_backoff_delay_within_jitter_bounds(attempt: int, ceiling_s: float) -> None:
    rng = random.Random(attempt)

    delays = [backoff_delay_s(attempt, base_s=2.0, cap_s=300.0, rng=rng) for _ in range(200)]

    assert min(delays) >= ceiling_s / 2
    assert max(delays) <= ceiling_s
    assert max(delays) - min(delays) > ceiling_s / 10


def test_never_evicted_by_attempts(outbox: Outbox) -> None:
    sale = make_sale()
    outbox.record_sale(sale, in_transaction=None)

    for _ in range(200):
        outbox.mark_sent(sale.sale_id, NOW)

    assert outbox.backlog().sales == 1


def test_reschedule_all_makes_everything_due(outbox: Outbox) -> None:
    sales = [make_sale() for _ in range(3)]
    for sale in sales:
        outbox.record_sale(sale, in_transaction=None)
    outbox.mark_sent_many([sale.sale_id for sale in sales], NOW)
    assert outbox.due(NOW, 10) == []

    changed = outbox.reschedule_all(NOW)

    assert changed == 3
    due = outbox.due(NOW, 10)
    assert {message.message_id for message in due} == {sale.sale_id for sale in sales}
    assert all(message.attempts == 1 for message in due)


def test_mark_sent_after_ack_returns_none(outbox: Outbox) -> None:
    sale = make_sale()
    outbox.record_sale(sale, in_transaction=None)
    outbox.acknowledge([sale.sale_id])

    assert outbox.mark_sent(sale.sale_id, NOW) is None


# --- Acknowledgement and backlog ------------------------------------------------------------


def test_acknowledge_deletes_sales_and_events(outbox: Outbox) -> None:
    unacknowledged = make_sale()
    acked_sale = make_sale()
    acked_event = make_event()
    outbox.record_sale(unacknowledged, in_transaction=None)
    outbox.record_sale(acked_sale, in_transaction=None)
    outbox.record_event(acked_event)

    deleted = outbox.acknowledge([acked_sale.sale_id, acked_event.event_id, uuid.uuid4()])

    assert deleted == 2
    assert [message.message_id for message in outbox.due(NOW, 10)] == [unacknowledged.sale_id]


def test_repeated_acknowledge_ignored(outbox: Outbox) -> None:
    sale = make_sale()
    outbox.record_sale(sale, in_transaction=None)
    outbox.acknowledge([sale.sale_id])

    assert outbox.acknowledge([sale.sale_id]) == 0
    assert outbox.acknowledge([]) == 0


def test_backlog_counts_and_oldest(tmp_path: Path) -> None:
    times = iter([NOW, NOW + timedelta(seconds=5), NOW + timedelta(seconds=9)])
    with Outbox(tmp_path / "outbox.sqlite3", clock=lambda: next(times)) as outbox:
        outbox.record_sale(make_sale(), in_transaction=None)
        outbox.record_sale(make_sale(), in_transaction=None)
        outbox.record_event(make_event())

        backlog = outbox.backlog()

    assert backlog.sales == 2
    assert backlog.events == 1
    assert backlog.oldest_created_at == NOW


def test_messages_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    sale = make_sale()
    with Outbox(path) as outbox:
        outbox.record_sale(sale, in_transaction=None)

    with Outbox(path) as reopened:
        due = reopened.due(datetime.now(UTC), 10)

    assert [message.message_id for message in due] == [sale.sale_id]


# --- Full disk ------------------------------------------------------------------------------


def write_until_full(outbox: Outbox) -> tuple[int, OutboxFullError | None]:
    """Commit sales with a state counter until the outbox is full; return the commit count."""
    committed = 0
    for _ in range(10_000):
        try:
            with outbox.transaction() as tx:
                tx.put_state("sales", str(committed + 1))
                outbox.record_sale(make_sale(), in_transaction=tx)
        except OutboxFullError as exc:
            return committed, exc
        committed += 1
    return committed, None


def test_full_database_raises_outbox_full(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", max_page_count=16) as outbox:
        committed, error = write_until_full(outbox)

        assert error is not None
        assert "is full" in str(error)
        assert isinstance(error.__cause__, sqlite3.OperationalError)
        assert committed > 0
        assert outbox.backlog().sales == committed
        assert outbox.get_state("sales") == str(committed)


def test_full_database_accepts_writes_after_ack(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", max_page_count=16) as outbox:
        write_until_full(outbox)
        queued = outbox.due(datetime.now(UTC) + timedelta(days=1), 10_000)

        outbox.acknowledge(message.message_id for message in queued)
        outbox.record_sale(make_sale(), in_transaction=None)

        assert outbox.backlog().sales == 1


def test_has_space_compares_free_bytes(outbox: Outbox) -> None:
    assert outbox.has_space(0)
    assert not outbox.has_space(2**62)


# --- Crash safety ---------------------------------------------------------------------------

CHILD_WRITER = """
import sys
import uuid
from datetime import UTC, datetime

from kiosk_agent.contract import SaleOutcome, SaleRecord
from kiosk_agent.outbox import Outbox

outbox = Outbox(sys.argv[1])
count = 0
while True:
    now = datetime.now(UTC)
    sale = SaleRecord(
        sale_id=uuid.uuid4(),
        kiosk_id="crash-test",
        session_id=uuid.uuid4(),
        outcome=SaleOutcome.NOTHING_TAKEN,
        recorded_at=now,
        planogram_version=1,
    )
    with outbox.transaction() as tx:
        count += 1
        tx.put_state("sales_written", str(count))
        outbox.record_sale(sale, in_transaction=tx)
    # Printed only after COMMIT returned: the parent treats a printed id as committed.
    print(sale.sale_id, flush=True)
"""


def read_committed_ids(process: subprocess.Popen[bytes], count: int) -> list[str]:
    """Read sale ids from the child's stdout until ``count`` arrived, within a time limit."""
    assert process.stdout is not None
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while len(lines) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"child reported only {len(lines)} commits in {CHILD_TIMEOUT_S} s"
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(process.stdout.fileno(), 65536)
        assert chunk, f"child exited with status {process.wait()} after {len(lines)} commits"
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        lines.extend(line.decode() for line in complete)
    return lines


def test_sigkill_during_writes_loses_no_committed_sale(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD_WRITER, str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        reported = read_committed_ids(process, COMMITS_BEFORE_KILL)
        process.send_signal(signal.SIGKILL)
        rest, _ = process.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Lines still in the pipe were committed too; a line cut off by the kill is skipped.
    reported += [line for line in rest.decode().split("\n") if len(line) == 36]

    with Outbox(path) as outbox:
        integrity = outbox._connection.execute("PRAGMA integrity_check").fetchone()[0]
        stored = outbox.due(datetime.now(UTC) + timedelta(days=1), 1_000_000)
        written = outbox.get_state("sales_written")

    assert process.returncode == -signal.SIGKILL
    assert integrity == "ok"
    stored_ids = {str(message.message_id) for message in stored}
    assert set(reported) <= stored_ids
    assert written is not None
    assert len(stored) == int(written)
    for message in stored:
        assert parse_payload(SaleRecord, message.payload).kiosk_id == "crash-test"
