from fastapi import APIRouter, status

from fleet_server.api.deps import PageLimit, PageOffset, ProvinceAdminActor, SessionDep, StaffActor
from fleet_server.api.errors import error_responses
from fleet_server.schemas.common import Page
from fleet_server.schemas.operators import OperatorCreate, OperatorPublic, OperatorUpdate
from fleet_server.services import operators as operator_service
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/operators", tags=["operators"])


@router.get("", responses=error_responses(401, 403, 422))
def list_operators(
    session: SessionDep,
    actor: StaffActor,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[OperatorPublic]:
    """List the operating companies the caller may see."""
    page = operator_service.list_operators(session, actor=actor, limit=limit, offset=offset)
    return Page[OperatorPublic](
        items=[OperatorPublic.model_validate(operator) for operator in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(401, 403, 409, 422))
def create_operator(
    session: SessionDep, actor: ProvinceAdminActor, body: OperatorCreate
) -> OperatorPublic:
    operator = operator_service.create_operator(session, actor=actor, data=body)
    session.commit()
    return OperatorPublic.model_validate(operator)


@router.get("/{operator_id}", responses=error_responses(401, 403, 404, 422))
def get_operator(session: SessionDep, actor: StaffActor, operator_id: int) -> OperatorPublic:
    operator = operator_service.get_operator(session, actor=actor, operator_id=operator_id)
    return OperatorPublic.model_validate(operator)


@router.patch("/{operator_id}", responses=error_responses(401, 403, 404, 409, 422))
def update_operator(
    session: SessionDep, actor: ProvinceAdminActor, operator_id: int, body: OperatorUpdate
) -> OperatorPublic:
    operator = operator_service.update_operator(
        session, actor=actor, operator_id=operator_id, data=body
    )
    session.commit()
    return OperatorPublic.model_validate(operator)
