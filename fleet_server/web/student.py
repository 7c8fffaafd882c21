"""The student's pages: scan to buy at a cabinet, follow the purchase, receipts, campus card.

A student reaches ``/buy/{kiosk_id}?c=CODE`` from the QR code on the cabinet screen. The
confirm page shows the cabinet, its products and the hold, and its form starts the
purchase through the purchase service. ``/me/purchases/{id}`` then follows the session,
because student.js polls the purchase API, and shows the receipt once the sale arrives.

The purchase service's error codes are mapped to this area's messages in ``notice_for``,
so a page never shows a service message in the wrong language.
"""

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.api.payment_deps import ProviderDep, PublisherDep
from fleet_server.core.config import ServerSettings
from fleet_server.models import (
    ACTIVE_STATES,
    Building,
    Cabinet,
    HoldStatus,
    LocationType,
    Placement,
    PurchaseSession,
    PurchaseState,
    Role,
    Sale,
    School,
    TransactionKind,
    WalletTransaction,
)
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import SHANGHAI
from fleet_server.services import purchases as purchase_service
from fleet_server.services import wallets as wallet_service
from fleet_server.services.access import Actor
from fleet_server.services.errors import NotFoundError, ServiceError
from fleet_server.services.planograms import latest_planogram
from fleet_server.services.purchase_errors import BalanceTooLowError, PurchaseFlowError
from fleet_server.services.purchase_states import TERMINAL_STATES
from fleet_server.services.sales import PaymentStatus, payment_status, sale_of_purchase
from fleet_server.services.wallets import WalletView
from fleet_server.web import i18n
from fleet_server.web.messages import student as student_messages
from fleet_server.web.rendering import OptionalUser, fen_to_yuan, page_user, render
from fleet_server.web.session import CSRF_FIELD, PageUser, csrf_matches

i18n.register(student_messages)

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
StudentUser = Annotated[PageUser, Depends(page_user(Role.STUDENT))]

# Codes on the cabinet screen are 16 hex digits. Other characters are rejected here, because
# hmac.compare_digest raises TypeError for non-ASCII text.
CODE_PATTERN = re.compile(r"[0-9A-Za-z]{1,64}")
KIOSK_ID_MAX_CHARS = 64
# The QR code carries no door number, so the page opens the door the API opens by default.
PURCHASE_DOOR = 0
HISTORY_PAGE_SIZE = 20
# Largest ?page= accepted. It bounds the query offset far above one student's history.
MAX_HISTORY_PAGE = 10_000
# Errors after which pressing the button again with the same code can succeed.
RETRYABLE_CODES = frozenset({"cabinet_busy", "cabinet_offline", "cabinet_unreachable"})
# Error codes of starting a purchase that have a message of their own in this area.
START_ERROR_CODES = frozenset(
    {
        "cabinet_not_found",
        "purchase_code_expired",
        "purchase_code_invalid",
        "cabinet_offline",
        "cabinet_out_of_service",
        "cabinet_not_provisioned",
        "cabinet_busy",
        "cabinet_unreachable",
    }
)


# --- What the pages show --------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """A message for the page: its catalog key and values, and whether the button stays."""

    key: str
    values: dict[str, str] = field(default_factory=dict)
    can_retry: bool = False


@dataclass(frozen=True)
class CabinetPlace:
    kiosk_id: str
    school: str
    building: str
    location_type: LocationType
    floor: int | None
    description: str


@dataclass(frozen=True)
class OfferedProduct:
    name: str
    price_fen: int
    weight_g: str
    county: str
    is_sample: bool


@dataclass(frozen=True)
class ReceiptLine:
    name: str
    quantity: int
    unit_price_fen: int
    amount_fen: int
    refunded_quantity: int
    county: str | None


@dataclass(frozen=True)
class RefundLine:
    amount_fen: int
    reason: str
    at: str


