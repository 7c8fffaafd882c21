"""Read side of fleet monitoring: the fleet list, one cabinet's live state, restock lists.

Every query is limited to the cabinets the caller may see (``Actor.visible_cabinets``).
"""

from collections.abc import Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, joinedload

from fleet_server.models import (
    Alert,
    AlertState,
    Building,
    Cabinet,
    CabinetState,
    CabinetStock,
    ConnectionState,
    LocationType,
    Placement,
    Planogram,
    Product,
)
from fleet_server.schemas.monitoring import (
    AlertPublic,
    CabinetLivePublic,
    DoorPublic,
    FleetCabinetPublic,
    FleetConnection,
    MisplacedPublic,
    RestockCabinetPublic,
    RestockItemPublic,
    RestockListPublic,
    RestockTotalPublic,
    ShelfReadingPublic,
    StockLinePublic,
)
from fleet_server.services.access import Actor
from fleet_server.services.alerts import alert_title, open_alert_counts
from fleet_server.services.errors import NotFoundError
from fleet_server.services.monitoring import MonitoringPolicy, low_stock_threshold, shelf_shares
from fleet_server.services.pagination import PageResult
from fleet_server.services.planograms import latest_planogram
from fleet_server.services.stickers import placement_name


def _visible_cabinets(actor: Actor) -> Select[Cabinet]:
    return (
        select(Cabinet)
        .join(Placement, Cabinet.placement_id == Placement.id)
        .join(Building, Placement.building_id == Building.id)
        .where(actor.visible_cabinets())
        .options(
            joinedload(Cabinet.placement)
            .joinedload(Placement.building)
            .joinedload(Building.school),
            joinedload(Cabinet.operator),
        )
    )


def alert_public(alert: Alert) -> AlertPublic:
    title, title_en = alert_title(alert.kind, alert.subject, alert.detail)
    return AlertPublic(
        id=alert.id,
        kiosk_id=alert.cabinet.kiosk_id,
        kind=alert.kind,
        subject=alert.subject,
        state=alert.state,
        title=title,
        title_en=title_en,
        raised_at=alert.raised_at,
        last_seen_at=alert.last_seen_at,
        occurrences=alert.occurrences,
        detail=alert.detail,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
        resolved_at=alert.resolved_at,
        resolved_by=alert.resolved_by,
        note=alert.note,
    )


def _placement_name(cabinet: Cabinet) -> str:
    placement = cabinet.placement
    return placement_name(placement.building.name, placement.floor, placement.description)


def _fleet_fields(
    cabinet: Cabinet, state: CabinetState | None, open_alerts: int, latest_version: int | None
) -> dict[str, object]:
    building = cabinet.placement.building
    fields: dict[str, object] = {
        "kiosk_id": cabinet.kiosk_id,
        "school_id": building.school_id,
        "school_name": building.school.name,
        "placement_id": cabinet.placement_id,
        "placement_name": _placement_name(cabinet),
        "location_type": building.location_type,
        "operator_id": cabinet.operator_id,
        "operator_name": cabinet.operator.name,
        "service_status": cabinet.service_status,
        "open_alerts": open_alerts,
        "planogram_latest_version": latest_version,
        "firmware_version": cabinet.firmware_version,
    }
    if state is None:
        return fields | {
            "connection": FleetConnection.UNKNOWN,
            "connection_since": None,
            "offline_reason": None,
            "last_seen_at": cabinet.last_seen_at,
            "doors_closed": None,
            "lock_faults": 0,
            "scale_faults": 0,
            "serial_link_up": None,
            "backlog_messages": None,
            "backlog_oldest_at": None,
            "agent_version": None,
            "planogram_version": None,
            "disk_free_bytes": None,
        }
    has_telemetry = state.last_telemetry_at is not None
    return fields | {
        "connection": FleetConnection(state.connection.value),
        "connection_since": state.connection_since,
        "offline_reason": state.offline_reason,
        "last_seen_at": state.last_seen_at,
        "doors_closed": (
            all(door["position"] == "closed" for door in state.doors) if has_telemetry else None
        ),
        "lock_faults": sum(1 for door in state.doors if door["lock"] == "fault"),
        "scale_faults": sum(1 for shelf in state.shelves if shelf["fault"]),
        "serial_link_up": state.serial_link_up,
        "backlog_messages": (state.backlog_sales + state.backlog_events if has_telemetry else None),
        "backlog_oldest_at": state.backlog_oldest_reported_at,
        "firmware_version": state.firmware_version or cabinet.firmware_version,
        "agent_version": state.agent_version,
        "planogram_version": state.planogram_version,
        "disk_free_bytes": state.disk_free_bytes,
    }


