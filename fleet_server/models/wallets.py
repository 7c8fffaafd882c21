"""Campus-card wallets (校园卡), payment holds and the ledger of wallet transactions.

Money is an integer number of fen everywhere. A wallet's ``balance_fen`` is the money in
the account, and ``held_fen`` is the part of it that open holds reserve, so the amount a
new hold can take is ``balance_fen - held_fen``. Check constraints keep both non-negative
and ``held_fen <= balance_fen``, so no sequence of operations can overdraw an account.
"""

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, BigIntId, CreatedAt, IntPk, UTCDateTime, utc_now
from fleet_server.models.enums import enum_type


class HoldStatus(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"  # the captured part is taken, the rest released
    RELEASED = "released"  # nothing taken


class TransactionKind(enum.StrEnum):
    TOP_UP = "top_up"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    REFUND = "refund"


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("balance_fen >= 0", name="balance_fen_non_negative"),
        CheckConstraint("held_fen >= 0", name="held_fen_non_negative"),
        CheckConstraint("held_fen <= balance_fen", name="held_within_balance"),
    )

    id: Mapped[IntPk]
    # One wallet per student. The unique constraint's index serves the lookup by user.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger(), default=0)
    held_fen: Mapped[int] = mapped_column(BigInteger(), default=0)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.held_fen


class PaymentHold(Base):
    """Money reserved on a wallet for one purchase session, until it is captured or released."""

    __tablename__ = "payment_holds"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_fen_positive"),
        CheckConstraint(
            "captured_fen >= 0 AND captured_fen <= amount_fen", name="captured_within_amount"
        ),
        CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= captured_fen", name="refunded_within_captured"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Lists the holds of a wallet.
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"), index=True)
    # Idempotency key of the hold, e.g. "purchase:<session id>": a repeated hold request
    # with the same reference returns this hold instead of reserving money twice.
    reference: Mapped[str] = mapped_column(String(100), unique=True)
    amount_fen: Mapped[int] = mapped_column(Integer())
    status: Mapped[HoldStatus] = mapped_column(
        enum_type(HoldStatus, "hold_status"), default=HoldStatus.HELD
    )
    captured_fen: Mapped[int] = mapped_column(Integer(), default=0)
    refunded_fen: Mapped[int] = mapped_column(Integer(), default=0)
    created_at: Mapped[CreatedAt]
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    wallet: Mapped[Wallet] = relationship()


class WalletTransaction(Base):
    """One money movement on a wallet, with the balances after it: the wallet's ledger."""

    __tablename__ = "wallet_transactions"
    __table_args__ = (
        # One capture, one release and one hold per hold reference, and one top-up or
        # refund per caller reference: a retried request cannot move money twice.
        Index("uq_wallet_transactions_kind_reference", "kind", "reference", unique=True),
        # A wallet's statement, newest first: "WHERE wallet_id = ? ORDER BY id DESC".
        Index("ix_wallet_transactions_wallet_id_id", "wallet_id", "id"),
        CheckConstraint("amount_fen > 0", name="amount_fen_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id"))
    kind: Mapped[TransactionKind] = mapped_column(enum_type(TransactionKind, "transaction_kind"))
    amount_fen: Mapped[int] = mapped_column(Integer())
    reference: Mapped[str] = mapped_column(String(100))
    # Lists the movements of one hold.
    hold_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_holds.id"), index=True)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger())
    held_after_fen: Mapped[int] = mapped_column(BigInteger())
    # Top-up note or refund reason, as the administrator or operator typed it.
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[CreatedAt]
