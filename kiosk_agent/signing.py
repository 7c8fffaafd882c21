"""Command signatures, and the checks the agent makes before it obeys a command.

The server signs every command with the cabinet's own key::

    signature = lower-case hex of HMAC-SHA256(key, canonical encoding of the command)

The canonical encoding is the command's JSON object without its ``signature`` member.
Field values are written as ``contract.encode_payload`` writes them: UUIDs and enums as
strings, timestamps as ISO 8601 UTC with microseconds and ``Z``. Keys are sorted at every
level, there is no whitespace, and non-ASCII characters are not escaped. The text is
encoded as UTF-8.

``verify_command`` accepts a command only if the signature matches, the command names
this cabinet, it has not expired, it was not issued in the future, and its nonce is new.
The nonce is recorded in the same step that checks it, in a SQLite table that survives
restarts.
"""

import enum
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from datetime import datetime, timedelta
from types import TracebackType
from typing import Final, Self, TypeVar

from kiosk_agent.contract import PlanogramCommand, SignedCommand, UnlockCommand

logger = logging.getLogger(__name__)

# How far issued_at may lie in the future of the cabinet's clock before a command is
# rejected as not yet valid.
# NOTE: expiry has no such allowance, because an unlock lives only a few seconds. A cabinet
# whose clock runs ahead of the server's by more than that lifetime rejects every unlock as
# expired, so cabinets need NTP.
CLOCK_SKEW_ALLOWANCE_S: Final = 5.0
# How long a nonce is remembered after its command expired. An expired command is rejected
# anyway, but the margin covers a cabinet clock that is later set back.
NONCE_RETENTION_S: Final = 24 * 3600.0
SQLITE_BUSY_TIMEOUT_MS: Final = 5000

CommandT = TypeVar("CommandT", UnlockCommand, PlanogramCommand)


class RejectReason(enum.StrEnum):
    BAD_SIGNATURE = "bad_signature"
    WRONG_KIOSK = "wrong_kiosk"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAYED_NONCE = "replayed_nonce"


class CommandRejectedError(Exception):
    """Rejection of a command, with ``reason`` as the code for the command_rejected event."""

    def __init__(self, reason: RejectReason, command: SignedCommand, detail: str) -> None:
        super().__init__(f"command {command.command_id} rejected ({reason.value}): {detail}")
        self.reason = reason
        self.command_id = command.command_id
        self.detail = detail


class NonceStoreError(Exception):
    """The nonce store could not be read or written, so the command must not be obeyed."""


def new_nonce() -> str:
    """Return a random 128-bit nonce as 32 lower-case hex characters."""
    return secrets.token_hex(16)


def canonical_command_bytes(command: SignedCommand) -> bytes:
    """Return the canonical encoding of a command without its signature (the signed bytes)."""
    document = command.model_dump(mode="json", exclude={"signature"})
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def compute_signature(command: SignedCommand, key: bytes) -> str:
    """Return the hex HMAC-SHA256 of the command's canonical encoding under ``key``."""
    if not key:
        raise ValueError("the HMAC key is empty")
    return hmac.new(key, canonical_command_bytes(command), hashlib.sha256).hexdigest()


def sign_command(command: CommandT, key: bytes) -> CommandT:
    """Return a copy of the command with its signature set, replacing any old signature."""
    return command.model_copy(update={"signature": compute_signature(command, key)})


