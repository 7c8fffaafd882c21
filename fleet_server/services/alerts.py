"""Fleet alerts: hysteresis on conditions, de-duplication, and the open → resolved lifecycle.

A condition is one (cabinet, kind, subject), such as (AH-10357-0001, scale_fault,
"shelf:2"). Handlers report observations of it, active or clear, and ``observe`` keeps
its hysteresis state in ``alert_conditions``:

    clear --observed active--> active --persisted raise_after_s and raise_after_count--> alert
    active --observed clear--> clearing --clear for clear_after_s--> alert resolved itself
    clearing --observed active again--> active (the open alert stays open)

An observation marked ``immediate`` (a board event that already debounced the fault)
raises at once. At most one alert per (cabinet, kind, subject) is not resolved, which a
partial unique index enforces: a repeated report bumps ``occurrences`` of that alert.
Alerts move open → acknowledged → resolved, or open → resolved; people acknowledge and
resolve through the API (audit-logged), and conditions resolve their own alerts.

``sweep`` applies the time-based steps when no new observation arrives.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from fleet_server.models import (
    Alert,
    AlertCondition,
    AlertKind,
    AlertState,
    Building,
    Cabinet,
    Placement,
)
from fleet_server.models.base import utc_now
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import ConflictError, NotFoundError, ServiceError
from fleet_server.services.pagination import PageResult, fetch_page

logger = logging.getLogger(__name__)

SYSTEM_RESOLVER = "system:monitor"


@dataclass(frozen=True)
class AlertPolicy:
    """When a condition raises its alert and when the alert resolves itself.

    The condition must persist for ``raise_after_s`` seconds and ``raise_after_count``
    consecutive observations. With ``auto_resolve`` False only a person resolves it.
    """

    raise_after_s: float = 0.0
    raise_after_count: int = 1
    clear_after_s: float = 0.0
    auto_resolve: bool = True


class AlertNotFoundError(NotFoundError):
    def __init__(self, alert_id: int) -> None:
        ServiceError.__init__(
            self,
            code="alert_not_found",
            message=f"告警不存在：{alert_id}",
            message_en=f"Alert not found: {alert_id}",
        )


class AlertStateError(ConflictError):
    """The requested transition is not allowed from the alert's current state."""

    def __init__(self, alert_id: int, state: AlertState, action: str) -> None:
        state_zh = STATE_NAMES[state]
        action_zh = {"acknowledge": "确认", "resolve": "关闭"}[action]
        ServiceError.__init__(
            self,
            code="alert_state_invalid",
            message=f"告警 {alert_id} 当前为“{state_zh}”，不能{action_zh}",
            message_en=f"Alert {alert_id} is {state.value} and cannot be {action}d",
        )


STATE_NAMES = {
    AlertState.OPEN: "未处理",
    AlertState.ACKNOWLEDGED: "已确认",
    AlertState.RESOLVED: "已关闭",
}


# --- Subjects and titles --------------------------------------------------------------------


def door_subject(door: int) -> str:
    return f"door:{door}"


def shelf_subject(shelf: int) -> str:
    return f"shelf:{shelf}"


def stock_subject(shelf: int, product_id: int) -> str:
    return f"shelf:{shelf}/product:{product_id}"


def _subject_numbers(subject: str) -> dict[str, str]:
    parts = (part.partition(":") for part in subject.split("/") if part)
    return {name: value for name, _, value in parts}


