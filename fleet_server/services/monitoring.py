"""Handlers of cabinet status, telemetry and events: live cabinet state, stock and alerts.

Each handler works inside the caller's transaction and never commits, so the MQTT
subscriber and the ingest workers decide when to commit. Every duration is measured with
the server's receive time ``received_at``. Cabinet timestamps only order the observations
of one cabinet, because the cabinet's clock may differ from the server's.

Online or offline. A retained ``online`` status makes a cabinet online and its last will
(``offline`` with ``since`` None) or a goodbye status makes it offline. Telemetry also
proves a cabinet alive, and ``sweep`` marks a cabinet offline when neither telemetry nor
status arrived for ``offline_after_heartbeats`` heartbeat intervals.

Stock. A restock event sets every shelf's stock. Sales decrease it
(``apply_sales_to_stock``, called by sales ingest for each batch). On a shelf with a
single product, an idle cabinet's stable shelf weight divided by the pack weight replaces
the count.
"""

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.core.config import ServerSettings
from fleet_server.messaging.publisher import CommandPublisher, PublishError
from fleet_server.models import (
    Alert,
    AlertCondition,
    AlertKind,
    AlertState,
    Cabinet,
    CabinetServiceStatus,
    CabinetState,
    CabinetStock,
    ConnectionState,
    OfflineReason,
    Planogram,
    Product,
    StockSource,
)
from fleet_server.models.base import utc_now
from fleet_server.services.alerts import (
    AlertPolicy,
    door_subject,
    observe,
    raise_alert,
    shelf_subject,
    stock_subject,
    sweep_conditions,
)
from fleet_server.services.planograms import (
    latest_planogram,
    latest_planograms,
    parse_planogram_product_id,
    resend_planogram,
)
from fleet_server.services.sql import matches_any
from kiosk_agent.contract import (
    DoorPosition,
    EventType,
    KioskEvent,
    KioskState,
    KioskStatus,
    LockState,
    SaleRecord,
    SerialLinkState,
    Telemetry,
)

logger = logging.getLogger(__name__)

# Session state in which the agent reports shelf weights that are safe to count.
IDLE_SESSION_STATE = "idle"
# Misplaced packs remembered per cabinet until the next restock.
MAX_MISPLACED_ENTRIES = 100


@dataclass(frozen=True)
class MonitoringPolicy:
    """Thresholds of the monitoring handlers, from ``ServerSettings``."""

    offline_after_s: float
    low_stock_fraction: float
    backlog_alert_messages: int
    backlog_alert_age_s: float
    disk_free_alert_bytes: int
    planogram_resend_interval_s: float
    alerts: dict[AlertKind, AlertPolicy] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> "MonitoringPolicy":
        condition = AlertPolicy(
            raise_after_s=settings.alert_raise_after_s,
            raise_after_count=settings.alert_raise_after_count,
            clear_after_s=settings.alert_clear_after_s,
        )
        # Faults that the board reports itself raise at once through their events; their
        # telemetry only keeps the condition current.
        fault = AlertPolicy(clear_after_s=settings.alert_clear_after_s)
        return cls(
            offline_after_s=settings.offline_after_s,
            low_stock_fraction=settings.low_stock_fraction,
            backlog_alert_messages=settings.backlog_alert_messages,
            backlog_alert_age_s=settings.backlog_alert_age_s,
            disk_free_alert_bytes=settings.disk_free_alert_bytes,
            planogram_resend_interval_s=settings.planogram_resend_interval_s,
            alerts={
                AlertKind.OFFLINE: AlertPolicy(
                    raise_after_s=settings.offline_alert_after_s,
                    clear_after_s=settings.alert_clear_after_s,
                ),
                AlertKind.DOOR_FORCED: AlertPolicy(auto_resolve=False),
                AlertKind.DOOR_LEFT_OPEN: fault,
                AlertKind.LOCK_FAULT: condition,
                AlertKind.SCALE_FAULT: condition,
                AlertKind.LOW_STOCK: condition,
                AlertKind.OUTBOX_BACKLOG: condition,
                AlertKind.DISK_FULL: condition,
                AlertKind.SERIAL_LINK_DOWN: condition,
            },
        )

    @classmethod
    def default(cls) -> "MonitoringPolicy":
        """Return the policy of the default settings, without reading the environment."""
        return cls.from_settings(ServerSettings.model_construct())

    def for_kind(self, kind: AlertKind) -> AlertPolicy:
        return self.alerts[kind]


