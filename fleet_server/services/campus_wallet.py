"""The campus card (校园卡) wallet: a ``PaymentProvider`` kept in the server's database.

Every operation locks the wallet row first: ``SELECT ... FOR UPDATE`` on PostgreSQL, the
database write lock on SQLite. Two concurrent holds on one account therefore cannot both
take the same money. Operations work in the caller's transaction, so the caller's commit
makes the money movement and the change that caused it durable together. The check
constraints on ``wallets`` are the last line of defence: the balance cannot become negative.
"""

import logging
import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import (
    HoldStatus,
    PaymentHold,
    Role,
    TransactionKind,
    User,
    Wallet,
    WalletTransaction,
)
from fleet_server.models.base import utc_now
from fleet_server.services.payments import (
    AccountNotFoundError,
    AmountError,
    CaptureResult,
    HoldNotFoundError,
    HoldStateError,
    InsufficientFundsError,
    PaymentAccount,
    ReferenceConflictError,
    RefundResult,
)
from fleet_server.services.sql import insert_ignoring_conflicts, take_sqlite_write_lock

logger = logging.getLogger(__name__)

# Text columns of wallet_transactions.
MAX_REFERENCE_LENGTH = 100
MAX_NOTE_LENGTH = 500


def account_for_user(user_id: int) -> PaymentAccount:
    return str(user_id)


def ensure_wallet(session: Session, *, user_id: int) -> Wallet:
    """Return the student's wallet, creating an empty one on first use.

    Raises AccountNotFoundError unless the user exists, is active and is a student.
    """
    wallet = session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    if wallet is not None:
        return wallet
    user = session.get(User, user_id)
    if user is None or not user.is_active or user.role is not Role.STUDENT:
        raise AccountNotFoundError(f"user {user_id} is not an active student with a wallet")
    # ON CONFLICT DO NOTHING: two first requests of one student may race to create it.
    now = utc_now()
    session.execute(
        insert_ignoring_conflicts(session, Wallet, ["user_id"]).values(
            user_id=user_id, balance_fen=0, held_fen=0, created_at=now, updated_at=now
        )
    )
    return session.scalars(select(Wallet).where(Wallet.user_id == user_id)).one()


