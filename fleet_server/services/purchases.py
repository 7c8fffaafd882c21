"""Purchase sessions: start one from a scanned QR code, follow it, expire it, release its hold.

A student scans the cabinet's QR code, and ``start_purchase`` checks the rotating code with
the cabinet's key, checks the cabinet and the wallet, places a payment hold, and sends the
signed unlock command. The cabinet's sale, handled by ingest (``services.sales``), settles
the hold. The state machine is in ``services.purchase_states``.
"""

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, CursorResult, exists, false, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from fleet_server.core.config import ServerSettings
from fleet_server.messaging.publisher import CommandPublisher, PublishError
from fleet_server.models import (
    ACTIVE_STATES,
    Cabinet,
    CabinetServiceStatus,
    CabinetState,
    ConnectionState,
    PurchaseSession,
    PurchaseState,
    Role,
)
from fleet_server.models.base import utc_now
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.campus_wallet import account_for_user
from fleet_server.services.errors import NotFoundError, PermissionDeniedError
from fleet_server.services.pagination import PageResult, fetch_page
from fleet_server.services.payments import InsufficientFundsError, PaymentError, PaymentProvider
from fleet_server.services.purchase_errors import (
    BalanceTooLowError,
    CabinetUnavailableError,
    CabinetUnreachableError,
    PaymentRejectedError,
    PurchaseCodeError,
    PurchaseFlowError,
    PurchaseNotFoundError,
)
from fleet_server.services.purchase_states import (
    CABINET_PROGRESS,
    TRANSITIONS,
    IllegalTransitionError,
    PurchaseEvent,
    next_state,
)
from fleet_server.services.sql import take_sqlite_write_lock
from kiosk_agent.contract import EventType, KioskEvent, UnlockCommand, UnlockMode
from kiosk_agent.purchase_code import ACCEPTED_WINDOWS, purchase_code, verify_code, window_at
from kiosk_agent.signing import RejectReason, new_nonce

logger = logging.getLogger(__name__)

# A code this many windows old (30 s each) or less is reported as expired rather than
# invalid, so a student who waited too long gets the message to scan again.
EXPIRED_CODE_WINDOWS = 20


# --- Checks before a purchase ---------------------------------------------------------------


def cabinet_is_available(session: Session, cabinet: Cabinet) -> CabinetUnavailableError | None:
    """Return why the cabinet cannot start a purchase now, or None when it can.

    A cabinet sells when its service status is in_service and it is online. Online is the
    connection state that fleet monitoring keeps in cabinet_states, or the cabinet's
    ``online`` flag for a cabinet that monitoring has not seen yet.
    """
    if cabinet.service_status is not CabinetServiceStatus.IN_SERVICE:
        return CabinetUnavailableError.out_of_service(cabinet.kiosk_id)
    state = session.get(CabinetState, cabinet.id)
    online = cabinet.online if state is None else state.connection is ConnectionState.ONLINE
    if not online:
        return CabinetUnavailableError.offline(cabinet.kiosk_id)
    return None


def cabinet_key(cabinet: Cabinet) -> bytes:
    """Return the cabinet's HMAC key, or raise CabinetUnavailableError if it has none."""
    if not cabinet.hmac_key:
        raise CabinetUnavailableError.not_provisioned(cabinet.kiosk_id)
    return bytes.fromhex(cabinet.hmac_key)


def check_purchase_code(key: bytes, kiosk_id: str, code: str, *, now: datetime) -> None:
    """Raise PurchaseCodeError unless ``code`` is the cabinet's current or previous code."""
    now_s = now.timestamp()
    if verify_code(key, kiosk_id, code, now=now_s):
        return
    current = window_at(now_s)
    for age in range(ACCEPTED_WINDOWS, EXPIRED_CODE_WINDOWS + 1):
        if purchase_code(key, kiosk_id, current - age) == code:
            raise PurchaseCodeError.expired()
    raise PurchaseCodeError.invalid()


def _has_active_session(session: Session, cabinet_id: int) -> bool:
    statement = select(
        exists().where(
            PurchaseSession.cabinet_id == cabinet_id, PurchaseSession.state.in_(ACTIVE_STATES)
        )
    )
    return bool(session.scalar(statement))


# --- Starting a purchase --------------------------------------------------------------------


