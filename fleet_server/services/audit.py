"""Audit log entries for changes that money, reports or the registry depend on."""

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import AuditEntry
from fleet_server.services.access import Actor

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]


def to_json_value(value: object) -> JsonValue:
    """Convert a column value to JSON: dates and datetimes as ISO 8601, enums as their value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return to_json_value(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    raise TypeError(f"cannot record a value of type {type(value).__name__} in the audit log")


def snapshot(obj: object, fields: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return the named attributes of ``obj`` as a JSON-ready dict, for ``before``/``after``."""
    return {field: to_json_value(getattr(obj, field)) for field in fields}


def record_audit(
    session: Session,
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to the session, to be committed with the change it describes.

    ``action`` is a dotted verb such as "product.update". ``before`` and ``after`` contain
    the changed fields only (see ``snapshot``), or None for a creation or deletion.
    """
    entry = AuditEntry(
        actor_user_id=actor.user_id,
        actor_label=actor.label,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        before=None if before is None else {k: to_json_value(v) for k, v in before.items()},
        after=None if after is None else {k: to_json_value(v) for k, v in after.items()},
    )
    session.add(entry)
    return entry


def list_audit_entries(
    session: Session, *, object_type: str, object_id: object
) -> list[AuditEntry]:
    """Return the history of one object, oldest first."""
    statement = (
        select(AuditEntry)
        .where(AuditEntry.object_type == object_type, AuditEntry.object_id == str(object_id))
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    return list(session.scalars(statement))
