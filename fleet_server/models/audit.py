"""Append-only audit log of changes to money, reports and the registry."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models.base import Base, BigIntId, JSONDocument, UTCDateTime, utc_now


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        # History of one object: "WHERE object_type = ? AND object_id = ? ORDER BY at".
        Index("ix_audit_log_object", "object_type", "object_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # None for actions of the system itself (seed, migrations, ingest).
    # Lists what one user did: "WHERE actor_user_id = ? ORDER BY at".
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # Who acted, as shown in the log: a username, or "system:seed" and the like.
    actor_label: Mapped[str] = mapped_column(String(100))
    # Dotted verb such as "product.update" or "report.submit".
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
