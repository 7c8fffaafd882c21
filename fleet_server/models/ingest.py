"""Cabinet events as ingest stored them, and the messages ingest could not accept."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models.base import Base, BigIntId, JSONDocument, UTCDateTime

# Bytes of a rejected payload kept in the dead-letter table.
DEAD_LETTER_EXCERPT_BYTES = 2048


class KioskEventRecord(Base):
    """One ``kiosk_agent.contract.KioskEvent``. (kiosk_id, event_id) is unique."""

    __tablename__ = "kiosk_events"
    __table_args__ = (
        # De-duplication key of ingest.
        UniqueConstraint("kiosk_id", "event_id"),
        # A cabinet's event history: "WHERE cabinet_id = ? ORDER BY at DESC".
        Index("ix_kiosk_events_cabinet_id_at", "cabinet_id", "at"),
        # Events of one purchase session (session_state, command_rejected).
        Index("ix_kiosk_events_session_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[uuid.UUID]
    cabinet_id: Mapped[int] = mapped_column(ForeignKey("cabinets.id"))
    # kiosk_agent.contract.EventType value. Plain text, so a newer agent's type is stored.
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    session_id: Mapped[uuid.UUID | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    # [{"shelf", "product_id", "quantity"}, ...] on restock events, else None.
    stock: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDocument)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeadLetter(Base):
    """An MQTT message that ingest rejected: malformed, mismatched or from an unknown cabinet.

    Rejected messages are not acknowledged, so a cabinet that keeps sending one adds a row
    each time it retries.
    """

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(256))
    # The kiosk id from the topic, or None when the topic has none.
    kiosk_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))
    # The first DEAD_LETTER_EXCERPT_BYTES bytes, decoded as UTF-8 with replacement characters.
    payload_excerpt: Mapped[str] = mapped_column(Text())
    payload_bytes: Mapped[int] = mapped_column(Integer())
    # Lists the newest rejections first: "ORDER BY received_at DESC".
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
