"""Sales: settling a purchase when its sale arrives, receipts, staff lists and refunds."""

import enum
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fleet_server.models import (
    Cabinet,
    County,
    HoldStatus,
    Product,
    PurchaseSession,
    PurchaseState,
    Role,
    Sale,
    SaleLine,
    SaleRefund,
    ServerReviewReason,
)
from fleet_server.models.base import utc_now
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import InvalidInputError, PermissionDeniedError
from fleet_server.services.pagination import PageResult, fetch_page
from fleet_server.services.payments import PaymentError, PaymentProvider
from fleet_server.services.procurement_posting import (
    CertifiedProduct,
    PricedLine,
    cabinet_schools,
    current_county_codes,
    post,
    refund_postings,
)
from fleet_server.services.purchase_errors import (
    PaymentRejectedError,
    PurchaseFlowError,
    SaleNotFoundError,
)
from fleet_server.services.purchase_states import (
    IllegalTransitionError,
    PurchaseEvent,
    next_state,
)
from fleet_server.services.sql import matches_any, take_sqlite_write_lock
from kiosk_agent.contract import SaleOutcome, SaleRecord

logger = logging.getLogger(__name__)

INGEST_ACTOR = Actor.system("ingest")

# Outcomes after which the student was charged for what the cabinet reports taken. The
# others end a session that never properly opened, and normally have no lines.
CHARGED_OUTCOMES = frozenset(
    {SaleOutcome.COMPLETED, SaleOutcome.NOTHING_TAKEN, SaleOutcome.FORCED_OPEN}
)


# --- Settlement (called by ingest inside its batch transaction) -----------------------------


@dataclass
class Settlement:
    """Outcome of settling one new sale, to be written to its row."""

    purchase_session_id: uuid.UUID | None = None
    captured_fen: int = 0
    review_reasons: list[ServerReviewReason] = field(default_factory=list)