def _latest_versions(session: Session, cabinet_ids: Sequence[int]) -> dict[int, int]:
    if not cabinet_ids:
        return {}
    rows = session.execute(
        select(Planogram.cabinet_id, func.max(Planogram.version))
        .where(Planogram.cabinet_id.in_(cabinet_ids))
        .group_by(Planogram.cabinet_id)
    ).all()
    return {int(cabinet_id): int(version) for cabinet_id, version in rows}


def list_fleet(
    session: Session,
    *,
    actor: Actor,
    limit: int,
    offset: int,
    school_id: int | None = None,
    location_type: LocationType | None = None,
    connection: FleetConnection | None = None,
    operator_id: int | None = None,
) -> PageResult[FleetCabinetPublic]:
    """List the visible cabinets with their live state, ordered by kiosk id."""
    statement = _visible_cabinets(actor).outerjoin(
        CabinetState, CabinetState.cabinet_id == Cabinet.id
    )
    if school_id is not None:
        statement = statement.where(Building.school_id == school_id)
    if location_type is not None:
        statement = statement.where(Building.location_type == location_type)
    if operator_id is not None:
        statement = statement.where(Cabinet.operator_id == operator_id)
    if connection is FleetConnection.UNKNOWN:
        statement = statement.where(CabinetState.cabinet_id.is_(None))
    elif connection is not None:
        statement = statement.where(CabinetState.connection == ConnectionState(connection.value))

    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    cabinets = list(
        session.scalars(statement.order_by(Cabinet.kiosk_id).limit(limit).offset(offset)).unique()
    )
    ids = [cabinet.id for cabinet in cabinets]
    states = {
        state.cabinet_id: state
        for state in session.scalars(select(CabinetState).where(CabinetState.cabinet_id.in_(ids)))
    }
    alerts = open_alert_counts(session, ids)
    versions = _latest_versions(session, ids)
    items = [
        FleetCabinetPublic.model_validate(
            _fleet_fields(
                cabinet, states.get(cabinet.id), alerts.get(cabinet.id, 0), versions.get(cabinet.id)
            )
        )
        for cabinet in cabinets
    ]
    return PageResult(items=items, total=total or 0, limit=limit, offset=offset)


def _stock_lines(
    session: Session, cabinet: Cabinet, planogram: Planogram | None, policy: MonitoringPolicy
) -> list[StockLinePublic]:
    rows = {
        (row.shelf, row.product_id): row
        for row in session.scalars(
            select(CabinetStock).where(CabinetStock.cabinet_id == cabinet.id)
        )
    }
    products = {
        line.product_id: line.product
        for shelf in (planogram.shelves if planogram else [])
        for line in shelf.lines
    }
    lines = []
    for share in shelf_shares(planogram) if planogram is not None else []:
        row = rows.pop((share.shelf, share.product_id), None)
        quantity = row.quantity if row is not None else None
        lines.append(
            StockLinePublic(
                shelf=share.shelf,
                product_id=share.product_id,
                product_name=share.product_name,
                is_sample=products[share.product_id].is_sample,
                quantity=quantity,
                target=share.target,
                low=quantity is not None
                and quantity < low_stock_threshold(share.target, policy.low_stock_fraction),
                source=row.source if row is not None else None,
                updated_at=row.updated_at if row is not None else None,
            )
        )
    # Stock the agent reported for products that the latest planogram no longer has.
    for (shelf, product_id), row in sorted(rows.items()):
        product = session.get(Product, product_id)
        lines.append(
            StockLinePublic(
                shelf=shelf,
                product_id=product_id,
                product_name=product.name if product else str(product_id),
                is_sample=product.is_sample if product else False,
                quantity=row.quantity,
                target=0,
                low=False,
                source=row.source,
                updated_at=row.updated_at,
            )
        )
    return lines


