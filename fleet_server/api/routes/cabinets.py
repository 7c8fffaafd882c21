from fastapi import APIRouter, status

from fleet_server.api.deps import (
    CabinetRegistrarActor,
    PageLimit,
    PageOffset,
    SessionDep,
    StaffActor,
)
from fleet_server.api.errors import error_responses
from fleet_server.models import CabinetServiceStatus
from fleet_server.schemas.common import Page, Text
from fleet_server.schemas.operators import CabinetCreate, CabinetPublic
from fleet_server.services import operators as operator_service
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/cabinets", tags=["cabinets"])


@router.get("", responses=error_responses(401, 403, 422))
def list_cabinets(
    session: SessionDep,
    actor: StaffActor,
    operator_id: int | None = None,
    school_id: int | None = None,
    service_status: CabinetServiceStatus | None = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[CabinetPublic]:
    """List the cabinets the caller may see, ordered by kiosk id."""
    page = operator_service.list_cabinets(
        session,
        actor=actor,
        limit=limit,
        offset=offset,
        operator_id=operator_id,
        school_id=school_id,
        service_status=service_status,
    )
    return Page[CabinetPublic](
        items=[CabinetPublic.from_model(cabinet) for cabinet in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=error_responses(401, 403, 404, 409, 422)
)
def register_cabinet(
    session: SessionDep, actor: CabinetRegistrarActor, body: CabinetCreate
) -> CabinetPublic:
    """Register a new cabinet at a placement. It starts in service status "provisioned"."""
    cabinet = operator_service.register_cabinet(session, actor=actor, data=body)
    session.commit()
    return CabinetPublic.from_model(cabinet)


@router.get("/{kiosk_id}", responses=error_responses(401, 403, 404, 422))
def get_cabinet(session: SessionDep, actor: StaffActor, kiosk_id: Text) -> CabinetPublic:
    cabinet = operator_service.get_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    return CabinetPublic.from_model(cabinet)