# --- Shared steps ---------------------------------------------------------------------------


def cabinet_by_kiosk_id(db: Session, kiosk_id: str) -> Cabinet | None:
    return db.scalar(select(Cabinet).where(Cabinet.kiosk_id == kiosk_id))


def _state(
    db: Session,
    cabinet: Cabinet,
    since: datetime,
    connection: ConnectionState = ConnectionState.ONLINE,
) -> CabinetState:
    """Return the cabinet's state row, creating it in ``connection`` state from ``since``.

    A new row defaults to online, because the cabinet has just sent something.
    """
    state = db.get(CabinetState, cabinet.id)
    if state is not None:
        return state
    state = CabinetState(
        cabinet_id=cabinet.id,
        connection=connection,
        connection_since=since,
        doors=[],
        shelves=[],
        misplaced=[],
        backlog_sales=0,
        backlog_events=0,
    )
    try:
        with db.begin_nested():
            db.add(state)
            db.flush()
    except IntegrityError:
        # Another worker created it between our lookup and our insert.
        existing = db.get(CabinetState, cabinet.id)
        if existing is None:
            raise
        return existing
    return state


def _set_connection(
    cabinet: Cabinet,
    state: CabinetState,
    connection: ConnectionState,
    *,
    since: datetime,
    reason: OfflineReason | None,
) -> bool:
    """Change the connection state; return whether it changed."""
    changed = state.connection is not connection
    if changed:
        state.connection = connection
        state.connection_since = since
        logger.info(
            "cabinet %s is %s (%s)",
            cabinet.kiosk_id,
            connection.value,
            reason.value if reason else "status",
        )
    state.offline_reason = reason
    cabinet.online = connection is ConnectionState.ONLINE
    return changed


def _alerts_suppressed(cabinet: Cabinet) -> bool:
    return cabinet.service_status is CabinetServiceStatus.RETIRED


def _observe(
    db: Session,
    cabinet: Cabinet,
    policy: MonitoringPolicy,
    kind: AlertKind,
    subject: str,
    *,
    active: bool,
    now: datetime,
    observed_at: datetime | None = None,
    started_at: datetime | None = None,
    immediate: bool = False,
    detail: dict[str, Any] | None = None,
) -> None:
    if active and _alerts_suppressed(cabinet):
        return
    observe(
        db,
        cabinet=cabinet,
        kind=kind,
        subject=subject,
        active=active,
        now=now,
        policy=policy.for_kind(kind),
        observed_at=observed_at,
        started_at=started_at,
        immediate=immediate,
        detail=detail,
    )


def _try_resend(
    db: Session,
    publisher: CommandPublisher,
    cabinet: Cabinet,
    state: CabinetState,
    now: datetime,
) -> None:
    try:
        if resend_planogram(db, publisher, cabinet, now=now) is not None:
            state.planogram_resent_at = now
    except PublishError as error:
        logger.warning("planogram for %s not sent again: %s", cabinet.kiosk_id, error)


# --- Status ---------------------------------------------------------------------------------


def handle_status(
    db: Session,
    status: KioskStatus,
    *,
    received_at: datetime | None = None,
    policy: MonitoringPolicy | None = None,
    publisher: CommandPublisher | None = None,
) -> None:
    """Apply a status message: online, offline by last will, or offline by goodbye."""
    now = received_at or utc_now()
    policy = policy or MonitoringPolicy.default()
    cabinet = cabinet_by_kiosk_id(db, status.kiosk_id)
    if cabinet is None:
        logger.warning("status of unknown cabinet %s ignored", status.kiosk_id)
        return
    connection = (
        ConnectionState.ONLINE if status.state is KioskState.ONLINE else ConnectionState.OFFLINE
    )
    state = _state(db, cabinet, status.since or now, connection)
    if (
        status.since is not None
        and state.status_reported_at is not None
        and status.since < state.status_reported_at
    ):
        logger.debug("older status of %s ignored", cabinet.kiosk_id)
        return
    if status.since is not None:
        state.status_reported_at = status.since
    state.agent_version = status.agent_version
    since = status.since or now

    if status.state is KioskState.ONLINE:
        state.last_seen_at = now
        cabinet.last_seen_at = now
        _set_connection(cabinet, state, ConnectionState.ONLINE, since=since, reason=None)
        _observe(db, cabinet, policy, AlertKind.OFFLINE, "", active=False, now=now)
        if publisher is not None:
            latest = latest_planogram(db, cabinet.id)
            if latest is not None and state.planogram_version != latest.version:
                _try_resend(db, publisher, cabinet, state, now)
    else:
        reason = OfflineReason.LAST_WILL if status.since is None else OfflineReason.DISCONNECTED
        _set_connection(cabinet, state, ConnectionState.OFFLINE, since=since, reason=reason)
        _observe(
            db,
            cabinet,
            policy,
            AlertKind.OFFLINE,
            "",
            active=True,
            now=now,
            started_at=min(since, now),
            detail={"reason": reason.value},
        )
    db.flush()


# --- Telemetry ------------------------------------------------------------------------------


def handle_telemetry(
    db: Session,
    telemetry: Telemetry,
    *,
    received_at: datetime | None = None,
    policy: MonitoringPolicy | None = None,
    publisher: CommandPublisher | None = None,
) -> None:
    """Apply a heartbeat: record doors, scales, outbox and versions, and check conditions."""
    now = received_at or utc_now()
    policy = policy or MonitoringPolicy.default()
    cabinet = cabinet_by_kiosk_id(db, telemetry.kiosk_id)
    if cabinet is None:
        logger.warning("telemetry of unknown cabinet %s ignored", telemetry.kiosk_id)
        return
    state = _state(db, cabinet, now)
    if state.telemetry_reported_at is not None and telemetry.sent_at <= state.telemetry_reported_at:
        logger.debug("older telemetry of %s ignored", cabinet.kiosk_id)
        return

    state.last_seen_at = now
    state.last_telemetry_at = now
    state.telemetry_reported_at = telemetry.sent_at
    cabinet.last_seen_at = now
    state.agent_version = telemetry.agent_version
    if telemetry.firmware_version is not None:
        state.firmware_version = telemetry.firmware_version
        cabinet.firmware_version = telemetry.firmware_version
    state.doors = [door.model_dump(mode="json") for door in telemetry.doors]
    state.shelves = [shelf.model_dump(mode="json") for shelf in telemetry.shelves]
    state.backlog_sales = telemetry.backlog.sales
    state.backlog_events = telemetry.backlog.events
    state.backlog_oldest_reported_at = telemetry.backlog.oldest_created_at
    state.serial_link_up = telemetry.serial_link is SerialLinkState.UP
    state.session_state = telemetry.session_state
    state.planogram_version = telemetry.planogram_version
    state.disk_free_bytes = telemetry.disk_free_bytes

    # Telemetry proves that the cabinet is connected, whatever made it count as offline.
    _set_connection(cabinet, state, ConnectionState.ONLINE, since=now, reason=None)
    _observe(db, cabinet, policy, AlertKind.OFFLINE, "", active=False, now=now)

    sent_at = telemetry.sent_at
    for door in telemetry.doors:
        _observe(
            db,
            cabinet,
            policy,
            AlertKind.LOCK_FAULT,
            door_subject(door.door),
            active=door.lock is LockState.FAULT,
            now=now,
            observed_at=sent_at,
        )
        if door.position is DoorPosition.CLOSED:
            _observe(
                db,
                cabinet,
                policy,
                AlertKind.DOOR_LEFT_OPEN,
                door_subject(door.door),
                active=False,
                now=now,
                observed_at=sent_at,
            )
    for shelf in telemetry.shelves:
        _observe(
            db,
            cabinet,
            policy,
            AlertKind.SCALE_FAULT,
            shelf_subject(shelf.shelf),
            active=shelf.fault,
            now=now,
            observed_at=sent_at,
        )
    _observe(
        db,
        cabinet,
        policy,
        AlertKind.SERIAL_LINK_DOWN,
        "",
        active=telemetry.serial_link is SerialLinkState.DOWN,
        now=now,
        observed_at=sent_at,
    )
    backlog = telemetry.backlog
    waiting = backlog.sales + backlog.events
    oldest_age_s = (
        (sent_at - backlog.oldest_created_at).total_seconds()
        if backlog.oldest_created_at is not None
        else 0.0
    )
    _observe(
        db,
        cabinet,
        policy,
        AlertKind.OUTBOX_BACKLOG,
        "",
        active=waiting >= policy.backlog_alert_messages
        or oldest_age_s >= policy.backlog_alert_age_s,
        now=now,
        observed_at=sent_at,
        detail={"messages": waiting, "oldest_age_s": int(oldest_age_s)},
    )
    _observe(
        db,
        cabinet,
        policy,
        AlertKind.DISK_FULL,
        "",
        active=telemetry.disk_free_bytes < policy.disk_free_alert_bytes,
        now=now,
        observed_at=sent_at,
        detail={"disk_free_bytes": telemetry.disk_free_bytes},
    )

    latest = latest_planogram(db, cabinet.id)
    if latest is not None:
        _note_planogram_version(db, cabinet, telemetry, latest, now)
        if telemetry.planogram_version == latest.version:
            _count_stock_by_weight(db, cabinet, telemetry, latest, now)
        elif publisher is not None and _resend_due(state, latest, now, policy):
            _try_resend(db, publisher, cabinet, state, now)
        evaluate_stock(db, cabinet, policy=policy, now=now, planogram=latest)
    db.flush()