def alert_title(kind: AlertKind, subject: str, detail: dict[str, Any]) -> tuple[str, str]:
    """Return the alert's one-line description in Chinese and English."""
    numbers = _subject_numbers(subject)
    door = numbers.get("door", "?")
    shelf = numbers.get("shelf", "?")
    product = str(detail.get("product_name") or numbers.get("product", "?"))
    titles = {
        AlertKind.OFFLINE: ("智能专柜离线", "Cabinet offline"),
        AlertKind.DOOR_FORCED: (f"柜门 {door} 被强行打开", f"Door {door} forced open"),
        AlertKind.DOOR_LEFT_OPEN: (f"柜门 {door} 未关闭", f"Door {door} left open"),
        AlertKind.LOCK_FAULT: (f"柜门 {door} 门锁故障", f"Lock of door {door} faulty"),
        AlertKind.SCALE_FAULT: (f"层板 {shelf} 称重故障", f"Scale of shelf {shelf} faulty"),
        AlertKind.LOW_STOCK: (
            f"层板 {shelf} 的 {product} 库存不足",
            f"Low stock of {product} on shelf {shelf}",
        ),
        AlertKind.OUTBOX_BACKLOG: ("待上传消息积压", "Outbox backlog of unacknowledged messages"),
        AlertKind.DISK_FULL: ("存储空间不足", "Disk space low"),
        AlertKind.SERIAL_LINK_DOWN: ("主控板串口通信中断", "Serial link to the cabinet board down"),
    }
    return titles[kind]


# --- Inserts that tolerate a concurrent writer ---------------------------------------------


def _insert(db: Session, row: object) -> bool:
    """Insert ``row`` in a savepoint; return False if a unique key already had a row.

    Another ingest worker may insert the same key between our lookup and our insert; the
    savepoint keeps the caller's transaction usable after the conflict.
    """
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:
        return False
    return True


def _condition(
    db: Session, cabinet_id: int, kind: AlertKind, subject: str
) -> AlertCondition | None:
    return db.scalar(
        select(AlertCondition).where(
            AlertCondition.cabinet_id == cabinet_id,
            AlertCondition.kind == kind,
            AlertCondition.subject == subject,
        )
    )


def unresolved_alert(db: Session, cabinet_id: int, kind: AlertKind, subject: str) -> Alert | None:
    return db.scalar(
        select(Alert).where(
            Alert.cabinet_id == cabinet_id,
            Alert.kind == kind,
            Alert.subject == subject,
            Alert.state != AlertState.RESOLVED,
        )
    )