def verify_command(
    command: SignedCommand,
    *,
    key: bytes,
    kiosk_id: str,
    now: datetime,
    nonce_store: "NonceStore",
    clock_skew_s: float = CLOCK_SKEW_ALLOWANCE_S,
) -> None:
    """Raise CommandRejectedError unless this cabinet may obey the command at time ``now``.

    The checks run in this order: signature, kiosk id, expiry, issue time, nonce. The
    nonce is recorded only when every other check passed, so a forged or stale command
    cannot use up a nonce. Raises NonceStoreError if the nonce store fails, and the caller
    must then treat the command as rejected.
    """
    if command.signature is None:
        raise CommandRejectedError(RejectReason.BAD_SIGNATURE, command, "the command is not signed")
    expected = compute_signature(command, key)
    if not hmac.compare_digest(expected.encode("ascii"), command.signature.encode("ascii")):
        raise CommandRejectedError(
            RejectReason.BAD_SIGNATURE, command, "the signature does not match the cabinet key"
        )

    if command.kiosk_id != kiosk_id:
        raise CommandRejectedError(
            RejectReason.WRONG_KIOSK,
            command,
            f"the command is for kiosk {command.kiosk_id!r}, this is {kiosk_id!r}",
        )
    if now > command.expires_at:
        late_s = (now - command.expires_at).total_seconds()
        raise CommandRejectedError(
            RejectReason.EXPIRED, command, f"the command expired {late_s:.3f} s ago"
        )
    if command.issued_at > now + timedelta(seconds=clock_skew_s):
        early_s = (command.issued_at - now).total_seconds()
        raise CommandRejectedError(
            RejectReason.NOT_YET_VALID,
            command,
            f"the command was issued {early_s:.3f} s in the future, more than the "
            f"{clock_skew_s:.1f} s clock skew allowance",
        )

    keep_until = command.expires_at + timedelta(seconds=NONCE_RETENTION_S)
    if not nonce_store.check_and_record(command.nonce, keep_until=keep_until, now=now):
        raise CommandRejectedError(
            RejectReason.REPLAYED_NONCE, command, f"nonce {command.nonce} was already used"
        )


class NonceStore:
    """Nonces of accepted commands, in a SQLite database that survives restarts.

    Each nonce is kept until the ``keep_until`` time given when it was recorded. Older
    nonces are deleted by ``prune``, which ``check_and_record`` also runs. Use one store
    from one thread: the SQLite connection is not shared between threads.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        try:
            # With isolation_level=None, sqlite3 opens no implicit transactions, so the
            # BEGIN and COMMIT below are the only transaction boundaries.
            self._connection = sqlite3.connect(self._path, isolation_level=None)
            self._connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            self._connection.execute("PRAGMA journal_mode = WAL")
            self._connection.execute("PRAGMA synchronous = FULL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS seen_nonces ("
                " nonce TEXT PRIMARY KEY,"
                " keep_until REAL NOT NULL"  # Unix time in seconds
                ") WITHOUT ROWID"
            )
            # Serves the DELETE in prune().
            self._connection.execute(
                "CREATE INDEX IF NOT EXISTS seen_nonces_keep_until ON seen_nonces (keep_until)"
            )
        except sqlite3.Error as exc:
            raise NonceStoreError(f"cannot open the nonce store {self._path}: {exc}") from exc

    def check_and_record(self, nonce: str, *, keep_until: datetime, now: datetime) -> bool:
        """Record the nonce and return True, or return False if it is already recorded.

        Checking and recording is one INSERT in one transaction, so two commands with the
        same nonce cannot both pass. The transaction also prunes nonces older than ``now``.
        """
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.execute(
                    "DELETE FROM seen_nonces WHERE keep_until < ?", (now.timestamp(),)
                )
                cursor = self._connection.execute(
                    "INSERT OR IGNORE INTO seen_nonces (nonce, keep_until) VALUES (?, ?)",
                    (nonce, keep_until.timestamp()),
                )
                inserted = cursor.rowcount == 1
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise NonceStoreError(f"cannot record nonce in {self._path}: {exc}") from exc
        return inserted

    def prune(self, now: datetime) -> int:
        """Delete nonces whose keep_until is before ``now`` and return how many were deleted."""
        try:
            cursor = self._connection.execute(
                "DELETE FROM seen_nonces WHERE keep_until < ?", (now.timestamp(),)
            )
        except sqlite3.Error as exc:
            raise NonceStoreError(f"cannot prune nonces in {self._path}: {exc}") from exc
        return cursor.rowcount

    def count(self) -> int:
        row = self._connection.execute("SELECT count(*) FROM seen_nonces").fetchone()
        return int(row[0])

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