@dataclass(frozen=True)
class PurchaseView:
    """One purchase as its page shows it: live state, and the receipt once the sale is in."""

    id: uuid.UUID
    state: PurchaseState
    payment_status: PaymentStatus
    place: CabinetPlace
    started_at: str
    recorded_at: str | None
    hold_fen: int
    total_fen: int | None
    charged_fen: int
    released_fen: int
    refunded_fen: int
    balance_after_fen: int | None
    review_needed: bool
    failure_key: str | None
    lines: list[ReceiptLine]
    refunds: list[RefundLine]

    @property
    def live(self) -> bool:
        """Return whether a sale may still arrive, so the page keeps following it."""
        return self.total_fen is None and self.state not in TERMINAL_STATES

    @property
    def has_receipt(self) -> bool:
        return self.total_fen is not None


@dataclass(frozen=True)
class HistoryRow:
    id: uuid.UUID
    started_at: str
    place: CabinetPlace | None
    status_key: str
    tone: str
    total_fen: int | None
    charged_fen: int
    refunded_fen: int
    live: bool


def local_time(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def grams_text(milligrams: int) -> str:
    """Return a pack weight in grams, with one decimal only where the weight needs it."""
    whole, rest = divmod(milligrams, 1000)
    return str(whole) if rest == 0 else f"{milligrams / 1000:.1f}"


# --- Errors -----------------------------------------------------------------------------------


def notice_for(error: ServiceError) -> Notice:
    """Return the page message for an error of the purchase service."""
    if isinstance(error, BalanceTooLowError):
        return Notice(
            "student.error.balance_too_low",
            {
                "available": fen_to_yuan(max(error.available_fen, 0)),
                "minimum": fen_to_yuan(error.minimum_fen),
            },
        )
    if error.code.startswith("payment_"):
        return Notice("student.error.payment_failed", can_retry=True)
    if error.code in START_ERROR_CODES:
        return Notice(f"student.error.{error.code}", can_retry=error.code in RETRYABLE_CODES)
    logger.warning("purchase page has no message for error %s: %s", error.code, error.message_en)
    return Notice("student.error.unknown", can_retry=True)


def status_of(error: ServiceError) -> int:
    if isinstance(error, PurchaseFlowError):
        return error.status_code
    return 404 if isinstance(error, NotFoundError) else 400


# --- Loading ----------------------------------------------------------------------------------


def find_cabinet(session: Session, kiosk_id: str) -> Cabinet | None:
    if len(kiosk_id) > KIOSK_ID_MAX_CHARS:
        return None
    return session.scalar(select(Cabinet).where(Cabinet.kiosk_id == kiosk_id))


def cabinet_places(session: Session, cabinet_ids: set[int]) -> dict[int, CabinetPlace]:
    """Return where each cabinet is: school, building and placement, by cabinet id."""
    if not cabinet_ids:
        return {}
    rows = session.execute(
        select(
            Cabinet.id,
            Cabinet.kiosk_id,
            School.name,
            Building.name,
            Building.location_type,
            Placement.floor,
            Placement.description,
        )
        .join(Placement, Cabinet.placement_id == Placement.id)
        .join(Building, Placement.building_id == Building.id)
        .join(School, Building.school_id == School.id)
        .where(Cabinet.id.in_(cabinet_ids))
    )
    return {
        row[0]: CabinetPlace(
            kiosk_id=row[1],
            school=row[2],
            building=row[3],
            location_type=row[4],
            floor=row[5],
            description=row[6],
        )
        for row in rows
    }


def offered_products(session: Session, cabinet_id: int) -> list[OfferedProduct]:
    """Return the products of the cabinet's newest planogram, each once, in shelf order."""
    planogram = latest_planogram(session, cabinet_id)
    if planogram is None:
        return []
    products: dict[int, OfferedProduct] = {}
    for shelf in planogram.shelves:
        for line in shelf.lines:
            if line.product_id in products:
                continue
            products[line.product_id] = OfferedProduct(
                name=line.product.name,
                price_fen=line.price_fen,
                weight_g=grams_text(line.unit_weight_mg),
                county=line.product.source_county.name,
                is_sample=line.product.is_sample,
            )
    return list(products.values())


def active_purchase_of(session: Session, *, user_id: int, cabinet_id: int) -> uuid.UUID | None:
    """Return the student's purchase still running at this cabinet, if any."""
    return session.scalar(
        select(PurchaseSession.id)
        .where(
            PurchaseSession.user_id == user_id,
            PurchaseSession.cabinet_id == cabinet_id,
            PurchaseSession.state.in_(ACTIVE_STATES),
            PurchaseSession.deadline_at >= utc_now(),
        )
        .order_by(PurchaseSession.created_at.desc())
        .limit(1)
    )


def precheck(
    session: Session, settings: ServerSettings, cabinet: Cabinet, code: str, available_fen: int
) -> Notice | None:
    """Return why a purchase cannot start now, checked in the order the service checks.

    The service checks again when the button is pressed, so this only spares the student a
    button that cannot work. A busy cabinet is left to the service.
    """
    if not code:
        return Notice("student.error.purchase_code_missing")
    if not CODE_PATTERN.fullmatch(code):
        return Notice("student.error.purchase_code_invalid")
    try:
        key = purchase_service.cabinet_key(cabinet)
        purchase_service.check_purchase_code(key, cabinet.kiosk_id, code, now=utc_now())
    except PurchaseFlowError as error:
        return notice_for(error)
    unavailable = purchase_service.cabinet_is_available(session, cabinet)
    if unavailable is not None:
        return notice_for(unavailable)
    if available_fen < settings.purchase_min_balance_fen:
        return notice_for(
            BalanceTooLowError(
                available_fen=available_fen, minimum_fen=settings.purchase_min_balance_fen
            )
        )
    return None


def balance_after(session: Session, purchase: PurchaseSession) -> int | None:
    """Return the balance right after the purchase was settled, or None before that."""
    return session.scalar(
        select(WalletTransaction.balance_after_fen)
        .where(
            WalletTransaction.hold_id == purchase.hold_id,
            WalletTransaction.kind.in_((TransactionKind.CAPTURE, TransactionKind.RELEASE)),
        )
        .order_by(WalletTransaction.id.desc())
        .limit(1)
    )


def failure_key(failure_code: str | None) -> str | None:
    if failure_code is None:
        return None
    if failure_code.startswith("command_rejected"):
        return "student.failed.command_rejected"
    if failure_code in ("publish_failed", "released_by_staff"):
        return f"student.failed.{failure_code}"
    return None


def purchase_view(
    session: Session, purchase: PurchaseSession, sale: Sale | None, place: CabinetPlace
) -> PurchaseView:
    hold = purchase.hold
    released_fen = {
        HoldStatus.HELD: 0,
        HoldStatus.CAPTURED: hold.amount_fen - hold.captured_fen,
        HoldStatus.RELEASED: hold.amount_fen,
    }[hold.status]
    lines = []
    refunds = []
    if sale is not None:
        lines = [
            ReceiptLine(
                name=line.product_name,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                amount_fen=line.amount_fen,
                refunded_quantity=line.refunded_quantity,
                county=line.source_county.name if line.source_county else None,
            )
            for line in sale.lines
        ]
        refunds = [
            RefundLine(
                amount_fen=refund.amount_fen, reason=refund.reason, at=local_time(refund.created_at)
            )
            for refund in sale.refunds
        ]
    return PurchaseView(
        id=purchase.id,
        state=purchase.state,
        payment_status=payment_status(purchase, sale),
        place=place,
        started_at=local_time(purchase.created_at),
        recorded_at=local_time(sale.recorded_at) if sale else None,
        hold_fen=hold.amount_fen,
        total_fen=sale.total_fen if sale else None,
        charged_fen=hold.captured_fen,
        released_fen=released_fen,
        refunded_fen=hold.refunded_fen,
        balance_after_fen=balance_after(session, purchase),
        review_needed=sale.review_needed if sale else False,
        failure_key=failure_key(purchase.failure_code),
        lines=lines,
        refunds=refunds,
    )


def history_status(state: PurchaseState, status: PaymentStatus) -> tuple[str, str]:
    """Return the catalog key and badge tone of a purchase in the history list."""
    if state in ACTIVE_STATES:
        return "student.status.in_progress", "info"
    if state is PurchaseState.EXPIRED:
        return "student.status.waiting", "warn"
    if state is PurchaseState.FAILED:
        return "student.status.failed", "bad"
    if state is PurchaseState.CANCELLED:
        return "student.status.cancelled", ""
    by_payment = {
        PaymentStatus.PAID: ("student.status.paid", "ok"),
        PaymentStatus.NO_CHARGE: ("student.status.no_charge", ""),
        PaymentStatus.PARTIALLY_REFUNDED: ("student.status.partially_refunded", "warn"),
        PaymentStatus.REFUNDED: ("student.status.refunded", ""),
        PaymentStatus.PARTIALLY_PAID: ("student.status.review", "warn"),
        PaymentStatus.UNPAID: ("student.status.review", "warn"),
        PaymentStatus.RELEASED: ("student.status.cancelled", ""),
        PaymentStatus.PENDING: ("student.status.in_progress", "info"),
    }
    return by_payment[status]


def history(session: Session, *, user_id: int, page: int) -> tuple[list[HistoryRow], int]:
    """Return one page of the student's purchases, newest first, and the number of pages."""
    result = purchase_service.list_purchases_of_user(
        session, user_id=user_id, limit=HISTORY_PAGE_SIZE, offset=(page - 1) * HISTORY_PAGE_SIZE
    )
    sales = {
        sale.purchase_session_id: sale
        for sale in session.scalars(
            select(Sale).where(Sale.purchase_session_id.in_([p.id for p in result.items]))
        )
    }
    places = cabinet_places(session, {purchase.cabinet_id for purchase in result.items})
    rows = []
    for purchase in result.items:
        sale = sales.get(purchase.id)
        status_key, tone = history_status(purchase.state, payment_status(purchase, sale))
        rows.append(
            HistoryRow(
                id=purchase.id,
                started_at=local_time(purchase.created_at),
                place=places.get(purchase.cabinet_id),
                status_key=status_key,
                tone=tone,
                total_fen=sale.total_fen if sale else None,
                charged_fen=purchase.hold.captured_fen,
                refunded_fen=purchase.hold.refunded_fen,
                live=sale is None and purchase.state not in TERMINAL_STATES,
            )
        )
    pages = max(1, -(-result.total // HISTORY_PAGE_SIZE))
    return rows, pages


def live_texts(request: Request) -> dict[str, Any]:
    """Return the texts student.js shows while it follows a purchase, in the page language."""
    translate = i18n.Translator(i18n.request_lang(request))
    states = [state.value for state in PurchaseState]
    return {
        "states": {
            state: {
                "title": translate(f"student.state.{state}.title"),
                "hint": translate(f"student.state.{state}.hint"),
            }
            for state in states
        },
        "errors": {
            code: translate(f"student.error.{code}")
            for code in ("token_expired", "not_authenticated", "network", "unknown")
        },
        "sign_in_again": translate("student.sign_in_again"),
    }


# --- Pages ------------------------------------------------------------------------------------


def render_unknown_cabinet(request: Request, user: PageUser | None) -> Response:
    return render(
        request,
        "student/unavailable.html",
        {"notice": Notice("student.error.cabinet_not_found")},
        user=user,
        status_code=404,
    )


def render_confirm(
    request: Request,
    session: Session,
    settings: ServerSettings,
    user: PageUser,
    cabinet: Cabinet,
    code: str,
    *,
    notice: Notice | None = None,
    status_code: int = 200,
) -> Response:
    """Render the confirm page; ``notice`` replaces the page's own check when given."""
    wallet: WalletView = wallet_service.get_wallet(
        session, actor=Actor.for_user(user.user), user_id=user.user.id
    )
    active_id = active_purchase_of(session, user_id=user.user.id, cabinet_id=cabinet.id)
    if notice is None and active_id is None:
        notice = precheck(session, settings, cabinet, code, wallet.available_fen)
    hold_fen = min(wallet.available_fen, settings.purchase_hold_max_fen)
    can_start = active_id is None and (notice is None or notice.can_retry)
    return render(
        request,
        "student/confirm.html",
        {
            "place": cabinet_places(session, {cabinet.id})[cabinet.id],
            "products": offered_products(session, cabinet.id),
            "wallet": wallet,
            "hold_fen": hold_fen,
            "code": code,
            "notice": notice,
            "can_start": can_start,
            "active_id": active_id,
        },
        user=user,
        status_code=status_code,
    )


@router.get("/buy/{kiosk_id}")
def confirm_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: StudentUser,
    kiosk_id: str,
    c: str = "",
) -> Response:
    cabinet = find_cabinet(session, kiosk_id)
    if cabinet is None:
        return render_unknown_cabinet(request, user)
    return render_confirm(request, session, settings, user, cabinet, c)


@router.post("/buy/{kiosk_id}")
def start_purchase(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    provider: ProviderDep,
    publisher: PublisherDep,
    user: StudentUser,
    kiosk_id: str,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    c: str = "",
) -> Response:
    """Start the purchase and go to its live page, or show the confirm page with the reason."""
    cabinet = find_cabinet(session, kiosk_id)
    if cabinet is None:
        return render_unknown_cabinet(request, user)
    if not csrf_matches(user.token, settings.resolved_secret_key, csrf_token):
        notice = Notice("error.csrf", can_retry=True)
        return render_confirm(
            request, session, settings, user, cabinet, c, notice=notice, status_code=403
        )
    if not CODE_PATTERN.fullmatch(c):
        notice = Notice(
            "student.error.purchase_code_invalid" if c else "student.error.purchase_code_missing"
        )
        return render_confirm(
            request, session, settings, user, cabinet, c, notice=notice, status_code=422
        )
    try:
        purchase = purchase_service.start_purchase(
            session,
            actor=Actor.for_user(user.user),
            provider=provider,
            publisher=publisher,
            settings=settings,
            kiosk_id=cabinet.kiosk_id,
            code=c,
            door=PURCHASE_DOOR,
        )
    except (PurchaseFlowError, NotFoundError) as error:
        session.rollback()
        return render_confirm(
            request,
            session,
            settings,
            user,
            cabinet,
            c,
            notice=notice_for(error),
            status_code=status_of(error),
        )
    return RedirectResponse(f"/me/purchases/{purchase.id}", status_code=303)


@router.get("/me/purchases/{purchase_id}")
def purchase_page(
    request: Request, session: SessionDep, user: StudentUser, purchase_id: str
) -> Response:
    """Follow a purchase live while it runs, then show its receipt."""
    try:
        parsed = uuid.UUID(purchase_id)
        purchase = purchase_service.get_purchase(
            session, actor=Actor.for_user(user.user), purchase_id=parsed
        )
    except (ValueError, NotFoundError):
        return render(
            request,
            "student/unavailable.html",
            {"notice": Notice("student.error.purchase_not_found")},
            user=user,
            status_code=404,
        )
    session.commit()
    sale = sale_of_purchase(session, purchase.id)
    place = cabinet_places(session, {purchase.cabinet_id})[purchase.cabinet_id]
    view = purchase_view(session, purchase, sale, place)
    return render(
        request,
        "student/purchase.html",
        {"purchase": view, "texts": live_texts(request)},
        user=user,
    )


@router.get("/me")
def card_page(
    request: Request, session: SessionDep, user: StudentUser, page: str = "1"
) -> Response:
    """Show the campus card: balance, purchase history with receipts, and card activity."""
    page_number = int(page) if page.isdigit() and 1 <= int(page) <= MAX_HISTORY_PAGE else 1
    wallet = wallet_service.get_wallet(
        session, actor=Actor.for_user(user.user), user_id=user.user.id
    )
    rows, pages = history(session, user_id=user.user.id, page=page_number)
    if page_number > pages:
        page_number = pages
        rows, pages = history(session, user_id=user.user.id, page=page_number)
    return render(
        request,
        "student/me.html",
        {
            "wallet": wallet,
            "transactions": [
                (local_time(transaction.created_at), transaction)
                for transaction in wallet.transactions
            ],
            "rows": rows,
            "page": page_number,
            "pages": pages,
        },
        user=user,
    )


@router.get("/k/{kiosk_id}")
def sticker_page(
    request: Request, session: SessionDep, user: OptionalUser, kiosk_id: str
) -> Response:
    """Show the cabinet of the printed QR code, and send the student to the screen's code."""
    cabinet = find_cabinet(session, kiosk_id)
    if cabinet is None:
        return render_unknown_cabinet(request, user)
    return render(
        request,
        "student/sticker.html",
        {
            "place": cabinet_places(session, {cabinet.id})[cabinet.id],
            "products": offered_products(session, cabinet.id),
        },
        user=user,
    )