def lock_purchases(
    session: Session, purchase_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, PurchaseSession]:
    """Lock the purchase sessions of a batch of sales and return them by id.

    Rows are locked in id order, so two workers settling overlapping batches cannot deadlock.
    """
    if not purchase_ids:
        return {}
    for purchase_id in sorted(purchase_ids):
        take_sqlite_write_lock(session, PurchaseSession, purchase_id)
    statement = (
        select(PurchaseSession)
        .where(matches_any(session, PurchaseSession.id, purchase_ids))
        .order_by(PurchaseSession.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {purchase.id: purchase for purchase in session.scalars(statement)}


def settled_purchase_ids(session: Session, purchase_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Return those of ``purchase_ids`` that an earlier sale settled already."""
    if not purchase_ids:
        return set()
    statement = select(Sale.purchase_session_id).where(
        matches_any(session, Sale.purchase_session_id, purchase_ids)
    )
    return {purchase_id for purchase_id in session.scalars(statement) if purchase_id is not None}


def settle_sale(
    session: Session,
    *,
    provider: PaymentProvider,
    record: SaleRecord,
    cabinet_id: int,
    purchase: PurchaseSession | None,
    already_settled: bool,
) -> Settlement:
    """Capture exactly the value of the sale's lines from its session's hold.

    The capture never exceeds the hold: lines worth more are charged the hold and the sale
    is flagged exceeds_hold. The rest of the hold is released in the same step. A sale
    whose session is unknown, belongs to another cabinet, was settled by an earlier sale,
    or whose hold was released already, is charged nothing and flagged for review.
    """
    settlement = Settlement()
    if purchase is None:
        settlement.review_reasons.append(ServerReviewReason.UNKNOWN_SESSION)
        return settlement
    if purchase.cabinet_id != cabinet_id:
        settlement.review_reasons.append(ServerReviewReason.SESSION_CABINET_MISMATCH)
        return settlement
    if already_settled:
        settlement.review_reasons.append(ServerReviewReason.SESSION_ALREADY_SETTLED)
        return settlement

    settlement.purchase_session_id = purchase.id
    hold = purchase.hold
    if hold.status is not HoldStatus.HELD:
        settlement.review_reasons.append(ServerReviewReason.HOLD_NOT_OPEN)
        logger.warning(
            "sale %s arrived for purchase %s whose hold is %s; not charged",
            record.sale_id,
            purchase.id,
            hold.status.value,
        )
        return settlement

    total_fen = record.total_fen
    capture_fen = min(total_fen, purchase.hold_amount_fen)
    if total_fen > purchase.hold_amount_fen:
        settlement.review_reasons.append(ServerReviewReason.EXCEEDS_HOLD)
        logger.warning(
            "sale %s of %d fen exceeds the hold of %d fen of purchase %s; captured the hold",
            record.sale_id,
            total_fen,
            purchase.hold_amount_fen,
            purchase.id,
        )
    try:
        result = provider.capture(purchase.hold_id, capture_fen)
    except PaymentError as error:
        raise PaymentRejectedError.from_payment_error(error) from error
    settlement.captured_fen = result.captured_fen

    event = (
        PurchaseEvent.SALE_CHARGED
        if record.outcome in CHARGED_OUTCOMES
        else PurchaseEvent.SALE_CANCELLED
    )
    before_state = purchase.state
    try:
        purchase.state = next_state(purchase.state, event, session_id=purchase.id)
    except IllegalTransitionError:
        # A failed session whose hold is still open does not exist: failing releases it.
        logger.error(
            "sale %s settles purchase %s in state %s", record.sale_id, purchase.id, purchase.state
        )
        purchase.state = PurchaseState.COMPLETED
    purchase.finished_at = utc_now()
    record_audit(
        session,
        actor=INGEST_ACTOR,
        action="payment.capture",
        object_type="purchase",
        object_id=purchase.id,
        before={"state": before_state},
        after={
            "state": purchase.state,
            "sale_id": str(record.sale_id),
            "captured_fen": result.captured_fen,
            "released_fen": result.released_fen,
        },
    )
    return settlement


# --- Reading sales --------------------------------------------------------------------------


def list_sales(
    session: Session,
    *,
    actor: Actor,
    limit: int,
    offset: int,
    kiosk_id: str | None = None,
    review_needed: bool | None = None,
) -> PageResult[Sale]:
    """List the sales of the cabinets the caller may see, newest first."""
    statement = (
        select(Sale)
        .where(Sale.cabinet_id.in_(select(Cabinet.id).where(actor.visible_cabinets())))
        .options(selectinload(Sale.lines), selectinload(Sale.refunds))
        .order_by(Sale.recorded_at.desc(), Sale.id.desc())
    )
    if kiosk_id is not None:
        statement = statement.where(Sale.kiosk_id == kiosk_id)
    if review_needed is not None:
        statement = statement.where(Sale.review_needed == review_needed)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_sale(session: Session, *, actor: Actor, sale_id: uuid.UUID) -> Sale:
    """Return the sale with this id on a cabinet the caller may see.

    Raises SaleNotFoundError, or PurchaseFlowError sale_ambiguous in the unlikely case that
    two visible cabinets reported the same sale id.
    """
    statement = (
        select(Sale)
        .where(Sale.sale_id == sale_id)
        .where(Sale.cabinet_id.in_(select(Cabinet.id).where(actor.visible_cabinets())))
        .options(selectinload(Sale.lines), selectinload(Sale.refunds))
    )
    sales = list(session.scalars(statement))
    if not sales:
        raise SaleNotFoundError(sale_id)
    if len(sales) > 1:
        raise PurchaseFlowError(
            code="sale_ambiguous",
            message=f"多个柜子报告了同一销售编号 {sale_id}，请联系管理员",
            message_en=f"Several cabinets reported sale id {sale_id}; ask an administrator",
        )
    return sales[0]


def sale_of_purchase(session: Session, purchase_id: uuid.UUID) -> Sale | None:
    statement = (
        select(Sale)
        .where(Sale.purchase_session_id == purchase_id)
        .options(
            selectinload(Sale.lines)
            .selectinload(SaleLine.source_county)
            .selectinload(County.codes),
            selectinload(Sale.refunds),
        )
    )
    return session.scalar(statement)


# --- Receipts -------------------------------------------------------------------------------


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"  # hold placed, no sale yet
    PAID = "paid"
    NO_CHARGE = "no_charge"  # sale with nothing to pay, hold released
    PARTIALLY_PAID = "partially_paid"  # lines worth more than the hold; flagged for review
    UNPAID = "unpaid"  # sale arrived after the hold was released; flagged for review
    RELEASED = "released"  # no sale, hold released (failed or released by staff)
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


def payment_status(purchase: PurchaseSession, sale: Sale | None) -> PaymentStatus:
    hold = purchase.hold
    if hold.status is HoldStatus.HELD:
        return PaymentStatus.PENDING
    if hold.status is HoldStatus.RELEASED:
        if sale is not None and sale.total_fen > 0:
            return PaymentStatus.UNPAID
        return PaymentStatus.RELEASED
    if hold.captured_fen == 0:
        return PaymentStatus.NO_CHARGE
    if hold.refunded_fen >= hold.captured_fen:
        return PaymentStatus.REFUNDED
    if hold.refunded_fen > 0:
        return PaymentStatus.PARTIALLY_REFUNDED
    if sale is not None and hold.captured_fen < sale.total_fen:
        return PaymentStatus.PARTIALLY_PAID
    return PaymentStatus.PAID


# --- Refunds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundLineRequest:
    line_id: int
    quantity: int


def refund_sale(
    session: Session,
    *,
    actor: Actor,
    provider: PaymentProvider,
    sale_id: uuid.UUID,
    amount_fen: int | None,
    lines: Sequence[RefundLineRequest] | None,
    reason: str,
    reference: str | None,
) -> tuple[SaleRefund, bool]:
    """Refund part or all of what a sale captured, by amount or by lines.

    Returns the refund and whether this call made it (False when ``reference`` names an
    earlier identical refund). The refunds of a sale never add up to more than it
    captured, and a line never has more items refunded than it sold.
    """
    if actor.role not in (Role.OPERATOR, Role.SCHOOL_ADMIN, Role.PROVINCE_ADMIN):
        raise PermissionDeniedError(
            message="没有权限：只有运营企业或管理员可以退款",
            message_en="Only operators and administrators may refund",
        )
    sale = get_sale(session, actor=actor, sale_id=sale_id)
    if reference is not None:
        existing = session.scalar(select(SaleRefund).where(SaleRefund.reference == reference))
        if existing is not None:
            return _repeated_refund(existing, sale=sale, amount_fen=amount_fen), False
    reference = reference or f"refund:{uuid.uuid4()}"

    take_sqlite_write_lock(session, Sale, sale.id)
    sale = session.scalars(
        select(Sale)
        .where(Sale.id == sale.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    line_records: list[dict[str, int]] | None = None
    if lines is not None:
        amount_fen, line_records = _refund_lines(sale, lines)
    assert amount_fen is not None
    refundable_fen = sale.captured_fen - sale.refunded_fen
    if amount_fen > refundable_fen:
        raise InvalidInputError(
            code="refund_exceeds_captured",
            message=f"退款金额 {amount_fen / 100:.2f} 元超过可退金额 {refundable_fen / 100:.2f} 元",
            message_en=f"Refund of {amount_fen} fen exceeds the {refundable_fen} fen "
            "still refundable on this sale",
        )
    purchase = (
        session.get(PurchaseSession, sale.purchase_session_id)
        if sale.purchase_session_id is not None
        else None
    )
    assert purchase is not None, "a sale with captured money has a purchase session"
    try:
        provider.refund(purchase.hold_id, amount_fen, reason, reference)
    except PaymentError as error:
        raise PaymentRejectedError.from_payment_error(error) from error

    _post_refund(session, sale, amount_fen, line_records)
    before = {"refunded_fen": sale.refunded_fen}
    sale.refunded_fen += amount_fen
    refund = SaleRefund(
        sale_pk=sale.id,
        reference=reference,
        amount_fen=amount_fen,
        reason=reason,
        lines=line_records,
        actor_user_id=actor.user_id,
    )
    session.add(refund)
    record_audit(
        session,
        actor=actor,
        action="payment.refund",
        object_type="sale",
        object_id=sale.sale_id,
        before=before,
        after={
            "refunded_fen": sale.refunded_fen,
            "amount_fen": amount_fen,
            "reference": reference,
            "reason": reason,
        },
    )
    session.flush()
    logger.info("refunded %d fen of sale %s (%s)", amount_fen, sale.sale_id, reference)
    return refund, True


def _post_refund(
    session: Session, sale: Sale, amount_fen: int, line_records: list[dict[str, int]] | None
) -> None:
    """Take the refund back out of the school's procurement totals, on the sale's day."""
    school_id = cabinet_schools(session, [sale.cabinet_id]).get(sale.cabinet_id)
    if school_id is None:
        return
    products = {
        product.id: product
        for product in session.scalars(
            select(Product).where(
                Product.id.in_({line.product_id for line in sale.lines if line.product_id})
            )
        )
    }
    priced = []
    for line in sale.lines:
        product = products.get(line.product_id) if line.product_id is not None else None
        priced.append(
            PricedLine(
                CertifiedProduct(
                    product.id, product.source_county_id, product.valid_from, product.valid_until
                )
                if product is not None
                else None,
                line.amount_fen,
                line.quantity,
            )
        )
    refunded_lines: dict[int, int] | None = None
    if line_records is not None:
        index_of = {line.id: index for index, line in enumerate(sale.lines)}
        refunded_lines = {}
        for record in line_records:
            index = index_of[record["line_id"]]
            refunded_lines[index] = refunded_lines.get(index, 0) + record["amount_fen"]
    post(
        session,
        refund_postings(
            school_id=school_id,
            recorded_at=sale.recorded_at,
            lines=priced,
            captured_fen=sale.captured_fen,
            refunded_before_fen=sale.refunded_fen,
            refund_fen=amount_fen,
            refunded_lines=refunded_lines,
            county_codes=current_county_codes(session),
        ),
    )


def _repeated_refund(existing: SaleRefund, *, sale: Sale, amount_fen: int | None) -> SaleRefund:
    if existing.sale_pk != sale.id or (
        amount_fen is not None and existing.amount_fen != amount_fen
    ):
        raise InvalidInputError(
            code="reference_conflict",
            message=f"请求编号 {existing.reference} 已用于另一笔退款",
            message_en=f"Reference {existing.reference} was used for a different refund",
        )
    return existing


def _refund_lines(
    sale: Sale, requested: Sequence[RefundLineRequest]
) -> tuple[int, list[dict[str, int]]]:
    """Mark the requested items refunded on their lines and return the amount and a record."""
    lines_by_id = {line.id: line for line in sale.lines}
    amount_fen = 0
    records: list[dict[str, int]] = []
    for request in requested:
        line = lines_by_id.get(request.line_id)
        if line is None:
            raise InvalidInputError(
                code="refund_line_invalid",
                message=f"销售明细 {request.line_id} 不属于该销售",
                message_en=f"Line {request.line_id} is not a line of sale {sale.sale_id}",
            )
        remaining = line.quantity - line.refunded_quantity
        if request.quantity > remaining:
            raise InvalidInputError(
                code="refund_line_invalid",
                message=f"{line.product_name} 最多还可退 {remaining} 件",
                message_en=f"Line {line.id} has {remaining} items left to refund, "
                f"not {request.quantity}",
            )
        line.refunded_quantity += request.quantity
        line_amount = request.quantity * line.unit_price_fen
        amount_fen += line_amount
        records.append(
            {"line_id": line.id, "quantity": request.quantity, "amount_fen": line_amount}
        )
    return amount_fen, records
