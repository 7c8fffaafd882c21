from fastapi import APIRouter, status

from fleet_server.api.deps import (
    PageLimit,
    PageOffset,
    ProvinceAdminActor,
    SchoolManagerActor,
    SessionDep,
    StaffActor,
)
from fleet_server.api.errors import error_responses
from fleet_server.models import SchoolType
from fleet_server.schemas.common import Page, Text
from fleet_server.schemas.schools import SchoolCreate, SchoolPublic, SchoolUpdate
from fleet_server.services import schools as school_service
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/schools", tags=["schools"])


@router.get("", responses=error_responses(401, 403, 422))
def list_schools(
    session: SessionDep,
    actor: StaffActor,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
    city: Text | None = None,
    school_type: SchoolType | None = None,
) -> Page[SchoolPublic]:
    """List the schools the caller may see, ordered by id."""
    page = school_service.list_schools(
        session, actor=actor, limit=limit, offset=offset, city=city, school_type=school_type
    )
    return Page[SchoolPublic](
        items=[SchoolPublic.from_model(school) for school in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=error_responses(401, 403, 404, 409, 422)
)
def create_school(
    session: SessionDep, actor: ProvinceAdminActor, body: SchoolCreate
) -> SchoolPublic:
    """Add a school to the registry (province work group only)."""
    school = school_service.create_school(session, actor=actor, data=body)
    session.commit()
    return SchoolPublic.from_model(school)


@router.get("/{school_id}", responses=error_responses(401, 403, 404, 422))
def get_school(session: SessionDep, actor: StaffActor, school_id: int) -> SchoolPublic:
    school = school_service.get_school(session, actor=actor, school_id=school_id)
    return SchoolPublic.from_model(school)


@router.patch("/{school_id}", responses=error_responses(401, 403, 404, 409, 422))
def update_school(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: SchoolUpdate
) -> SchoolPublic:
    """Change a school. Only the province work group may change name, type and counties."""
    school = school_service.update_school(session, actor=actor, school_id=school_id, data=body)
    session.commit()
    return SchoolPublic.from_model(school)
