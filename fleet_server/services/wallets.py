"""Campus wallets as administrators and students see them: top-ups, balances, statements."""

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import Role, TransactionKind, User, Wallet, WalletTransaction
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.campus_wallet import add_transaction, ensure_wallet, lock_wallet
from fleet_server.services.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from fleet_server.services.payments import AccountNotFoundError
from fleet_server.services.purchase_errors import PaymentRejectedError

STATEMENT_LENGTH = 20


@dataclass(frozen=True)
class WalletView:
    user_id: int
    balance_fen: int
    held_fen: int
    transactions: list[WalletTransaction]

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.held_fen


def _student_in_scope(session: Session, *, actor: Actor, user_id: int) -> User:
    """Return the student if the actor may manage the wallet, else raise NotFoundError.

    A province administrator manages every wallet and a school administrator those of
    the students of its school. A student outside the scope is reported as not found.
    """
    user = session.get(User, user_id)
    if user is None or user.role is not Role.STUDENT:
        raise NotFoundError("user", user_id)
    if actor.sees_everything:
        return user
    if actor.role is Role.SCHOOL_ADMIN and actor.school_id == user.school_id:
        return user
    if actor.role is Role.STUDENT and actor.user_id == user.id:
        return user
    raise NotFoundError("user", user_id)


def _view(session: Session, *, user_id: int, wallet: Wallet | None) -> WalletView:
    if wallet is None:
        return WalletView(user_id=user_id, balance_fen=0, held_fen=0, transactions=[])
    transactions = list(
        session.scalars(
            select(WalletTransaction)
            .where(WalletTransaction.wallet_id == wallet.id)
            .order_by(WalletTransaction.id.desc())
            .limit(STATEMENT_LENGTH)
        )
    )
    return WalletView(
        user_id=user_id,
        balance_fen=wallet.balance_fen,
        held_fen=wallet.held_fen,
        transactions=transactions,
    )


def get_wallet(session: Session, *, actor: Actor, user_id: int) -> WalletView:
    """Return a student's balance and latest transactions. No wallet yet reads as zero."""
    student = _student_in_scope(session, actor=actor, user_id=user_id)
    wallet = session.scalar(select(Wallet).where(Wallet.user_id == student.id))
    return _view(session, user_id=student.id, wallet=wallet)


def top_up(
    session: Session,
    *,
    actor: Actor,
    user_id: int,
    amount_fen: int,
    reference: str | None,
    note: str | None,
) -> tuple[WalletView, bool]:
    """Add money to a student's wallet, with an audit entry. Return the wallet and whether
    this call added the money (False when ``reference`` was used before for the same top-up).

    ``reference`` makes the request idempotent: repeating it returns the first top-up.
    Reusing it for another student or amount raises InvalidInputError.
    """
    if actor.role not in (Role.SCHOOL_ADMIN, Role.PROVINCE_ADMIN):
        raise PermissionDeniedError(
            message="没有权限：只有学校管理员或省级专班可以充值",
            message_en="Permission denied: only school or province administrators may top up",
        )
    student = _student_in_scope(session, actor=actor, user_id=user_id)
    try:
        wallet = lock_wallet(session, ensure_wallet(session, user_id=student.id).id)
    except AccountNotFoundError as error:
        raise PaymentRejectedError.from_payment_error(error) from error

    reference = reference or f"top-up:{uuid.uuid4()}"
    existing = session.scalar(
        select(WalletTransaction).where(
            WalletTransaction.kind == TransactionKind.TOP_UP,
            WalletTransaction.reference == reference,
        )
    )
    if existing is not None:
        if existing.wallet_id != wallet.id or existing.amount_fen != amount_fen:
            raise InvalidInputError(
                code="reference_conflict",
                message=f"请求编号 {reference} 已用于另一笔充值",
                message_en=f"Reference {reference} was used for a different top-up",
            )
        return _view(session, user_id=student.id, wallet=wallet), False

    before = {"balance_fen": wallet.balance_fen}
    wallet.balance_fen += amount_fen
    add_transaction(
        session,
        wallet=wallet,
        kind=TransactionKind.TOP_UP,
        amount_fen=amount_fen,
        reference=reference,
        note=note,
    )
    record_audit(
        session,
        actor=actor,
        action="wallet.top_up",
        object_type="wallet",
        object_id=student.id,
        before=before,
        after={"balance_fen": wallet.balance_fen, "amount_fen": amount_fen, "reference": reference},
    )
    session.flush()
    return _view(session, user_id=student.id, wallet=wallet), True