def start_purchase(
    session: Session,
    *,
    actor: Actor,
    provider: PaymentProvider,
    publisher: CommandPublisher,
    settings: ServerSettings,
    kiosk_id: str,
    code: str,
    door: int,
) -> PurchaseSession:
    """Place a hold and send the unlock command. Commits twice, see below.

    The session and its hold are committed before the command is sent, so a cabinet that
    reports back at once finds them. If the broker does not accept the command, the hold is
    released and the session marked failed in a second commit, and CabinetUnreachableError
    is raised. Other checks raise before anything is written: NotFoundError,
    PurchaseCodeError, CabinetUnavailableError, BalanceTooLowError.
    """
    if actor.role is not Role.STUDENT or actor.user_id is None:
        raise PermissionDeniedError(
            message="没有权限：只有学生可以购买", message_en="Only students may start a purchase"
        )
    now = utc_now()
    cabinet = session.scalar(select(Cabinet).where(Cabinet.kiosk_id == kiosk_id))
    if cabinet is None:
        raise NotFoundError("cabinet", kiosk_id)
    key = cabinet_key(cabinet)
    check_purchase_code(key, kiosk_id, code, now=now)
    unavailable = cabinet_is_available(session, cabinet)
    if unavailable is not None:
        raise unavailable

    expire_overdue_sessions(session, now=now, cabinet_id=cabinet.id)
    if _has_active_session(session, cabinet.id):
        raise CabinetUnavailableError.busy(kiosk_id)

    purchase = _place_hold(
        session, actor=actor, provider=provider, settings=settings, cabinet=cabinet, door=door
    )
    purchase.deadline_at = now + timedelta(seconds=settings.purchase_timeout_s)
    try:
        session.flush()
    except IntegrityError:
        # The partial unique index: another request started a session on this cabinet
        # between the check above and this insert.
        session.rollback()
        raise CabinetUnavailableError.busy(kiosk_id) from None
    session.commit()
    logger.info(
        "purchase %s started on %s by user %d with a hold of %d fen",
        purchase.id,
        kiosk_id,
        actor.user_id,
        purchase.hold_amount_fen,
    )
    return _send_unlock(
        session,
        purchase=purchase,
        key=key,
        kiosk_id=kiosk_id,
        provider=provider,
        publisher=publisher,
        settings=settings,
    )


def _place_hold(
    session: Session,
    *,
    actor: Actor,
    provider: PaymentProvider,
    settings: ServerSettings,
    cabinet: Cabinet,
    door: int,
) -> PurchaseSession:
    assert actor.user_id is not None
    account = account_for_user(actor.user_id)
    purchase_id = uuid.uuid4()
    try:
        available_fen = provider.available_fen(account)
        if available_fen < settings.purchase_min_balance_fen:
            raise BalanceTooLowError(
                available_fen=available_fen, minimum_fen=settings.purchase_min_balance_fen
            )
        amount_fen = min(available_fen, settings.purchase_hold_max_fen)
        hold_id = provider.hold(account, amount_fen, f"purchase:{purchase_id}")
    except InsufficientFundsError as error:
        raise BalanceTooLowError(
            available_fen=error.available_fen, minimum_fen=settings.purchase_min_balance_fen
        ) from error
    except PaymentError as error:
        raise PaymentRejectedError.from_payment_error(error) from error

    purchase = PurchaseSession(
        id=purchase_id,
        user_id=actor.user_id,
        cabinet_id=cabinet.id,
        door=door,
        state=PurchaseState.CREATED,
        command_id=uuid.uuid4(),
        hold_id=hold_id,
        hold_amount_fen=amount_fen,
    )
    session.add(purchase)
    record_audit(
        session,
        actor=actor,
        action="payment.hold",
        object_type="purchase",
        object_id=purchase_id,
        after={"kiosk_id": cabinet.kiosk_id, "hold_id": str(hold_id), "amount_fen": amount_fen},
    )
    return purchase


def _send_unlock(
    session: Session,
    *,
    purchase: PurchaseSession,
    key: bytes,
    kiosk_id: str,
    provider: PaymentProvider,
    publisher: CommandPublisher,
    settings: ServerSettings,
) -> PurchaseSession:
    issued_at = utc_now()
    command = UnlockCommand(
        command_id=purchase.command_id,
        kiosk_id=kiosk_id,
        issued_at=issued_at,
        expires_at=issued_at + timedelta(seconds=settings.unlock_lifetime_s),
        nonce=new_nonce(),
        session_id=purchase.id,
        door=purchase.door,
        mode=UnlockMode.PURCHASE,
    )
    try:
        publisher.send_command(command, key)
    except PublishError as error:
        logger.error("unlock for purchase %s on %s not sent: %s", purchase.id, kiosk_id, error)
        locked = lock_purchase(session, purchase.id)
        if locked.state is not PurchaseState.CREATED:
            # NOTE: the broker got the command after all (the confirmation timed out) and
            # the cabinet already reported back, so the purchase goes on.
            session.commit()
            return locked
        _release_and_finish(
            session,
            purchase=locked,
            provider=provider,
            event=PurchaseEvent.PUBLISH_FAILED,
            failure_code="publish_failed",
            actor=Actor.system("purchase"),
        )
        session.commit()
        raise CabinetUnreachableError(kiosk_id) from error

    # Conditional: the cabinet's first report may already have moved the session on.
    session.execute(
        update(PurchaseSession)
        .where(PurchaseSession.id == purchase.id, PurchaseSession.state == PurchaseState.CREATED)
        .values(state=PurchaseState.UNLOCK_SENT, updated_at=utc_now())
    )
    session.commit()
    session.refresh(purchase)
    return purchase


def lock_purchase(session: Session, purchase_id: uuid.UUID) -> PurchaseSession:
    """Lock the session row until the transaction ends and return it with fresh values."""
    take_sqlite_write_lock(session, PurchaseSession, purchase_id)
    statement = (
        select(PurchaseSession)
        .where(PurchaseSession.id == purchase_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(statement).one()


def _release_and_finish(
    session: Session,
    *,
    purchase: PurchaseSession,
    provider: PaymentProvider,
    event: PurchaseEvent,
    failure_code: str,
    actor: Actor,
    note: str | None = None,
) -> None:
    """Release the whole hold and move the locked session to the state after ``event``."""
    new_state = next_state(purchase.state, event, session_id=purchase.id)
    try:
        provider.release(purchase.hold_id)
    except PaymentError as error:
        raise PaymentRejectedError.from_payment_error(error) from error
    before = {"state": purchase.state}
    purchase.state = new_state
    purchase.failure_code = failure_code
    purchase.finished_at = utc_now()
    record_audit(
        session,
        actor=actor,
        action="payment.release",
        object_type="purchase",
        object_id=purchase.id,
        before=before,
        after={
            "state": new_state,
            "released_fen": purchase.hold_amount_fen,
            "reason": failure_code,
            "note": note,
        },
    )


# --- Reading purchases ----------------------------------------------------------------------


def _visible_purchases(actor: Actor) -> ColumnElement[bool]:
    if actor.role is Role.STUDENT:
        if actor.user_id is None:
            return false()
        return PurchaseSession.user_id == actor.user_id
    return PurchaseSession.cabinet_id.in_(select(Cabinet.id).where(actor.visible_cabinets()))


def get_purchase(session: Session, *, actor: Actor, purchase_id: uuid.UUID) -> PurchaseSession:
    """Return a purchase its student or the staff of its cabinet may read.

    A session past its deadline is marked expired here too, so a student polling after the
    timeout sees it before the next ingest sweep.
    """
    statement = (
        select(PurchaseSession)
        .where(PurchaseSession.id == purchase_id, _visible_purchases(actor))
        .options(joinedload(PurchaseSession.cabinet))
    )
    purchase = session.scalar(statement)
    if purchase is None:
        raise PurchaseNotFoundError(purchase_id)
    if purchase.state in ACTIVE_STATES and purchase.deadline_at < utc_now():
        expire_overdue_sessions(session, now=utc_now(), cabinet_id=purchase.cabinet_id)
        session.refresh(purchase)
    return purchase


def list_purchases_of_user(
    session: Session, *, user_id: int, limit: int, offset: int
) -> PageResult[PurchaseSession]:
    statement = (
        select(PurchaseSession)
        .where(PurchaseSession.user_id == user_id)
        .options(joinedload(PurchaseSession.cabinet))
        .order_by(PurchaseSession.created_at.desc(), PurchaseSession.id)
    )
    return fetch_page(session, statement, limit=limit, offset=offset)


# --- Expiry and manual release --------------------------------------------------------------


def expire_overdue_sessions(
    session: Session, *, now: datetime, cabinet_id: int | None = None
) -> int:
    """Mark active sessions past their deadline expired and return how many there were.

    The holds stay in place: the cabinet's outbox delivers every sale eventually, and the
    sale then settles the session. Releasing here could let the student spend the money
    before a sale for goods already taken arrives.
    """
    statement = (
        update(PurchaseSession)
        .where(PurchaseSession.state.in_(ACTIVE_STATES), PurchaseSession.deadline_at < now)
        .values(state=PurchaseState.EXPIRED, updated_at=now)
    )
    if cabinet_id is not None:
        statement = statement.where(PurchaseSession.cabinet_id == cabinet_id)
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    count = result.rowcount
    if count:
        logger.warning("%d purchase sessions expired without a sale; their holds stay", count)
    return count


def release_expired_purchase(
    session: Session,
    *,
    actor: Actor,
    provider: PaymentProvider,
    purchase_id: uuid.UUID,
    reason: str,
) -> PurchaseSession:
    """Release the hold of an expired session on an operator's decision, with an audit entry.

    A sale that still arrives afterwards is stored and flagged hold_not_open, not charged.
    """
    purchase = get_purchase(session, actor=actor, purchase_id=purchase_id)
    if actor.role is Role.STUDENT:
        raise PermissionDeniedError(
            message="没有权限：只有运营企业或管理员可以释放预授权",
            message_en="Only operators and administrators may release a hold",
        )
    locked = lock_purchase(session, purchase.id)
    if locked.state is not PurchaseState.EXPIRED:
        raise PurchaseFlowError(
            code="purchase_not_expired",
            message=f"只能释放已超时的购买，当前状态：{locked.state.value}",
            message_en=f"Only an expired purchase can be released; it is {locked.state.value}",
        )
    _release_and_finish(
        session,
        purchase=locked,
        provider=provider,
        event=PurchaseEvent.RELEASED_BY_STAFF,
        failure_code="released_by_staff",
        actor=actor,
        note=reason,
    )
    return locked


# --- Progress reported by the cabinet -------------------------------------------------------

# command_rejected reasons after which the cabinet sends no sale: the command failed its
# signature, kiosk, expiry or nonce check, or the cabinet was busy with another session.
# For its other refusals (lock fault, scale fault, ...) it sends a cancelled sale, which
# releases the hold like any sale.
REJECTIONS_WITHOUT_SALE = frozenset({reason.value for reason in RejectReason} | {"busy"})


def apply_cabinet_event(
    session: Session, *, provider: PaymentProvider, event: KioskEvent, cabinet_id: int
) -> None:
    """Move a purchase session on from a session_state or command_rejected event.

    Events of other types, of unknown sessions, of another cabinet's sessions and events
    that the session's state does not accept (late or repeated ones) change nothing.
    """
    if event.type is EventType.SESSION_STATE:
        progress = CABINET_PROGRESS.get(str(event.detail.get("state")))
        if progress is None or event.session_id is None:
            return
        purchase = _purchase_of_cabinet(session, cabinet_id, event.session_id)
        if purchase is None:
            return
        try:
            purchase.state = next_state(purchase.state, progress, session_id=purchase.id)
        except IllegalTransitionError as error:
            logger.debug("ignored late cabinet progress: %s", error)
        return

    if event.type is not EventType.COMMAND_REJECTED:
        return
    reason = str(event.detail.get("reason"))
    if reason not in REJECTIONS_WITHOUT_SALE:
        return
    command_id = _uuid_or_none(event.detail.get("command_id"))
    purchase_id = event.session_id
    if purchase_id is None and command_id is not None:
        purchase_id = session.scalar(
            select(PurchaseSession.id).where(PurchaseSession.command_id == command_id)
        )
    if purchase_id is None:
        return
    purchase = _purchase_of_cabinet(session, cabinet_id, purchase_id)
    if purchase is None or (command_id is not None and purchase.command_id != command_id):
        return
    if (purchase.state, PurchaseEvent.COMMAND_REJECTED) not in TRANSITIONS:
        logger.debug("ignored command_rejected for purchase %s in %s", purchase.id, purchase.state)
        return
    logger.warning("cabinet rejected the unlock of purchase %s: %s", purchase.id, reason)
    _release_and_finish(
        session,
        purchase=purchase,
        provider=provider,
        event=PurchaseEvent.COMMAND_REJECTED,
        failure_code=f"command_rejected:{reason}"[:64],
        actor=Actor.system("ingest"),
    )


def _purchase_of_cabinet(
    session: Session, cabinet_id: int, purchase_id: uuid.UUID
) -> PurchaseSession | None:
    if session.get(PurchaseSession, purchase_id) is None:
        return None
    purchase = lock_purchase(session, purchase_id)
    if purchase.cabinet_id != cabinet_id:
        logger.warning(
            "cabinet %d reported on purchase %s of cabinet %d; ignored",
            cabinet_id,
            purchase_id,
            purchase.cabinet_id,
        )
        return None
    return purchase


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
