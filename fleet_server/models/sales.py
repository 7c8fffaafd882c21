"""Sales reported by the cabinets, their lines, and refunds.

A row in ``sales`` is one ``kiosk_agent.contract.SaleRecord`` as ingest committed it.
(kiosk_id, sale_id) is unique, so a sale that the cabinet sends again is stored once.
"""

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, BigIntId, CreatedAt, JSONDocument, UTCDateTime
from fleet_server.models.counties import County
from fleet_server.models.enums import enum_type
from kiosk_agent.contract import SaleOutcome


class ServerReviewReason(enum.StrEnum):
    """Review reasons that the server adds to those the cabinet reported."""

    UNKNOWN_SESSION = "unknown_session"  # no purchase session has the sale's session id
    SESSION_CABINET_MISMATCH = "session_cabinet_mismatch"
    SESSION_ALREADY_SETTLED = "session_already_settled"  # a second sale for one session
    HOLD_NOT_OPEN = "hold_not_open"  # the hold was released before the sale arrived
    EXCEEDS_HOLD = "exceeds_hold"  # lines worth more than the hold: the hold was captured
    UNKNOWN_PRODUCT = "unknown_product"  # a line's product is not in the catalog


class Sale(Base):
    __tablename__ = "sales"
    __table_args__ = (
        # De-duplication key of ingest; also finds a sale by its cabinet and id.
        UniqueConstraint("kiosk_id", "sale_id"),
        # An operator's or school's list of sales: "WHERE cabinet_id IN (...) ORDER BY
        # recorded_at DESC".
        Index("ix_sales_cabinet_id_recorded_at", "cabinet_id", "recorded_at"),
        # Looks a sale up by the id in the API path.
        Index("ix_sales_sale_id", "sale_id"),
        CheckConstraint("total_fen >= 0", name="total_fen_non_negative"),
        CheckConstraint(
            "captured_fen >= 0 AND captured_fen <= total_fen", name="captured_within_total"
        ),
        CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= captured_fen", name="refunded_within_captured"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(String(64))
    sale_id: Mapped[uuid.UUID]
    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"))
    # The session id the cabinet reported, whether or not a purchase session has it.
    session_id: Mapped[uuid.UUID]
    # The purchase session this sale settled, or None (restock, unknown or mismatched
    # session). Unique: a session is settled by one sale only.
    purchase_session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("purchase_sessions.id"), unique=True
    )
    outcome: Mapped[SaleOutcome] = mapped_column(enum_type(SaleOutcome, "sale_outcome"))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    planogram_version: Mapped[int] = mapped_column(Integer())
    # Sum of the lines' amounts: what the cabinet says the student took.
    total_fen: Mapped[int] = mapped_column(Integer())
    # What the payment hold actually paid; less than total_fen only when flagged.
    captured_fen: Mapped[int] = mapped_column(Integer(), default=0)
    refunded_fen: Mapped[int] = mapped_column(Integer(), default=0)
    review_needed: Mapped[bool] = mapped_column(Boolean())
    # Reason codes: the cabinet's (e.g. ambiguous_weight) and the server's (ServerReviewReason).
    review_reasons: Mapped[list[str]] = mapped_column(JSONDocument)
    # [{"shelf", "before_mg", "after_mg"}, ...]: the weighing evidence.
    shelf_deltas: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)

    lines: Mapped[list["SaleLine"]] = relationship(order_by="SaleLine.line_no")
    refunds: Mapped[list["SaleRefund"]] = relationship(order_by="SaleRefund.id")


class SaleLine(Base):
    __tablename__ = "sale_lines"
    __table_args__ = (
        # Also lists the lines of a sale (leading column sale_pk).
        UniqueConstraint("sale_pk", "line_no"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_fen >= 0", name="unit_price_fen_non_negative"),
        CheckConstraint("amount_fen = quantity * unit_price_fen", name="amount_is_product"),
        CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity",
            name="refunded_quantity_range",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    sale_pk: Mapped[int] = mapped_column(ForeignKey("sales.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer())
    # The product id in the cabinet's planogram, as the cabinet reported it.
    product_ref: Mapped[str] = mapped_column(String(64))
    # The catalog product, or None when product_ref matches none (the sale is flagged).
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    # Name at the time of sale, so a receipt does not change when the catalog does.
    product_name: Mapped[str] = mapped_column(String(200))
    # 产品来源: the county the procurement ledger counts the line for.
    source_county_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"))
    shelf: Mapped[int] = mapped_column(Integer())
    quantity: Mapped[int] = mapped_column(Integer())
    unit_price_fen: Mapped[int] = mapped_column(Integer())
    amount_fen: Mapped[int] = mapped_column(Integer())
    refunded_quantity: Mapped[int] = mapped_column(Integer(), default=0)

    source_county: Mapped[County | None] = relationship()


class SaleRefund(Base):
    __tablename__ = "sale_refunds"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_fen_positive"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Lists the refunds of a sale.
    sale_pk: Mapped[int] = mapped_column(ForeignKey("sales.id"), index=True)
    # Idempotency key: a retried refund request with the same reference refunds once.
    reference: Mapped[str] = mapped_column(String(100), unique=True)
    amount_fen: Mapped[int] = mapped_column(Integer())
    reason: Mapped[str] = mapped_column(String(500))
    # [{"line_id", "quantity", "amount_fen"}, ...] for a refund by lines, else None.
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDocument)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[CreatedAt]