def _misplaced(state: CabinetState | None) -> list[MisplacedPublic]:
    if state is None:
        return []
    return [
        MisplacedPublic(
            product_id=str(entry.get("product_id")) if entry.get("product_id") else None,
            shelf=entry.get("shelf"),
            at=entry.get("at"),
        )
        for entry in state.misplaced
    ]


def get_live_state(
    session: Session, *, actor: Actor, kiosk_id: str, policy: MonitoringPolicy
) -> CabinetLivePublic:
    cabinet = session.scalars(_visible_cabinets(actor).where(Cabinet.kiosk_id == kiosk_id)).first()
    if cabinet is None:
        raise NotFoundError("cabinet", kiosk_id)
    state = session.get(CabinetState, cabinet.id)
    planogram = latest_planogram(session, cabinet.id)
    alerts = session.scalars(
        select(Alert)
        .where(Alert.cabinet_id == cabinet.id, Alert.state != AlertState.RESOLVED)
        .order_by(Alert.raised_at.desc(), Alert.id.desc())
        .options(joinedload(Alert.cabinet))
    ).all()
    fields = _fleet_fields(
        cabinet, state, len(alerts), planogram.version if planogram is not None else None
    )
    return CabinetLivePublic.model_validate(
        fields
        | {
            "doors": [DoorPublic.model_validate(door) for door in state.doors] if state else [],
            "shelves": (
                [ShelfReadingPublic.model_validate(shelf) for shelf in state.shelves]
                if state
                else []
            ),
            "session_state": state.session_state if state else None,
            "last_telemetry_at": state.last_telemetry_at if state else None,
            "last_board_restart_at": state.last_board_restart_at if state else None,
            "last_command_rejected": state.last_command_rejected if state else None,
            "stock": _stock_lines(session, cabinet, planogram, policy),
            "misplaced": _misplaced(state),
            "alerts": [alert_public(alert) for alert in alerts],
        }
    )


def restock_list(
    session: Session,
    *,
    actor: Actor,
    policy: MonitoringPolicy,
    operator_id: int | None = None,
    school_id: int | None = None,
) -> RestockListPublic:
    """Return what to bring where: products below the low-stock threshold or of unknown stock.

    Each item brings the product back to its share of the shelf. Cabinets with packs
    on the wrong shelf are listed too, so that the restocker moves them back.
    """
    statement = _visible_cabinets(actor).order_by(Cabinet.kiosk_id)
    if operator_id is not None:
        statement = statement.where(Cabinet.operator_id == operator_id)
    if school_id is not None:
        statement = statement.where(Building.school_id == school_id)

    cabinets_out = []
    totals: dict[int, RestockTotalPublic] = {}
    for cabinet in session.scalars(statement).unique():
        planogram = latest_planogram(session, cabinet.id)
        if planogram is None:
            continue
        items = []
        for line in _stock_lines(session, cabinet, planogram, policy):
            if line.target == 0 or not (line.quantity is None or line.low):
                continue
            to_bring = line.target - (line.quantity or 0)
            if to_bring <= 0:
                continue
            product = session.get(Product, line.product_id)
            assert product is not None
            items.append(
                RestockItemPublic(
                    shelf=line.shelf,
                    product_id=line.product_id,
                    product_name=line.product_name,
                    certificate_number=product.certificate_number,
                    is_sample=product.is_sample,
                    quantity=line.quantity,
                    target=line.target,
                    to_bring=to_bring,
                )
            )
            total = totals.get(line.product_id)
            totals[line.product_id] = RestockTotalPublic(
                product_id=line.product_id,
                product_name=line.product_name,
                to_bring=to_bring + (total.to_bring if total else 0),
            )
        misplaced = _misplaced(session.get(CabinetState, cabinet.id))
        if items or misplaced:
            cabinets_out.append(
                RestockCabinetPublic(
                    kiosk_id=cabinet.kiosk_id,
                    school_name=cabinet.placement.building.school.name,
                    placement_name=_placement_name(cabinet),
                    operator_name=cabinet.operator.name,
                    items=items,
                    misplaced=misplaced,
                )
            )
    return RestockListPublic(
        low_stock_fraction=policy.low_stock_fraction,
        cabinets=cabinets_out,
        totals=sorted(totals.values(), key=lambda total: total.product_id),
    )