def raise_alert(
    db: Session,
    *,
    cabinet: Cabinet,
    kind: AlertKind,
    subject: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> Alert:
    """Open an alert, or count another occurrence of the one that is not resolved yet."""
    existing = unresolved_alert(db, cabinet.id, kind, subject)
    if existing is None:
        alert = Alert(
            cabinet_id=cabinet.id,
            kind=kind,
            subject=subject,
            state=AlertState.OPEN,
            raised_at=now,
            last_seen_at=now,
            occurrences=1,
            detail=detail or {},
        )
        if _insert(db, alert):
            logger.warning("alert %s %s raised for %s", kind.value, subject, cabinet.kiosk_id)
            return alert
        existing = unresolved_alert(db, cabinet.id, kind, subject)
        if existing is None:
            raise LookupError(f"alert {kind.value} {subject} of {cabinet.kiosk_id} vanished")
    existing.occurrences += 1
    existing.last_seen_at = now
    if detail:
        existing.detail = {**existing.detail, **detail}
    return existing


def _auto_resolve(alert: Alert, now: datetime, kiosk_id: str) -> None:
    alert.state = AlertState.RESOLVED
    alert.resolved_at = now
    alert.resolved_by = SYSTEM_RESOLVER
    logger.info("alert %s %s of %s resolved itself", alert.kind.value, alert.subject, kiosk_id)


def _step(
    db: Session, condition: AlertCondition, cabinet: Cabinet, policy: AlertPolicy, now: datetime
) -> None:
    """Raise or resolve the condition's alert if its time or count has come."""
    alert = unresolved_alert(db, condition.cabinet_id, condition.kind, condition.subject)
    if condition.active:
        if alert is not None or condition.active_since is None:
            return
        persisted_s = (now - condition.active_since).total_seconds()
        if (
            persisted_s >= policy.raise_after_s
            and condition.observations >= policy.raise_after_count
        ):
            raise_alert(
                db,
                cabinet=cabinet,
                kind=condition.kind,
                subject=condition.subject,
                now=now,
                detail=condition.detail,
            )
        return

    if alert is None:
        # Nothing left to track: a clear condition without an alert is forgotten.
        db.delete(condition)
        return
    if not policy.auto_resolve or condition.clear_since is None:
        return
    if (now - condition.clear_since).total_seconds() >= policy.clear_after_s:
        _auto_resolve(alert, now, cabinet.kiosk_id)
        db.delete(condition)


def observe(
    db: Session,
    *,
    cabinet: Cabinet,
    kind: AlertKind,
    subject: str,
    active: bool,
    now: datetime,
    policy: AlertPolicy,
    observed_at: datetime | None = None,
    started_at: datetime | None = None,
    immediate: bool = False,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record one observation of a condition and raise or resolve its alert when due.

    ``now`` is the server's time, which all durations use. ``observed_at`` is when the
    cabinet saw it; an observation older than the newest one recorded is ignored, so a
    late event cannot undo newer telemetry. ``started_at`` backdates the start of an
    active condition, such as the last heartbeat of a cabinet found offline.
    """
    condition = _condition(db, cabinet.id, kind, subject)
    if condition is None:
        if not active:
            alert = unresolved_alert(db, cabinet.id, kind, subject)
            if alert is not None and policy.auto_resolve and policy.clear_after_s <= 0:
                _auto_resolve(alert, now, cabinet.kiosk_id)
            elif alert is not None and policy.auto_resolve:
                # An alert without a condition row (raised before a manual resolve reset
                # it): start timing the clear period now.
                db.add(
                    AlertCondition(
                        cabinet_id=cabinet.id,
                        kind=kind,
                        subject=subject,
                        active=False,
                        clear_since=now,
                        observations=1,
                        observed_at=observed_at,
                        detail={},
                    )
                )
            return
        fresh = AlertCondition(
            cabinet_id=cabinet.id,
            kind=kind,
            subject=subject,
            active=False,
            observations=0,
            detail={},
        )
        condition = fresh if _insert(db, fresh) else _condition(db, cabinet.id, kind, subject)
        if condition is None:
            raise LookupError(f"condition {kind.value} {subject} of {cabinet.kiosk_id} vanished")

    if observed_at is not None:
        if condition.observed_at is not None and observed_at < condition.observed_at:
            logger.debug(
                "stale %s observation of %s %s ignored", kind.value, cabinet.kiosk_id, subject
            )
            return
        condition.observed_at = observed_at

    if active:
        started = not condition.active
        if started:
            condition.active = True
            condition.active_since = started_at or now
            condition.clear_since = None
            condition.observations = 0
        condition.observations += 1
        if detail:
            condition.detail = {**condition.detail, **detail}
        alert = unresolved_alert(db, cabinet.id, kind, subject)
        if alert is not None:
            # The alert is still open: a new start or a new event is another occurrence.
            if started or immediate:
                alert.occurrences += 1
                alert.last_seen_at = now
                if detail:
                    alert.detail = {**alert.detail, **detail}
            db.flush()
            return
        if immediate:
            raise_alert(db, cabinet=cabinet, kind=kind, subject=subject, now=now, detail=detail)
            return
    else:
        if condition.active:
            condition.active = False
            condition.clear_since = now
            condition.observations = 0
        condition.observations += 1
    db.flush()
    _step(db, condition, cabinet, policy, now)


def sweep_conditions(
    db: Session, *, now: datetime, policy_for: Callable[[AlertKind], AlertPolicy]
) -> None:
    """Raise and resolve the alerts whose waiting time has passed without new observations."""
    rows = db.execute(
        select(AlertCondition, Cabinet)
        .join(Cabinet, AlertCondition.cabinet_id == Cabinet.id)
        .order_by(AlertCondition.id)
    ).all()
    for condition, cabinet in rows:
        _step(db, condition, cabinet, policy_for(condition.kind), now)
    db.flush()


# --- People: list, acknowledge, resolve -----------------------------------------------------


def _visible_alerts(actor: Actor) -> Select[Alert]:
    return (
        select(Alert)
        .join(Cabinet, Alert.cabinet_id == Cabinet.id)
        .where(actor.visible_cabinets())
        .options(joinedload(Alert.cabinet))
    )


def list_alerts(
    session: Session,
    *,
    actor: Actor,
    limit: int,
    offset: int,
    state: AlertState | None = None,
    unresolved: bool = False,
    kind: AlertKind | None = None,
    kiosk_id: str | None = None,
    school_id: int | None = None,
    operator_id: int | None = None,
) -> PageResult[Alert]:
    """List the alerts of the cabinets the caller may see, newest first."""
    statement = _visible_alerts(actor).order_by(Alert.raised_at.desc(), Alert.id.desc())
    if state is not None:
        statement = statement.where(Alert.state == state)
    if unresolved:
        statement = statement.where(Alert.state != AlertState.RESOLVED)
    if kind is not None:
        statement = statement.where(Alert.kind == kind)
    if kiosk_id is not None:
        statement = statement.where(Cabinet.kiosk_id == kiosk_id)
    if operator_id is not None:
        statement = statement.where(Cabinet.operator_id == operator_id)
    if school_id is not None:
        statement = statement.where(
            Cabinet.placement_id.in_(
                select(Placement.id)
                .join(Building, Placement.building_id == Building.id)
                .where(Building.school_id == school_id)
            )
        )
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_alert(session: Session, *, actor: Actor, alert_id: int) -> Alert:
    alert = session.scalar(_visible_alerts(actor).where(Alert.id == alert_id))
    if alert is None:
        raise AlertNotFoundError(alert_id)
    return alert


def acknowledge_alert(
    session: Session, *, actor: Actor, alert_id: int, note: str | None = None
) -> Alert:
    """Mark an open alert as being handled. The caller commits."""
    alert = get_alert(session, actor=actor, alert_id=alert_id)
    if alert.state is not AlertState.OPEN:
        raise AlertStateError(alert.id, alert.state, "acknowledge")
    now = utc_now()
    alert.state = AlertState.ACKNOWLEDGED
    alert.acknowledged_at = now
    alert.acknowledged_by = actor.label
    if note:
        alert.note = note
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="alert.acknowledge",
        object_type="alert",
        object_id=alert.id,
        before={"state": AlertState.OPEN},
        after={"state": alert.state, "note": note},
    )
    return alert


def resolve_alert(
    session: Session, *, actor: Actor, alert_id: int, note: str | None = None
) -> Alert:
    """Close an alert by hand. The caller commits.

    If its condition is still active, the condition starts timing anew, so the alert is
    raised again only after the condition persists for another raise period.
    """
    alert = get_alert(session, actor=actor, alert_id=alert_id)
    if alert.state is AlertState.RESOLVED:
        raise AlertStateError(alert.id, alert.state, "resolve")
    before = alert.state
    now = utc_now()
    alert.state = AlertState.RESOLVED
    alert.resolved_at = now
    alert.resolved_by = actor.label
    if note:
        alert.note = note
    condition = _condition(session, alert.cabinet_id, alert.kind, alert.subject)
    if condition is not None:
        if condition.active:
            condition.active_since = now
            condition.observations = 0
        else:
            session.delete(condition)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="alert.resolve",
        object_type="alert",
        object_id=alert.id,
        before={"state": before},
        after={"state": alert.state, "note": note},
    )
    return alert


def open_alert_counts(session: Session, cabinet_ids: list[int]) -> dict[int, int]:
    """Return the number of unresolved alerts per cabinet id."""
    if not cabinet_ids:
        return {}
    rows = session.execute(
        select(Alert.cabinet_id, func.count())
        .where(Alert.cabinet_id.in_(cabinet_ids), Alert.state != AlertState.RESOLVED)
        .group_by(Alert.cabinet_id)
    ).all()
    return {int(cabinet_id): int(count) for cabinet_id, count in rows}
