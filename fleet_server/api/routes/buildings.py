"""Buildings and placements, nested under the school they belong to."""

from fastapi import APIRouter, status

from fleet_server.api.deps import PageLimit, PageOffset, SchoolManagerActor, SessionDep, StaffActor
from fleet_server.api.errors import error_responses
from fleet_server.schemas.buildings import (
    BuildingCreate,
    BuildingPublic,
    BuildingUpdate,
    PlacementCreate,
    PlacementPublic,
    PlacementUpdate,
)
from fleet_server.schemas.common import Page
from fleet_server.services import buildings as building_service
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/schools/{school_id}", tags=["buildings and placements"])

READ_ERRORS = error_responses(401, 403, 404, 422)
WRITE_ERRORS = error_responses(401, 403, 404, 409, 422)


@router.get("/buildings", responses=READ_ERRORS)
def list_buildings(
    session: SessionDep,
    actor: StaffActor,
    school_id: int,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[BuildingPublic]:
    page = building_service.list_buildings(
        session, actor=actor, school_id=school_id, limit=limit, offset=offset
    )
    return Page[BuildingPublic](
        items=[BuildingPublic.from_model(building) for building in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/buildings", status_code=status.HTTP_201_CREATED, responses=WRITE_ERRORS)
def create_building(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: BuildingCreate
) -> BuildingPublic:
    building = building_service.create_building(
        session, actor=actor, school_id=school_id, data=body
    )
    session.commit()
    return BuildingPublic.from_model(building)


@router.get("/buildings/{building_id}", responses=READ_ERRORS)
def get_building(
    session: SessionDep, actor: StaffActor, school_id: int, building_id: int
) -> BuildingPublic:
    building = building_service.get_building(
        session, actor=actor, school_id=school_id, building_id=building_id
    )
    return BuildingPublic.from_model(building)


@router.patch("/buildings/{building_id}", responses=WRITE_ERRORS)
def update_building(
    session: SessionDep,
    actor: SchoolManagerActor,
    school_id: int,
    building_id: int,
    body: BuildingUpdate,
) -> BuildingPublic:
    building = building_service.update_building(
        session, actor=actor, school_id=school_id, building_id=building_id, data=body
    )
    session.commit()
    return BuildingPublic.from_model(building)


@router.get("/placements", responses=READ_ERRORS)
def list_placements(
    session: SessionDep,
    actor: StaffActor,
    school_id: int,
    building_id: int | None = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[PlacementPublic]:
    page = building_service.list_placements(
        session,
        actor=actor,
        school_id=school_id,
        building_id=building_id,
        limit=limit,
        offset=offset,
    )
    return Page[PlacementPublic](
        items=[PlacementPublic.from_model(placement) for placement in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/placements", status_code=status.HTTP_201_CREATED, responses=WRITE_ERRORS)
def create_placement(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: PlacementCreate
) -> PlacementPublic:
    placement = building_service.create_placement(
        session, actor=actor, school_id=school_id, data=body
    )
    session.commit()
    return PlacementPublic.from_model(placement)


@router.get("/placements/{placement_id}", responses=READ_ERRORS)
def get_placement(
    session: SessionDep, actor: StaffActor, school_id: int, placement_id: int
) -> PlacementPublic:
    placement = building_service.get_placement(
        session, actor=actor, school_id=school_id, placement_id=placement_id
    )
    return PlacementPublic.from_model(placement)


@router.patch("/placements/{placement_id}", responses=WRITE_ERRORS)
def update_placement(
    session: SessionDep,
    actor: SchoolManagerActor,
    school_id: int,
    placement_id: int,
    body: PlacementUpdate,
) -> PlacementPublic:
    placement = building_service.update_placement(
        session, actor=actor, school_id=school_id, placement_id=placement_id, data=body
    )
    session.commit()
    return PlacementPublic.from_model(placement)
