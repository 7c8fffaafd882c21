"""Campus card wallets (校园卡): the student's balance, and top-ups by administrators."""

from fastapi import APIRouter, Response, status

from fleet_server.api.deps import SchoolManagerActor, SessionDep
from fleet_server.api.errors import error_responses
from fleet_server.api.payment_deps import StudentActor
from fleet_server.schemas.purchases import TopUpCreate, WalletPublic
from fleet_server.services import wallets as wallet_service

router = APIRouter(tags=["wallets"])


@router.get("/me/wallet", responses=error_responses(401, 403))
def get_my_wallet(session: SessionDep, actor: StudentActor) -> WalletPublic:
    """Return the student's balance, the amount held by open purchases and recent movements."""
    assert actor.user_id is not None
    return WalletPublic.from_view(
        wallet_service.get_wallet(session, actor=actor, user_id=actor.user_id)
    )


@router.get("/wallets/{user_id}", responses=error_responses(401, 403, 404, 422))
def get_wallet(session: SessionDep, actor: SchoolManagerActor, user_id: int) -> WalletPublic:
    """Return a student's wallet (school administrators: students of their school)."""
    return WalletPublic.from_view(wallet_service.get_wallet(session, actor=actor, user_id=user_id))


@router.post(
    "/wallets/{user_id}/top-ups",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Repeated reference: the earlier top-up"},
        **error_responses(401, 403, 404, 422),
    },
)
def top_up_wallet(
    session: SessionDep,
    actor: SchoolManagerActor,
    user_id: int,
    body: TopUpCreate,
    response: Response,
) -> WalletPublic:
    """Add money to a student's campus card. Every top-up is written to the audit log."""
    view, created = wallet_service.top_up(
        session,
        actor=actor,
        user_id=user_id,
        amount_fen=body.amount_fen,
        reference=body.reference,
        note=body.note,
    )
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return WalletPublic.from_view(view)