def _note_planogram_version(
    db: Session, cabinet: Cabinet, telemetry: Telemetry, latest: Planogram, now: datetime
) -> None:
    if telemetry.planogram_version is None:
        return
    applied: Planogram | None = latest
    if telemetry.planogram_version != latest.version:
        applied = db.scalar(
            select(Planogram).where(
                Planogram.cabinet_id == cabinet.id,
                Planogram.version == telemetry.planogram_version,
            )
        )
    if applied is not None and applied.applied_at is None:
        applied.applied_at = now


def _resend_due(
    state: CabinetState, latest: Planogram, now: datetime, policy: MonitoringPolicy
) -> bool:
    """Return whether a cabinet that lacks the latest version should get it again now."""
    interval = timedelta(seconds=policy.planogram_resend_interval_s)
    for sent in (latest.published_at, state.planogram_resent_at):
        if sent is not None and now - sent < interval:
            return False
    return True


def _count_stock_by_weight(
    db: Session, cabinet: Cabinet, telemetry: Telemetry, planogram: Planogram, now: datetime
) -> None:
    if telemetry.session_state != IDLE_SESSION_STATE:
        return
    readings = {shelf.shelf: shelf for shelf in telemetry.shelves}
    for shelf in planogram.shelves:
        reading = readings.get(shelf.shelf)
        if len(shelf.lines) != 1 or reading is None or not reading.stable or reading.fault:
            continue
        line = shelf.lines[0]
        quantity = max(round(reading.weight_mg / line.unit_weight_mg), 0)
        _set_stock(db, cabinet.id, shelf.shelf, line.product_id, quantity, StockSource.WEIGHT, now)


def _set_stock(
    db: Session,
    cabinet_id: int,
    shelf: int,
    product_id: int,
    quantity: int,
    source: StockSource,
    now: datetime,
) -> None:
    row = db.get(CabinetStock, (cabinet_id, shelf, product_id))
    if row is None:
        db.add(
            CabinetStock(
                cabinet_id=cabinet_id,
                shelf=shelf,
                product_id=product_id,
                quantity=quantity,
                source=source,
                updated_at=now,
            )
        )
        return
    if row.quantity != quantity or row.source is not source:
        row.quantity = quantity
        row.source = source
        row.updated_at = now


# --- Stock ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShelfShare:
    """A product's share of its shelf, the number of packs a full restock puts there."""

    shelf: int
    product_id: int
    product_name: str
    target: int


