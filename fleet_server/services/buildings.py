"""Buildings of a school and the cabinet placements (点位) inside them."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fleet_server.models import Building, Placement
from fleet_server.schemas.buildings import (
    BuildingCreate,
    BuildingUpdate,
    PlacementCreate,
    PlacementUpdate,
)
from fleet_server.schemas.common import to_microdegrees
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit, snapshot
from fleet_server.services.errors import ConflictError, InvalidInputError, NotFoundError
from fleet_server.services.pagination import PageResult, fetch_page
from fleet_server.services.schools import get_school, require_school_manager

BUILDING_FIELDS = (
    "name",
    "location_type",
    "capacity",
    "latitude_microdeg",
    "longitude_microdeg",
)
PLACEMENT_FIELDS = (
    "building_id",
    "floor",
    "description",
    "latitude_microdeg",
    "longitude_microdeg",
)


def _coordinate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Replace latitude/longitude in degrees by the stored micro-degree columns."""
    converted = dict(changes)
    for field in ("latitude", "longitude"):
        if field in converted:
            converted[f"{field}_microdeg"] = to_microdegrees(converted.pop(field))
    return converted


def _apply_changes(
    session: Session,
    *,
    actor: Actor,
    obj: Building | Placement,
    object_type: str,
    fields: tuple[str, ...],
    changes: dict[str, Any],
) -> None:
    before = snapshot(obj, fields)
    for field, value in changes.items():
        setattr(obj, field, value)
    session.flush()
    after = snapshot(obj, fields)
    changed = [field for field in fields if before[field] != after[field]]
    if changed:
        record_audit(
            session,
            actor=actor,
            action=f"{object_type}.update",
            object_type=object_type,
            object_id=obj.id,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )


# --- Buildings ----------------------------------------------------------------------------


def list_buildings(
    session: Session, *, actor: Actor, school_id: int, limit: int, offset: int
) -> PageResult[Building]:
    school = get_school(session, actor=actor, school_id=school_id)
    statement = select(Building).where(Building.school_id == school.id).order_by(Building.id)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_building(session: Session, *, actor: Actor, school_id: int, building_id: int) -> Building:
    school = get_school(session, actor=actor, school_id=school_id)
    building = session.scalar(
        select(Building).where(Building.id == building_id, Building.school_id == school.id)
    )
    if building is None:
        raise NotFoundError("building", building_id)
    return building


def _check_building_name_free(
    session: Session, *, school_id: int, name: str, building_id: int | None
) -> None:
    existing = session.scalar(
        select(Building.id).where(Building.school_id == school_id, Building.name == name)
    )
    if existing is not None and existing != building_id:
        raise ConflictError("building", "name", name)


def create_building(
    session: Session, *, actor: Actor, school_id: int, data: BuildingCreate
) -> Building:
    school = get_school(session, actor=actor, school_id=school_id)
    require_school_manager(actor, school.id)
    _check_building_name_free(session, school_id=school.id, name=data.name, building_id=None)
    building = Building(
        school_id=school.id,
        name=data.name,
        location_type=data.location_type,
        capacity=data.capacity,
        latitude_microdeg=to_microdegrees(data.latitude),
        longitude_microdeg=to_microdegrees(data.longitude),
    )
    session.add(building)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="building.create",
        object_type="building",
        object_id=building.id,
        after={"school_id": school.id, **snapshot(building, BUILDING_FIELDS)},
    )
    return building


def update_building(
    session: Session, *, actor: Actor, school_id: int, building_id: int, data: BuildingUpdate
) -> Building:
    building = get_building(session, actor=actor, school_id=school_id, building_id=building_id)
    require_school_manager(actor, building.school_id)
    changes = _coordinate_changes(data.changes())
    if "name" in changes:
        _check_building_name_free(
            session, school_id=building.school_id, name=changes["name"], building_id=building.id
        )
    _apply_changes(
        session,
        actor=actor,
        obj=building,
        object_type="building",
        fields=BUILDING_FIELDS,
        changes=changes,
    )
    return building


# --- Placements ---------------------------------------------------------------------------


def list_placements(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    limit: int,
    offset: int,
    building_id: int | None = None,
) -> PageResult[Placement]:
    school = get_school(session, actor=actor, school_id=school_id)
    statement = (
        select(Placement)
        .join(Building, Placement.building_id == Building.id)
        .where(Building.school_id == school.id)
        .options(joinedload(Placement.building))
        .order_by(Placement.id)
    )
    if building_id is not None:
        statement = statement.where(Placement.building_id == building_id)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_placement(
    session: Session, *, actor: Actor, school_id: int, placement_id: int
) -> Placement:
    school = get_school(session, actor=actor, school_id=school_id)
    placement = session.scalar(
        select(Placement)
        .join(Building, Placement.building_id == Building.id)
        .where(Placement.id == placement_id, Building.school_id == school.id)
        .options(joinedload(Placement.building))
    )
    if placement is None:
        raise NotFoundError("placement", placement_id)
    return placement


def _building_of_school(session: Session, *, school_id: int, building_id: int) -> Building:
    """Return the building if it belongs to the school, because placements may not cross schools."""
    building = session.scalar(
        select(Building).where(Building.id == building_id, Building.school_id == school_id)
    )
    if building is None:
        raise InvalidInputError(
            code="building_not_in_school",
            message=f"建筑 {building_id} 不属于学校 {school_id}",
            message_en=f"Building {building_id} does not belong to school {school_id}",
        )
    return building


def create_placement(
    session: Session, *, actor: Actor, school_id: int, data: PlacementCreate
) -> Placement:
    school = get_school(session, actor=actor, school_id=school_id)
    require_school_manager(actor, school.id)
    building = _building_of_school(session, school_id=school.id, building_id=data.building_id)
    placement = Placement(
        building=building,
        floor=data.floor,
        description=data.description,
        latitude_microdeg=to_microdegrees(data.latitude),
        longitude_microdeg=to_microdegrees(data.longitude),
    )
    session.add(placement)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="placement.create",
        object_type="placement",
        object_id=placement.id,
        after=snapshot(placement, PLACEMENT_FIELDS),
    )
    return placement


def update_placement(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    placement_id: int,
    data: PlacementUpdate,
) -> Placement:
    placement = get_placement(session, actor=actor, school_id=school_id, placement_id=placement_id)
    require_school_manager(actor, placement.building.school_id)
    changes = _coordinate_changes(data.changes())
    if "building_id" in changes:
        _building_of_school(
            session, school_id=placement.building.school_id, building_id=changes["building_id"]
        )
    _apply_changes(
        session,
        actor=actor,
        obj=placement,
        object_type="placement",
        fields=PLACEMENT_FIELDS,
        changes=changes,
    )
    # The flush wrote the new building_id, but the loaded relationship still points to the
    # old building until it is expired.
    session.expire(placement, ["building"])
    return placement
