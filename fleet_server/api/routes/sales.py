"""Sales reported by the cabinets, for operators and administrators, and refunds."""

import uuid

from fastapi import APIRouter, Response, status

from fleet_server.api.deps import PageLimit, PageOffset, SessionDep, StaffActor
from fleet_server.api.errors import error_responses
from fleet_server.api.payment_deps import ProviderDep
from fleet_server.schemas.common import Page, Text
from fleet_server.schemas.purchases import RefundCreate, RefundPublic, SalePublic
from fleet_server.services import sales as sale_service
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/sales", tags=["sales"])


@router.get("", responses=error_responses(401, 403, 422))
def list_sales(
    session: SessionDep,
    actor: StaffActor,
    kiosk_id: Text | None = None,
    review_needed: bool | None = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[SalePublic]:
    """List the sales of the caller's cabinets, newest first; filter the ones to review."""
    page = sale_service.list_sales(
        session,
        actor=actor,
        limit=limit,
        offset=offset,
        kiosk_id=kiosk_id,
        review_needed=review_needed,
    )
    return Page[SalePublic](
        items=[SalePublic.from_model(sale) for sale in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/{sale_id}", responses=error_responses(401, 403, 404, 409, 422))
def get_sale(session: SessionDep, actor: StaffActor, sale_id: uuid.UUID) -> SalePublic:
    return SalePublic.from_model(sale_service.get_sale(session, actor=actor, sale_id=sale_id))


@router.post(
    "/{sale_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Repeated reference: the earlier refund"},
        **error_responses(401, 403, 404, 409, 422),
    },
)
def refund_sale(
    session: SessionDep,
    actor: StaffActor,
    provider: ProviderDep,
    sale_id: uuid.UUID,
    body: RefundCreate,
    response: Response,
) -> RefundPublic:
    """Refund an amount or some items of a sale to the student's campus card.

    Operators refund sales of their own cabinets, school administrators those of their
    school. The refunds of a sale never add up to more than it captured.
    """
    lines = (
        [sale_service.RefundLineRequest(line.line_id, line.quantity) for line in body.lines]
        if body.lines is not None
        else None
    )
    refund, created = sale_service.refund_sale(
        session,
        actor=actor,
        provider=provider,
        sale_id=sale_id,
        amount_fen=body.amount_fen,
        lines=lines,
        reason=body.reason,
        reference=body.reference,
    )
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return RefundPublic.from_model(refund)