def shelf_shares(planogram: Planogram) -> list[ShelfShare]:
    """Split each shelf's capacity evenly between its products, in planogram order.

    NOTE: the planogram records one capacity per shelf, so products that share a shelf
    are assumed to share it evenly. The first products get the remainder.
    """
    shares = []
    for shelf in planogram.shelves:
        count = len(shelf.lines)
        base, remainder = divmod(shelf.capacity_items, count)
        for index, line in enumerate(shelf.lines):
            shares.append(
                ShelfShare(
                    shelf=shelf.shelf,
                    product_id=line.product_id,
                    product_name=line.product.name,
                    target=base + (1 if index < remainder else 0),
                )
            )
    return shares


def low_stock_threshold(target: int, fraction: float) -> float:
    return target * fraction


def evaluate_stock(
    db: Session,
    cabinet: Cabinet,
    *,
    policy: MonitoringPolicy,
    now: datetime,
    planogram: Planogram | None = None,
) -> None:
    """Observe the low_stock condition of every product on the cabinet's latest planogram."""
    planograms = {cabinet.id: planogram} if planogram is not None else None
    evaluate_stocks(db, [cabinet], policy=policy, now={cabinet.id: now}, planograms=planograms)


def evaluate_stocks(
    db: Session,
    cabinets: Sequence[Cabinet],
    *,
    policy: MonitoringPolicy,
    now: Mapping[int, datetime],
    planograms: Mapping[int, Planogram | None] | None = None,
) -> None:
    """Observe low_stock on several cabinets, each at its own ``now`` (cabinet id -> time).

    The planograms, stock, conditions and open alerts of all cabinets are read in a few
    queries. A product that is not low and has neither a condition row nor an open alert
    is skipped, which is what observing it would do.
    """
    if not cabinets:
        return
    ids = [cabinet.id for cabinet in cabinets]
    if planograms is None:
        planograms = latest_planograms(db, ids)
    stock = {
        (row.cabinet_id, row.shelf, row.product_id): row.quantity
        for row in db.scalars(
            select(CabinetStock).where(matches_any(db, CabinetStock.cabinet_id, ids))
        )
    }
    conditions = {
        (cabinet_id, subject)
        for cabinet_id, subject in db.execute(
            select(AlertCondition.cabinet_id, AlertCondition.subject).where(
                matches_any(db, AlertCondition.cabinet_id, ids),
                AlertCondition.kind == AlertKind.LOW_STOCK,
            )
        )
    }
    open_alerts = {
        (cabinet_id, subject)
        for cabinet_id, subject in db.execute(
            select(Alert.cabinet_id, Alert.subject).where(
                matches_any(db, Alert.cabinet_id, ids),
                Alert.kind == AlertKind.LOW_STOCK,
                Alert.state != AlertState.RESOLVED,
            )
        )
    }
    for cabinet in cabinets:
        planogram = planograms.get(cabinet.id)
        current: set[str] = set()
        for share in shelf_shares(planogram) if planogram is not None else []:
            quantity = stock.get((cabinet.id, share.shelf, share.product_id))
            if quantity is None:
                continue
            subject = stock_subject(share.shelf, share.product_id)
            current.add(subject)
            active = quantity < low_stock_threshold(share.target, policy.low_stock_fraction)
            known = (cabinet.id, subject) in conditions or (cabinet.id, subject) in open_alerts
            if not active and not known:
                continue
            _observe(
                db,
                cabinet,
                policy,
                AlertKind.LOW_STOCK,
                subject,
                active=active,
                now=now[cabinet.id],
                detail={
                    "shelf": share.shelf,
                    "product_id": share.product_id,
                    "product_name": share.product_name,
                    "quantity": quantity,
                    "target": share.target,
                },
            )
        # Products taken off the planogram no longer need stock.
        stale = sorted(
            subject
            for cabinet_id, subject in conditions
            if cabinet_id == cabinet.id and subject not in current
        )
        for subject in stale:
            _observe(
                db, cabinet, policy, AlertKind.LOW_STOCK, subject, active=False, now=now[cabinet.id]
            )


def apply_sales_to_stock(
    db: Session,
    sales: Sequence[tuple[SaleRecord, datetime]],
    *,
    policy: MonitoringPolicy | None = None,
) -> None:
    """Take new sales' packs off the stock and observe low stock on the cabinets that changed.

    Sales ingest calls it once per batch with each sale's receive time. Each cabinet's
    stock is observed once, at the receive time of its last sale in the batch.
    """
    policy = policy or MonitoringPolicy.default()
    taken: dict[tuple[str, int, int], int] = defaultdict(int)
    last_received: dict[str, datetime] = {}
    for sale, received_at in sales:
        previous = last_received.get(sale.kiosk_id, received_at)
        last_received[sale.kiosk_id] = max(received_at, previous)
        for line in sale.lines:
            product_id = parse_planogram_product_id(line.product_id)
            if product_id is not None:
                taken[(sale.kiosk_id, line.shelf, product_id)] += line.quantity
    if not taken:
        return

    kiosk_ids = {kiosk_id for kiosk_id, _, _ in taken}
    changed: dict[int, datetime] = {}
    # On PostgreSQL the rows are locked in key order, so two workers whose batches share a
    # cabinet take turns instead of both subtracting from the same old count, and cannot
    # deadlock on them. SQLite has a single writer anyway.
    rows = db.execute(
        select(CabinetStock, Cabinet.kiosk_id)
        .join(Cabinet, Cabinet.id == CabinetStock.cabinet_id)
        .where(matches_any(db, Cabinet.kiosk_id, kiosk_ids))
        .order_by(CabinetStock.cabinet_id, CabinetStock.shelf, CabinetStock.product_id)
        .with_for_update(of=CabinetStock)
    )
    for row, kiosk_id in rows:
        quantity = taken.get((kiosk_id, row.shelf, row.product_id))
        if quantity:
            row.quantity = max(row.quantity - quantity, 0)
            row.source = StockSource.SALE
            row.updated_at = last_received[kiosk_id]
            changed[row.cabinet_id] = last_received[kiosk_id]
    if not changed:
        return
    db.flush()
    cabinets = db.scalars(
        select(Cabinet).where(matches_any(db, Cabinet.id, changed)).order_by(Cabinet.id)
    ).all()
    evaluate_stocks(db, cabinets, policy=policy, now=changed)


def _apply_restock(
    db: Session, cabinet: Cabinet, state: CabinetState, event: KioskEvent, now: datetime
) -> None:
    for row in db.scalars(select(CabinetStock).where(CabinetStock.cabinet_id == cabinet.id)):
        db.delete(row)
    db.flush()
    lines = event.stock or []
    named = {parse_planogram_product_id(line.product_id) for line in lines} - {None}
    # A line naming no catalog product would fail the stock table's foreign key and, with
    # it, the whole restock. The other lines still count.
    known = set(db.scalars(select(Product.id).where(Product.id.in_(named)))) if named else set()
    for line in lines:
        product_id = parse_planogram_product_id(line.product_id)
        if product_id not in known:
            logger.warning(
                "restock event %s of %s names product %r, which is not in the catalog; "
                "that line is skipped",
                event.event_id,
                cabinet.kiosk_id,
                line.product_id,
            )
            continue
        _set_stock(db, cabinet.id, line.shelf, product_id, line.quantity, StockSource.RESTOCK, now)
    state.misplaced = []
    db.flush()


# --- Events ---------------------------------------------------------------------------------


