"""Durable outbox of sales and events, kept in SQLite until the server acknowledges them.

A sale is written to the outbox in the same SQLite transaction that ends its purchase
session, so after a crash the cabinet has either both (the session ended and its sale is
queued) or neither. The purchase session keeps its own state in the ``session_state``
key/value table of the same database and writes it through ``Outbox.transaction()``::

    with outbox.transaction() as tx:
        tx.put_state("session", session_json)
        outbox.record_sale(sale, in_transaction=tx)

The MQTT link publishes what ``due()`` returns, calls ``mark_sent()`` after each publish,
which schedules a retry with capped exponential backoff and jitter, and calls
``acknowledge()`` when the server's ``Ack`` arrives. Nothing is evicted by age or attempt
count: a message leaves the outbox only through ``acknowledge()``.

The database runs in WAL mode with ``synchronous=FULL``, so a committed transaction
survives a crash or power loss, and a transaction cut off by a crash leaves no trace.

Exceptions::

    OutboxError              a SQLite operation on the outbox failed
     ├── OutboxFullError     the disk or the database size limit is full
     └── DuplicateMessageError  a sale or event with the same id is already queued
"""

import contextlib
import enum
import logging
import os
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, Self
from uuid import UUID

from kiosk_agent.contract import KioskEvent, OutboxBacklog, SaleRecord, encode_payload, utc_now

logger = logging.getLogger(__name__)

RETRY_BASE_S: Final = 2.0
RETRY_CAP_S: Final = 300.0
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
# The exponent of the backoff stops growing here, long after the cap is reached, so that
# 2**exponent never overflows a float.
MAX_BACKOFF_EXPONENT: Final = 62

