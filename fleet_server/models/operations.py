"""Planograms, the live state of each cabinet, its stock, and fleet alerts."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, BigIntId, CreatedAt, IntPk, JSONDocument, UTCDateTime
from fleet_server.models.enums import enum_type
from fleet_server.models.products import Product
from fleet_server.models.registry import Cabinet


class ConnectionState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class OfflineReason(enum.StrEnum):
    """Reason the server counts a cabinet as offline."""

    LAST_WILL = "last_will"  # the broker published the agent's last will
    DISCONNECTED = "disconnected"  # the agent published offline before it stopped
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # no telemetry for too long


class AlertKind(enum.StrEnum):
    OFFLINE = "offline"
    DOOR_FORCED = "door_forced"
    DOOR_LEFT_OPEN = "door_left_open"
    LOCK_FAULT = "lock_fault"
    SCALE_FAULT = "scale_fault"
    LOW_STOCK = "low_stock"
    OUTBOX_BACKLOG = "outbox_backlog"
    DISK_FULL = "disk_full"
    SERIAL_LINK_DOWN = "serial_link_down"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


# --- Planograms -----------------------------------------------------------------------------


class Planogram(Base):
    """商品陈列图: one version of which products sit on which shelf of a cabinet."""

    __tablename__ = "planograms"
    __table_args__ = (
        # Also serves "latest version of a cabinet" (ORDER BY version DESC LIMIT 1).
        UniqueConstraint("cabinet_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[IntPk]
    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"))
    version: Mapped[int] = mapped_column(Integer())
    created_at: Mapped[CreatedAt]
    # Lists the planograms a user saved; None for system actions.
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_by_label: Mapped[str] = mapped_column(String(100))
    # When the broker last accepted a command carrying this version, and how many were sent.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    publish_count: Mapped[int] = mapped_column(Integer(), default=0)
    # When the cabinet's telemetry first reported this version in force.
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    cabinet: Mapped[Cabinet] = relationship()
    shelves: Mapped[list["PlanogramShelf"]] = relationship(
        back_populates="planogram",
        order_by="PlanogramShelf.shelf",
        cascade="all, delete-orphan",
    )


class PlanogramShelf(Base):
    __tablename__ = "planogram_shelves"
    __table_args__ = (
        CheckConstraint("shelf BETWEEN 0 AND 255", name="shelf_range"),
        CheckConstraint("door BETWEEN 0 AND 254", name="door_range"),
        CheckConstraint("capacity_items >= 1", name="capacity_items_positive"),
    )

    planogram_id: Mapped[int] = mapped_column(
        ForeignKey("planograms.id", ondelete="CASCADE"), primary_key=True
    )
    # Shelf index on the cabinet's serial bus, as in the MQTT contract.
    shelf: Mapped[int] = mapped_column(Integer(), primary_key=True)
    # Index of the door the shelf is behind; None where the operator did not give it.
    door: Mapped[int | None] = mapped_column(Integer())
    # Number of items that fit on the shelf.
    capacity_items: Mapped[int] = mapped_column(Integer())

    planogram: Mapped[Planogram] = relationship(back_populates="shelves")
    lines: Mapped[list["PlanogramLine"]] = relationship(
        back_populates="shelf_row",
        order_by="PlanogramLine.position",
        cascade="all, delete-orphan",
    )


class PlanogramLine(Base):
    """One product on one shelf. Weights and price are copied from the catalog when saved."""

    __tablename__ = "planogram_lines"
    __table_args__ = (
        ForeignKeyConstraint(
            ["planogram_id", "shelf"],
            ["planogram_shelves.planogram_id", "planogram_shelves.shelf"],
            ondelete="CASCADE",
        ),
        CheckConstraint("price_fen > 0", name="price_fen_positive"),
        CheckConstraint("unit_weight_mg > 0", name="unit_weight_mg_positive"),
        CheckConstraint("tolerance_mg >= 0", name="tolerance_mg_non_negative"),
    )

    planogram_id: Mapped[int] = mapped_column(primary_key=True)
    shelf: Mapped[int] = mapped_column(Integer(), primary_key=True)
    # Lists the planograms that use a product.
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True, index=True)
    # Order of the product on the shelf as the operator listed it.
    position: Mapped[int] = mapped_column(Integer())
    # Price in fen sent to the cabinet: the override if given, else the catalog price.
    price_fen: Mapped[int] = mapped_column(Integer())
    price_overridden: Mapped[bool] = mapped_column(Boolean(), default=False)
    unit_weight_mg: Mapped[int] = mapped_column(Integer())
    tolerance_mg: Mapped[int] = mapped_column(Integer())

    shelf_row: Mapped[PlanogramShelf] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


# --- Live state and stock -------------------------------------------------------------------


class CabinetState(Base):
    """Last known state of a cabinet: connection, doors, scales, outbox, versions.

    Times named ``*_reported_at`` come from the cabinet's clock. The others come from the
    server's clock.
    """

    __tablename__ = "cabinet_states"

    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"), primary_key=True)
    # Filters the fleet list by state.
    connection: Mapped[ConnectionState] = mapped_column(
        enum_type(ConnectionState, "connection_state"), index=True
    )
    connection_since: Mapped[datetime] = mapped_column(UTCDateTime())
    offline_reason: Mapped[OfflineReason | None] = mapped_column(
        enum_type(OfflineReason, "offline_reason")
    )
    # ``since`` of the last status message applied, to skip older retained copies.
    status_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_telemetry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    telemetry_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    agent_version: Mapped[str | None] = mapped_column(String(100))
    firmware_version: Mapped[str | None] = mapped_column(String(100))
    # Lists of {"door", "lock", "position"} and {"shelf", "weight_mg", "stable", "fault"}.
    doors: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    shelves: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    backlog_sales: Mapped[int] = mapped_column(Integer(), default=0)
    backlog_events: Mapped[int] = mapped_column(Integer(), default=0)
    backlog_oldest_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    serial_link_up: Mapped[bool | None] = mapped_column(Boolean())
    session_state: Mapped[str | None] = mapped_column(String(64))
    planogram_version: Mapped[int | None] = mapped_column(Integer())
    disk_free_bytes: Mapped[int | None] = mapped_column(BigInteger())
    last_board_restart_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # {"at", "command_id", "reason"} of the last command the cabinet rejected.
    last_command_rejected: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # Packs put back on the wrong shelf since the last restock: [{"product_id", "shelf", "at"}].
    misplaced: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    # When a planogram command was last sent because the cabinet lacked the latest version.
    planogram_resent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    cabinet: Mapped[Cabinet] = relationship()


class StockSource(enum.StrEnum):
    RESTOCK = "restock"  # counted by the agent at the end of a restock
    WEIGHT = "weight"  # shelf weight divided by the pack weight (single-product shelves)
    SALE = "sale"  # decreased by a sale


class CabinetStock(Base):
    """Packs of one product on one shelf of a cabinet, as last known."""

    __tablename__ = "cabinet_stock"
    __table_args__ = (CheckConstraint("quantity >= 0", name="quantity_non_negative"),)

    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"), primary_key=True)
    shelf: Mapped[int] = mapped_column(Integer(), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True, index=True)
    quantity: Mapped[int] = mapped_column(Integer())
    source: Mapped[StockSource] = mapped_column(enum_type(StockSource, "stock_source"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- Alerts ---------------------------------------------------------------------------------


class AlertCondition(Base):
    """Hysteresis state of one condition (cabinet, kind, subject), whether or not it alerts."""

    __tablename__ = "alert_conditions"
    __table_args__ = (
        # One row per condition; also serves "conditions of a cabinet".
        UniqueConstraint("cabinet_id", "kind", "subject"),
        # The sweep reads the conditions that wait for a time to pass.
        Index("ix_alert_conditions_active", "active"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"))
    kind: Mapped[AlertKind] = mapped_column(enum_type(AlertKind, "alert_kind"))
    # What the condition is about, e.g. "door:0", "shelf:2", "shelf:2/product:17", or "".
    subject: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean())
    # Server time when the condition became active, or last became clear.
    active_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    clear_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Consecutive observations of the current state.
    observations: Mapped[int] = mapped_column(Integer(), default=0)
    # Cabinet time of the newest observation, so that a late event cannot undo a newer one.
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        # De-duplication: at most one alert per (cabinet, kind, subject) that is not resolved.
        Index(
            "uq_alerts_unresolved",
            "cabinet_id",
            "kind",
            "subject",
            unique=True,
            sqlite_where=text("state <> 'resolved'"),
            postgresql_where=text("state <> 'resolved'"),
        ),
        # The alert list: "WHERE state = ? ORDER BY raised_at DESC".
        Index("ix_alerts_state_raised_at", "state", "raised_at"),
        CheckConstraint("occurrences >= 1", name="occurrences_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # A cabinet's alert history.
    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"), index=True)
    kind: Mapped[AlertKind] = mapped_column(enum_type(AlertKind, "alert_kind"))
    subject: Mapped[str] = mapped_column(String(64))
    state: Mapped[AlertState] = mapped_column(
        enum_type(AlertState, "alert_state"), default=AlertState.OPEN
    )
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # How many times the condition was reported while this alert was not resolved.
    occurrences: Mapped[int] = mapped_column(Integer(), default=1)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A username, or "system:monitor" when the condition cleared by itself.
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(500))

    cabinet: Mapped[Cabinet] = relationship()