def _detail_int(event: KioskEvent, name: str) -> int | None:
    value = event.detail.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def handle_event(
    db: Session,
    event: KioskEvent,
    *,
    received_at: datetime | None = None,
    policy: MonitoringPolicy | None = None,
) -> None:
    """Apply one cabinet event to the live state, stock and alerts, in the caller's transaction.

    The caller de-duplicates on (kiosk id, event id) first: a repeated door_forced event
    would count as another occurrence. Events of other concerns (session_state) are
    ignored here.
    """
    now = received_at or utc_now()
    policy = policy or MonitoringPolicy.default()
    cabinet = cabinet_by_kiosk_id(db, event.kiosk_id)
    if cabinet is None:
        logger.warning("event %s of unknown cabinet %s ignored", event.event_id, event.kiosk_id)
        return
    state = _state(db, cabinet, now)
    state.last_seen_at = now
    cabinet.last_seen_at = now
    door = _detail_int(event, "door")
    shelf = _detail_int(event, "shelf")
    base = {"event_id": str(event.event_id), "at": event.at.isoformat()}

    def observe_event(kind: AlertKind, subject: str, *, active: bool, immediate: bool) -> None:
        _observe(
            db,
            cabinet,
            policy,
            kind,
            subject,
            active=active,
            now=now,
            observed_at=event.at,
            immediate=immediate,
            detail={**base, **event.detail} if active else None,
        )

    match event.type:
        case EventType.DOOR_FORCED:
            if not _alerts_suppressed(cabinet):
                raise_alert(
                    db,
                    cabinet=cabinet,
                    kind=AlertKind.DOOR_FORCED,
                    subject=door_subject(door if door is not None else 0),
                    now=now,
                    detail={**base, **event.detail},
                )
        case EventType.DOOR_LEFT_OPEN:
            subject = door_subject(door if door is not None else 0)
            observe_event(AlertKind.DOOR_LEFT_OPEN, subject, active=True, immediate=True)
        case EventType.LOCK_FAULT:
            subject = door_subject(door if door is not None else 0)
            observe_event(AlertKind.LOCK_FAULT, subject, active=True, immediate=True)
        case EventType.SCALE_FAULT if shelf is not None:
            observe_event(AlertKind.SCALE_FAULT, shelf_subject(shelf), active=True, immediate=True)
        case EventType.SCALE_RECOVERED if shelf is not None:
            observe_event(
                AlertKind.SCALE_FAULT, shelf_subject(shelf), active=False, immediate=False
            )
        case EventType.SERIAL_LINK_DOWN:
            observe_event(AlertKind.SERIAL_LINK_DOWN, "", active=True, immediate=False)
        case EventType.SERIAL_LINK_UP:
            observe_event(AlertKind.SERIAL_LINK_DOWN, "", active=False, immediate=False)
        case EventType.DISK_FULL:
            observe_event(AlertKind.DISK_FULL, "", active=True, immediate=True)
        case EventType.RESTOCK:
            _apply_restock(db, cabinet, state, event, now)
            evaluate_stock(db, cabinet, policy=policy, now=now)
        case EventType.ITEM_MISPLACED:
            entry = {
                "product_id": event.detail.get("product_id"),
                "shelf": shelf,
                "at": event.at.isoformat(),
            }
            state.misplaced = [*state.misplaced, entry][-MAX_MISPLACED_ENTRIES:]
        case EventType.BOARD_RESTARTED:
            state.last_board_restart_at = event.at
        case EventType.COMMAND_REJECTED:
            state.last_command_rejected = {
                "at": event.at.isoformat(),
                "command_id": event.detail.get("command_id"),
                "reason": event.detail.get("reason"),
            }
            logger.warning(
                "cabinet %s rejected command %s: %s",
                cabinet.kiosk_id,
                event.detail.get("command_id"),
                event.detail.get("reason"),
            )
        case _:
            logger.debug("event %s of %s not monitored", event.type.value, cabinet.kiosk_id)
    db.flush()


# --- Sweep ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    marked_offline: Sequence[str]


def sweep(
    db: Session, *, now: datetime | None = None, policy: MonitoringPolicy | None = None
) -> SweepReport:
    """Mark silent cabinets offline and raise or resolve alerts whose time has come."""
    now = now or utc_now()
    policy = policy or MonitoringPolicy.default()
    deadline = now - timedelta(seconds=policy.offline_after_s)
    silent = db.execute(
        select(CabinetState, Cabinet)
        .join(Cabinet, CabinetState.cabinet_id == Cabinet.id)
        .where(
            CabinetState.connection == ConnectionState.ONLINE,
            CabinetState.last_seen_at < deadline,
        )
        .order_by(Cabinet.kiosk_id)
    ).all()
    marked = []
    for state, cabinet in silent:
        last_seen = state.last_seen_at or now
        _set_connection(
            cabinet,
            state,
            ConnectionState.OFFLINE,
            since=last_seen,
            reason=OfflineReason.HEARTBEAT_TIMEOUT,
        )
        _observe(
            db,
            cabinet,
            policy,
            AlertKind.OFFLINE,
            "",
            active=True,
            now=now,
            started_at=last_seen,
            detail={"reason": OfflineReason.HEARTBEAT_TIMEOUT.value},
        )
        marked.append(cabinet.kiosk_id)
    db.flush()
    sweep_conditions(db, now=now, policy_for=policy.for_kind)
    return SweepReport(marked_offline=marked)