_SCHEMA: Final = (
    # Times are Unix seconds (REAL). next_attempt_at is when the message is due again.
    """CREATE TABLE IF NOT EXISTS pending_sales (
        sale_id TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS pending_events (
        event_id TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL
    )""",
    # Serve due(): the messages whose next_attempt_at has passed, oldest first.
    "CREATE INDEX IF NOT EXISTS pending_sales_due ON pending_sales (next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS pending_events_due ON pending_events (next_attempt_at)",
    """CREATE TABLE IF NOT EXISTS session_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
)


class OutboxError(Exception):
    """A SQLite operation on the outbox failed."""


class OutboxFullError(OutboxError):
    """The disk, or the database's size limit, has no room for the write.

    The transaction was rolled back. The agent should stop starting sessions until space
    is freed, which ``Outbox.has_space`` detects before this happens.
    """


class DuplicateMessageError(OutboxError):
    """A sale or event with the same id is already in the outbox."""


class MessageKind(enum.StrEnum):
    SALE = "sale"
    EVENT = "event"


# A callable that returns the current time as an aware datetime.
Clock = Callable[[], datetime]

# Table and id column of each kind. They are constants, never user input, so they are safe
# to format into SQL.
_TABLES: Final = {
    MessageKind.SALE: ("pending_sales", "sale_id"),
    MessageKind.EVENT: ("pending_events", "event_id"),
}


@dataclass(frozen=True)
class PendingMessage:
    """A sale or event that waits for the server's acknowledgement."""

    kind: MessageKind
    message_id: UUID
    payload: bytes
    created_at: datetime
    attempts: int
    next_attempt_at: datetime


def backoff_delay_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Return the wait before retry number ``attempt`` (1 for the first retry), in seconds.

    The ceiling doubles from ``base_s`` with each attempt up to ``cap_s``. The wait is drawn
    uniformly between half the ceiling and the ceiling ("equal jitter"), so that many
    cabinets that failed together do not retry together.
    """
    exponent = min(max(attempt - 1, 0), MAX_BACKOFF_EXPONENT)
    ceiling = min(cap_s, base_s * 2.0**exponent)
    return rng.uniform(ceiling / 2, ceiling)


def _to_unix(value: datetime) -> float:
    return value.timestamp()


def _from_unix(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _is_disk_full(exc: sqlite3.Error) -> bool:
    # sqlite_errorcode exists since Python 3.11. SQLITE_FULL is also raised when the
    # database reaches PRAGMA max_page_count.
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _rollback_if_open(connection: sqlite3.Connection) -> None:
    # SQLite may already have rolled back, for example after SQLITE_FULL.
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _translate(exc: sqlite3.Error, action: str, path: str) -> OutboxError:
    if _is_disk_full(exc):
        return OutboxFullError(f"cannot {action}: {path} is full ({exc})")
    return OutboxError(f"cannot {action} in {path}: {exc}")


class OutboxTransaction:
    """An open write transaction on the outbox database.

    Valid only inside ``Outbox.transaction()``. ``connection`` is the raw SQLite
    connection, for a caller that keeps more tables in the same database.
    """

    def __init__(self, outbox: "Outbox", connection: sqlite3.Connection) -> None:
        self._outbox = outbox
        self.connection = connection
        self._open = True

    def _check_open(self) -> None:
        if not self._open:
            raise OutboxError("the outbox transaction is already closed")

    def _close(self) -> None:
        self._open = False

    def record_sale(self, sale: SaleRecord) -> None:
        self._insert(MessageKind.SALE, sale.sale_id, encode_payload(sale))

    def record_event(self, event: KioskEvent) -> None:
        self._insert(MessageKind.EVENT, event.event_id, encode_payload(event))

    def _insert(self, kind: MessageKind, message_id: UUID, payload: bytes) -> None:
        self._check_open()
        table, id_column = _TABLES[kind]
        now = _to_unix(self._outbox.clock())
        try:
            self.connection.execute(
                f"INSERT INTO {table} ({id_column}, payload, created_at, attempts, next_attempt_at)"
                " VALUES (?, ?, ?, 0, ?)",
                (str(message_id), payload.decode(), now, now),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateMessageError(f"{kind.value} {message_id} is already queued") from exc

    def get_state(self, key: str) -> str | None:
        self._check_open()
        row = self.connection.execute(
            "SELECT value FROM session_state WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def put_state(self, key: str, value: str) -> None:
        self._check_open()
        self.connection.execute(
            "INSERT INTO session_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_state(self, key: str) -> None:
        self._check_open()
        self.connection.execute("DELETE FROM session_state WHERE key = ?", (key,))


class Outbox:
    """Sales and events queued for the server, with the purchase session's key/value state.

    Use an outbox from one thread only (the agent's asyncio loop): its SQLite connection
    is not shared between threads. Writes block for an fsync, which takes milliseconds on
    the cabinet's flash storage.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
        rng: random.Random | None = None,
        clock: Clock = utc_now,
        max_page_count: int | None = None,
    ) -> None:
        """Open or create the outbox database at ``path``.

        ``clock`` returns the current aware datetime and stamps created_at.
        ``max_page_count`` caps the database size in pages (SQLite's PRAGMA of that name).
        Tests use it to make writes fail as they would on a full disk.
        """
        self.path = os.fspath(path)
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self._rng = rng if rng is not None else random.Random()
        self.clock = clock
        self._transaction: OutboxTransaction | None = None
        try:
            # With isolation_level=None, sqlite3 opens no implicit transactions, so _write()
            # decides where each transaction begins and ends.
            self._connection = sqlite3.connect(self.path, isolation_level=None)
            self._connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            mode = self._connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"cannot enable WAL journal mode on {self.path}: got {mode}")
            self._connection.execute("PRAGMA synchronous = FULL")
            with self._write():
                for statement in _SCHEMA:
                    self._connection.execute(statement)
            if max_page_count is not None:
                self._connection.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
        except sqlite3.Error as exc:
            raise _translate(exc, "open the outbox", self.path) from exc

    # --- Transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one immediate write transaction, which rolls back if it raises."""
        if self._transaction is not None or self._connection.in_transaction:
            raise OutboxError("an outbox transaction is already open, and transactions do not nest")
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
            self._connection.execute("COMMIT")
        except BaseException:
            _rollback_if_open(self._connection)
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[OutboxTransaction]:
        """Open a write transaction that commits when the block ends, or rolls back if it raises.

        Raises OutboxFullError when the disk is full, OutboxError for other SQLite
        failures, and re-raises any other exception from the block after the rollback.
        """
        try:
            with self._write() as connection:
                transaction = OutboxTransaction(self, connection)
                self._transaction = transaction
                try:
                    yield transaction
                finally:
                    transaction._close()
                    self._transaction = None
        except sqlite3.Error as exc:
            raise _translate(exc, "commit the outbox transaction", self.path) from exc

    def record_sale(self, sale: SaleRecord, *, in_transaction: OutboxTransaction | None) -> None:
        """Queue a sale in the caller's transaction, or given None, in a transaction of its own.

        The keyword is required so that every call site states whether the sale commits
        together with other writes.
        """
        if in_transaction is not None:
            self._check_own(in_transaction)
            in_transaction.record_sale(sale)
            return
        with self.transaction() as transaction:
            transaction.record_sale(sale)

    def record_event(
        self, event: KioskEvent, *, in_transaction: OutboxTransaction | None = None
    ) -> None:
        """Queue an event, inside the caller's transaction or in a transaction of its own."""
        if in_transaction is not None:
            self._check_own(in_transaction)
            in_transaction.record_event(event)
            return
        with self.transaction() as transaction:
            transaction.record_event(event)

    def _check_own(self, transaction: OutboxTransaction) -> None:
        if transaction is not self._transaction:
            raise OutboxError("the transaction is not the open transaction of this outbox")

    def get_state(self, key: str) -> str | None:
        """Return a session_state value outside a transaction, or None if the key is unset."""
        try:
            row = self._connection.execute(
                "SELECT value FROM session_state WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, "read session state", self.path) from exc
        return None if row is None else str(row[0])

    # --- Delivery -------------------------------------------------------------------------

    def due(self, now: datetime, limit: int) -> list[PendingMessage]:
        """Return up to ``limit`` messages whose next attempt is due at ``now``, oldest first."""
        query = (
            "SELECT kind, message_id, payload, created_at, attempts, next_attempt_at FROM ("
            " SELECT 'sale' AS kind, sale_id AS message_id, payload, created_at, attempts,"
            "  next_attempt_at FROM pending_sales WHERE next_attempt_at <= :now"
            " UNION ALL"
            " SELECT 'event', event_id, payload, created_at, attempts, next_attempt_at"
            "  FROM pending_events WHERE next_attempt_at <= :now"
            ") ORDER BY next_attempt_at, created_at LIMIT :limit"
        )
        try:
            rows = self._connection.execute(
                query, {"now": _to_unix(now), "limit": limit}
            ).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "read due messages", self.path) from exc
        return [
            PendingMessage(
                kind=MessageKind(kind),
                message_id=UUID(message_id),
                payload=payload.encode(),
                created_at=_from_unix(created_at),
                attempts=attempts,
                next_attempt_at=_from_unix(next_attempt_at),
            )
            for kind, message_id, payload, created_at, attempts, next_attempt_at in rows
        ]

    def mark_sent(self, message_id: UUID, now: datetime) -> datetime | None:
        """Count a publish of the message and schedule its next attempt with backoff.

        Returns the time of the next attempt, or None if the message is no longer queued
        (an acknowledgement arrived in between).
        """
        return self.mark_sent_many([message_id], now).get(message_id)

    def mark_sent_many(self, message_ids: Iterable[UUID], now: datetime) -> dict[UUID, datetime]:
        """Count a publish of each message and schedule its next attempt, in one transaction.

        Each message draws its own delay: the ceiling doubles with its attempt count from
        ``retry_base_s`` up to ``retry_cap_s``, with jitter (``backoff_delay_s``). Returns
        the next attempt time of each message still queued.
        """
        scheduled: dict[UUID, datetime] = {}
        try:
            with self._write() as connection:
                for message_id in message_ids:
                    for table, id_column in _TABLES.values():
                        row = connection.execute(
                            f"SELECT attempts FROM {table} WHERE {id_column} = ?",
                            (str(message_id),),
                        ).fetchone()
                        if row is None:
                            continue
                        attempts = int(row[0]) + 1
                        delay_s = backoff_delay_s(
                            attempts,
                            base_s=self.retry_base_s,
                            cap_s=self.retry_cap_s,
                            rng=self._rng,
                        )
                        next_attempt_at = now + timedelta(seconds=delay_s)
                        connection.execute(
                            f"UPDATE {table} SET attempts = ?, next_attempt_at = ?"
                            f" WHERE {id_column} = ?",
                            (attempts, _to_unix(next_attempt_at), str(message_id)),
                        )
                        scheduled[message_id] = next_attempt_at
                        break
        except sqlite3.Error as exc:
            raise _translate(exc, "schedule retries", self.path) from exc
        return scheduled

    def reschedule_all(self, now: datetime) -> int:
        """Make every queued message due at ``now``, as the link does after a reconnect.

        Attempt counts are kept, so later retries continue the backoff where it was.
        Returns the number of messages made due.
        """
        try:
            with self._write() as connection:
                changed = 0
                for table, _ in _TABLES.values():
                    cursor = connection.execute(
                        f"UPDATE {table} SET next_attempt_at = ? WHERE next_attempt_at > ?",
                        (_to_unix(now), _to_unix(now)),
                    )
                    changed += cursor.rowcount
        except sqlite3.Error as exc:
            raise _translate(exc, "reschedule messages", self.path) from exc
        return changed

    def acknowledge(self, message_ids: Iterable[UUID]) -> int:
        """Delete the acknowledged sales and events and return how many were deleted.

        Ids that are not queued, such as those of a repeated acknowledgement, are ignored.
        """
        keys = [(str(message_id),) for message_id in message_ids]
        if not keys:
            return 0
        try:
            with self._write() as connection:
                deleted = 0
                for table, id_column in _TABLES.values():
                    before = connection.total_changes
                    connection.executemany(f"DELETE FROM {table} WHERE {id_column} = ?", keys)
                    deleted += connection.total_changes - before
        except sqlite3.Error as exc:
            raise _translate(exc, "delete acknowledged messages", self.path) from exc
        return deleted

    def backlog(self) -> OutboxBacklog:
        """Count the queued sales and events, with the creation time of the oldest."""
        try:
            sales, oldest_sale = self._connection.execute(
                "SELECT count(*), min(created_at) FROM pending_sales"
            ).fetchone()
            events, oldest_event = self._connection.execute(
                "SELECT count(*), min(created_at) FROM pending_events"
            ).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, "count queued messages", self.path) from exc
        oldest = [value for value in (oldest_sale, oldest_event) if value is not None]
        return OutboxBacklog(
            sales=int(sales),
            events=int(events),
            oldest_created_at=_from_unix(min(oldest)) if oldest else None,
        )

    # --- Disk space and lifecycle ---------------------------------------------------------

    def has_space(self, min_free_bytes: int) -> bool:
        """Return whether the file system of the database has at least ``min_free_bytes`` free.

        The agent checks this before it starts a session, so that the session's sale can
        still be written when it ends.
        """
        directory = Path(self.path).resolve().parent
        return shutil.disk_usage(directory).free >= min_free_bytes

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
