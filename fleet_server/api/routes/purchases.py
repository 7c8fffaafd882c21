"""Purchases: scan to open (学生扫码开门), follow the session live, receipts, history."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fleet_server.api.deps import (
    CurrentActor,
    PageLimit,
    PageOffset,
    SessionDep,
    SettingsDep,
    StaffActor,
)
from fleet_server.api.errors import error_responses
from fleet_server.api.payment_deps import ProviderDep, PublisherDep, StudentActor
from fleet_server.models import PurchaseSession
from fleet_server.schemas.common import Page
from fleet_server.schemas.purchases import (
    PurchaseCreate,
    PurchasePublic,
    PurchaseRelease,
    ReceiptPublic,
)
from fleet_server.services import purchases as purchase_service
from fleet_server.services.access import Actor
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT
from fleet_server.services.purchase_errors import PurchaseFlowError
from fleet_server.services.purchase_states import TERMINAL_STATES
from fleet_server.services.sales import sale_of_purchase

router = APIRouter(tags=["purchases"])

# The live view reads the session this often. The sale may be committed by an ingest
# worker in another process, so the database is the only place to watch.
EVENTS_POLL_INTERVAL_S = 0.5
# A comment line keeps proxies from closing an idle stream.
EVENTS_KEEPALIVE_S = 15.0
# The stream ends this long after the session's timeout; the page then polls GET.
EVENTS_GRACE_S = 30.0


def purchase_public(session: Session, purchase: PurchaseSession) -> PurchasePublic:
    return PurchasePublic.from_model(purchase, sale_of_purchase(session, purchase.id))


@router.post(
    "/purchases",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 402, 403, 404, 409, 422, 503),
)
def start_purchase(
    body: PurchaseCreate,
    session: SessionDep,
    actor: StudentActor,
    settings: SettingsDep,
    provider: ProviderDep,
    publisher: PublisherDep,
) -> PurchasePublic:
    """Check the QR code, hold money on the campus card and unlock the cabinet.

    Errors: 404 cabinet_not_found; 422 purchase_code_expired or purchase_code_invalid;
    409 cabinet_offline, cabinet_out_of_service, cabinet_busy or cabinet_not_provisioned;
    402 balance_too_low; 503 cabinet_unreachable (nothing is held then).
    """
    purchase = purchase_service.start_purchase(
        session,
        actor=actor,
        provider=provider,
        publisher=publisher,
        settings=settings,
        kiosk_id=body.kiosk_id,
        code=body.code,
        door=body.door,
    )
    return purchase_public(session, purchase)


@router.get("/purchases/{purchase_id}", responses=error_responses(401, 404, 422))
def get_purchase(
    session: SessionDep, actor: CurrentActor, purchase_id: uuid.UUID
) -> PurchasePublic:
    """Return the state, the items taken and the amounts of a purchase."""
    purchase = purchase_service.get_purchase(session, actor=actor, purchase_id=purchase_id)
    session.commit()
    return purchase_public(session, purchase)


@router.get("/purchases/{purchase_id}/receipt", responses=error_responses(401, 404, 409, 422))
def get_receipt(session: SessionDep, actor: CurrentActor, purchase_id: uuid.UUID) -> ReceiptPublic:
    """Return the receipt: each item with its source county (产地县), the total and payment."""
    purchase = purchase_service.get_purchase(session, actor=actor, purchase_id=purchase_id)
    session.commit()
    sale = sale_of_purchase(session, purchase.id)
    if sale is None:
        raise PurchaseFlowError(
            code="receipt_not_ready",
            message="尚未结算，请关门后稍候",
            message_en="The cabinet has not reported the sale yet; close the door and wait",
        )
    return ReceiptPublic.from_model(purchase, sale)


@router.get(
    "/purchases/{purchase_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        **error_responses(401, 404, 422),
    },
)
def follow_purchase(
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    purchase_id: uuid.UUID,
) -> StreamingResponse:
    """Stream the purchase as Server-Sent Events until it ends.

    Each event is ``event: purchase`` with the PurchasePublic JSON as data, sent when the
    purchase changes. The stream ends after completed, cancelled or failed, or 30 s after
    the session's timeout.
    """
    purchase_service.get_purchase(session, actor=actor, purchase_id=purchase_id)
    factory: sessionmaker[Session] = request.app.state.session_factory
    max_duration_s = settings.purchase_timeout_s + EVENTS_GRACE_S
    stream = _purchase_events(request, factory, actor, purchase_id, max_duration_s)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _purchase_events(
    request: Request,
    factory: sessionmaker[Session],
    actor: Actor,
    purchase_id: uuid.UUID,
    max_duration_s: float,
) -> AsyncIterator[str]:
    def load() -> PurchasePublic:
        with factory() as session:
            purchase = purchase_service.get_purchase(session, actor=actor, purchase_id=purchase_id)
            session.commit()
            return purchase_public(session, purchase)

    started = time.monotonic()
    last_sent = started
    previous: str | None = None
    while time.monotonic() - started < max_duration_s:
        if await request.is_disconnected():
            return
        current = await run_in_threadpool(load)
        data = current.model_dump_json()
        if data != previous:
            previous = data
            last_sent = time.monotonic()
            yield f"event: purchase\ndata: {data}\n\n"
            if current.state in TERMINAL_STATES:
                return
        elif time.monotonic() - last_sent >= EVENTS_KEEPALIVE_S:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(EVENTS_POLL_INTERVAL_S)
    yield f"event: timeout\ndata: {json.dumps({'purchase_id': str(purchase_id)})}\n\n"


@router.post("/purchases/{purchase_id}/release", responses=error_responses(401, 403, 404, 409, 422))
def release_purchase(
    session: SessionDep,
    actor: StaffActor,
    provider: ProviderDep,
    purchase_id: uuid.UUID,
    body: PurchaseRelease,
) -> PurchasePublic:
    """Release the hold of an expired purchase whose sale never arrived (operator decision).

    A sale that arrives afterwards is stored and flagged for review, not charged.
    """
    purchase = purchase_service.release_expired_purchase(
        session, actor=actor, provider=provider, purchase_id=purchase_id, reason=body.reason
    )
    session.commit()
    return purchase_public(session, purchase)


@router.get("/me/purchases", responses=error_responses(401, 403, 422))
def list_my_purchases(
    session: SessionDep,
    actor: StudentActor,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[PurchasePublic]:
    """List the student's purchases, newest first."""
    assert actor.user_id is not None
    page = purchase_service.list_purchases_of_user(
        session, user_id=actor.user_id, limit=limit, offset=offset
    )
    return Page[PurchasePublic](
        items=[purchase_public(session, purchase) for purchase in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )
