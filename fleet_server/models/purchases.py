"""Purchase sessions: one student's scan-to-open, take-goods, close-to-pay visit at a cabinet.

The state machine that moves a session between the states below is in
``fleet_server.services.purchase_states``.
"""

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, CreatedAt, UTCDateTime, utc_now
from fleet_server.models.enums import enum_type
from fleet_server.models.registry import Cabinet
from fleet_server.models.wallets import PaymentHold


class PurchaseState(enum.StrEnum):
    CREATED = "created"  # hold placed, unlock command not yet confirmed by the broker
    UNLOCK_SENT = "unlock_sent"
    UNLOCKED = "unlocked"
    DOOR_OPEN = "door_open"
    SETTLING = "settling"  # door closed, the cabinet is weighing
    COMPLETED = "completed"  # sale received and charged
    CANCELLED = "cancelled"  # sale received with nothing to charge for a cancelled session
    FAILED = "failed"  # the unlock never reached the cabinet, or the cabinet rejected it
    EXPIRED = "expired"  # no sale within the timeout; the hold stays until it arrives


# States in which the cabinet may still be running the session. At most one session per
# cabinet may be in one of them (see the partial unique index below).
ACTIVE_STATES = (
    PurchaseState.CREATED,
    PurchaseState.UNLOCK_SENT,
    PurchaseState.UNLOCKED,
    PurchaseState.DOOR_OPEN,
    PurchaseState.SETTLING,
)
_ACTIVE_SQL = "state IN ({})".format(", ".join(f"'{state.value}'" for state in ACTIVE_STATES))


class PurchaseSession(Base):
    __tablename__ = "purchase_sessions"
    __table_args__ = (
        # A cabinet runs one session at a time, so a second active session is a conflict
        # (the student gets "cabinet busy") even when two requests race.
        Index(
            "uq_purchase_sessions_active_cabinet",
            "cabinet_id",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
        # A student's history, newest first: "WHERE user_id = ? ORDER BY created_at DESC".
        Index("ix_purchase_sessions_user_id_created_at", "user_id", "created_at"),
        # The expiry sweep: "WHERE state IN (...) AND deadline_at < now".
        Index("ix_purchase_sessions_state_deadline_at", "state", "deadline_at"),
        CheckConstraint("hold_amount_fen > 0", name="hold_amount_fen_positive"),
    )

    # Also the session_id of the unlock command and of the cabinet's SaleRecord.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"))
    door: Mapped[int] = mapped_column(Integer())
    state: Mapped[PurchaseState] = mapped_column(
        enum_type(PurchaseState, "purchase_state"), default=PurchaseState.CREATED
    )
    # command_id of the unlock command. Unique, because a command_rejected event for a bad
    # signature names only the command, and ingest finds the session by it.
    command_id: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4, unique=True)
    hold_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_holds.id"), unique=True)
    hold_amount_fen: Mapped[int] = mapped_column(Integer())
    # Machine-readable reason of a failed or manually closed session, e.g. "publish_failed"
    # or "command_rejected:expired".
    failure_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)
    # After this time a session without a sale is marked expired.
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    cabinet: Mapped[Cabinet] = relationship()
    hold: Mapped[PaymentHold] = relationship()