def lock_wallet(session: Session, wallet_id: int) -> Wallet:
    """Lock the wallet row until the transaction ends and return it with fresh values."""
    take_sqlite_write_lock(session, Wallet, wallet_id)
    statement = (
        select(Wallet)
        .where(Wallet.id == wallet_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(statement).one()


def add_transaction(
    session: Session,
    *,
    wallet: Wallet,
    kind: TransactionKind,
    amount_fen: int,
    reference: str,
    hold_id: uuid.UUID | None = None,
    note: str | None = None,
) -> WalletTransaction:
    """Add a ledger row with the wallet's balances after the movement, already applied."""
    transaction = WalletTransaction(
        wallet_id=wallet.id,
        kind=kind,
        amount_fen=amount_fen,
        reference=reference,
        hold_id=hold_id,
        balance_after_fen=wallet.balance_fen,
        held_after_fen=wallet.held_fen,
        note=note,
    )
    session.add(transaction)
    return transaction


def _check_reference(reference: str) -> None:
    if not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise ReferenceConflictError(
            f"reference must have 1 to {MAX_REFERENCE_LENGTH} characters, got {len(reference)}"
        )


class CampusWalletProvider:
    """``PaymentProvider`` on the ``wallets`` tables, inside the session's transaction.

    The caller commits. Accounts are user ids as text (``account_for_user``).
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def _wallet(self, account: PaymentAccount) -> Wallet:
        try:
            user_id = int(account)
        except ValueError:
            raise AccountNotFoundError(f"invalid campus wallet account {account!r}") from None
        return ensure_wallet(self.session, user_id=user_id)

    def _locked_hold(self, hold_id: uuid.UUID) -> tuple[PaymentHold, Wallet]:
        hold = self.session.get(PaymentHold, hold_id)
        if hold is None:
            raise HoldNotFoundError(f"payment hold {hold_id} not found")
        wallet = lock_wallet(self.session, hold.wallet_id)
        # Reread under the lock: another transaction may have settled the hold meanwhile.
        self.session.refresh(hold)
        return hold, wallet

    def available_fen(self, account: PaymentAccount) -> int:
        """Return balance minus open holds, read under the wallet lock.

        The lock lasts until the transaction ends, so a hold in the same transaction is
        computed from the same figure.
        """
        wallet = lock_wallet(self.session, self._wallet(account).id)
        return wallet.available_fen

    def lock_holds(self, hold_ids: Collection[uuid.UUID]) -> None:
        """Lock the wallets of the holds in wallet id order (PostgreSQL locks rows as the
        sorted result is read), so concurrent batch settlements cannot deadlock."""
        if not hold_ids:
            return
        wallet_ids = sorted(
            set(
                self.session.scalars(
                    select(PaymentHold.wallet_id).where(PaymentHold.id.in_(hold_ids))
                )
            )
        )
        if not wallet_ids:
            return
        take_sqlite_write_lock(self.session, Wallet, wallet_ids[0])
        self.session.execute(
            select(Wallet.id).where(Wallet.id.in_(wallet_ids)).order_by(Wallet.id).with_for_update()
        )

    def hold(self, account: PaymentAccount, amount_fen: int, reference: str) -> uuid.UUID:
        _check_reference(reference)
        if amount_fen <= 0:
            raise AmountError(f"hold amount must be positive, got {amount_fen} fen")
        wallet = lock_wallet(self.session, self._wallet(account).id)

        existing = self.session.scalar(
            select(PaymentHold).where(PaymentHold.reference == reference)
        )
        if existing is not None:
            if existing.wallet_id != wallet.id or existing.amount_fen != amount_fen:
                raise ReferenceConflictError(
                    f"hold reference {reference!r} was used for another account or amount"
                )
            return existing.id

        if wallet.available_fen < amount_fen:
            raise InsufficientFundsError(
                f"wallet {wallet.id} has {wallet.available_fen} fen available, "
                f"less than the hold of {amount_fen} fen",
                available_fen=wallet.available_fen,
            )
        wallet.held_fen += amount_fen
        hold = PaymentHold(
            id=uuid.uuid4(),
            wallet_id=wallet.id,
            reference=reference,
            amount_fen=amount_fen,
            status=HoldStatus.HELD,
            captured_fen=0,
            refunded_fen=0,
        )
        self.session.add(hold)
        # Flushed first: the unit of work does not order the ledger row after the hold.
        self.session.flush()
        add_transaction(
            self.session,
            wallet=wallet,
            kind=TransactionKind.HOLD,
            amount_fen=amount_fen,
            reference=reference,
            hold_id=hold.id,
        )
        self.session.flush()
        logger.debug("hold %s of %d fen on wallet %d", hold.id, amount_fen, wallet.id)
        return hold.id

    def capture(self, hold_id: uuid.UUID, amount_fen: int) -> CaptureResult:
        hold, wallet = self._locked_hold(hold_id)
        if hold.status is HoldStatus.CAPTURED:
            if hold.captured_fen == amount_fen:
                return CaptureResult(hold.id, hold.captured_fen, hold.amount_fen - amount_fen)
            raise HoldStateError(
                f"hold {hold.id} was captured with {hold.captured_fen} fen, not {amount_fen}"
            )
        if hold.status is HoldStatus.RELEASED:
            raise HoldStateError(f"hold {hold.id} was released and cannot be captured")
        if not 0 <= amount_fen <= hold.amount_fen:
            raise AmountError(
                f"capture of {amount_fen} fen is outside 0..{hold.amount_fen} fen held"
            )

        released_fen = hold.amount_fen - amount_fen
        wallet.held_fen -= hold.amount_fen
        wallet.balance_fen -= amount_fen
        hold.status = HoldStatus.CAPTURED
        hold.captured_fen = amount_fen
        hold.settled_at = utc_now()
        if amount_fen > 0:
            add_transaction(
                self.session,
                wallet=wallet,
                kind=TransactionKind.CAPTURE,
                amount_fen=amount_fen,
                reference=hold.reference,
                hold_id=hold.id,
            )
        if released_fen > 0:
            add_transaction(
                self.session,
                wallet=wallet,
                kind=TransactionKind.RELEASE,
                amount_fen=released_fen,
                reference=hold.reference,
                hold_id=hold.id,
            )
        self.session.flush()
        return CaptureResult(hold.id, amount_fen, released_fen)

    def release(self, hold_id: uuid.UUID) -> None:
        hold, wallet = self._locked_hold(hold_id)
        if hold.status is HoldStatus.RELEASED:
            return
        if hold.status is HoldStatus.CAPTURED:
            raise HoldStateError(f"hold {hold.id} was captured and cannot be released")
        wallet.held_fen -= hold.amount_fen
        hold.status = HoldStatus.RELEASED
        hold.settled_at = utc_now()
        add_transaction(
            self.session,
            wallet=wallet,
            kind=TransactionKind.RELEASE,
            amount_fen=hold.amount_fen,
            reference=hold.reference,
            hold_id=hold.id,
        )
        self.session.flush()

    def refund(
        self, hold_id: uuid.UUID, amount_fen: int, reason: str, reference: str
    ) -> RefundResult:
        _check_reference(reference)
        hold, wallet = self._locked_hold(hold_id)
        existing = self.session.scalar(
            select(WalletTransaction).where(
                WalletTransaction.kind == TransactionKind.REFUND,
                WalletTransaction.reference == reference,
            )
        )
        if existing is not None:
            if existing.hold_id != hold.id or existing.amount_fen != amount_fen:
                raise ReferenceConflictError(
                    f"refund reference {reference!r} was used for another hold or amount"
                )
            return RefundResult(hold.id, reference, amount_fen, hold.refunded_fen)

        if hold.status is not HoldStatus.CAPTURED:
            raise HoldStateError(f"hold {hold.id} has no captured money to refund")
        refundable_fen = hold.captured_fen - hold.refunded_fen
        if not 0 < amount_fen <= refundable_fen:
            raise AmountError(
                f"refund of {amount_fen} fen is outside 1..{refundable_fen} fen still refundable"
            )
        wallet.balance_fen += amount_fen
        hold.refunded_fen += amount_fen
        add_transaction(
            self.session,
            wallet=wallet,
            kind=TransactionKind.REFUND,
            amount_fen=amount_fen,
            reference=reference,
            hold_id=hold.id,
            note=reason[:MAX_NOTE_LENGTH],
        )
        self.session.flush()
        return RefundResult(hold.id, reference, amount_fen, hold.refunded_fen)
