"""Sales: the chart of daily sales, the list of sales to review, and refunds."""

import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.api.payment_deps import get_payment_provider
from fleet_server.models import Cabinet, Sale
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import SHANGHAI, local_date
from fleet_server.services import sales as sale_service
from fleet_server.services.access import Actor
from fleet_server.services.errors import ServiceError
from fleet_server.web import i18n
from fleet_server.web.operator.common import (
    PAGE_PREFIX,
    FormFields,
    OperatorUser,
    actor_of,
    csrf_failed,
    csrf_ok,
    fleet_rows,
    format_time,
    log_rejection,
    not_found,
    parse_int,
    parse_yuan,
    service_text,
    translator,
    yuan,
)
from fleet_server.web.rendering import render
from fleet_server.web.session import PageUser

router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)

SALES_PAGE_SIZE = 50
DAY_CHOICES = (7, 14, 30)
DEFAULT_DAYS = 14
MAX_REASON_CHARS = 500

# Chart layout in SVG user units; the SVG scales to the page width.
CHART_WIDTH = 720
CHART_HEIGHT = 260
CHART_LEFT = 64
CHART_RIGHT = 12
CHART_TOP = 28
CHART_BOTTOM = 36
CHART_TICKS = 4
BAR_FILL = 0.7
# With more days than this, only every n-th bar gets a date below it.
LABELLED_DAYS = 14


@dataclass(frozen=True)
class DaySales:
    day: date
    count: int
    total_fen: int
    refunded_fen: int


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    day: DaySales


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    plot_left: int
    plot_right: int
    baseline: float
    unit_y: float


def review_text(t: i18n.Translator, reason: str) -> str:
    """Return a review reason in words; a code the pages do not know is shown as it is."""
    key = f"operator.review.{reason}"
    return t(key) if key in i18n.CATALOG else reason


def daily_sales(
    session: Session, actor: Actor, *, days: int, kiosk_id: str | None, today: date
) -> list[DaySales]:
    """Return the sales of each of the last ``days`` days (Asia/Shanghai), oldest first.

    A sale counts on the day the cabinet recorded it. ``count`` leaves out sales worth
    nothing (door opened, nothing taken).
    """
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, SHANGHAI)
    statement = select(Sale.recorded_at, Sale.total_fen, Sale.refunded_fen).where(
        Sale.cabinet_id.in_(select(Cabinet.id).where(actor.visible_cabinets())),
        Sale.recorded_at >= start,
    )
    if kiosk_id:
        statement = statement.where(Sale.kiosk_id == kiosk_id)
    counts: Counter[date] = Counter()
    totals: Counter[date] = Counter()
    refunds: Counter[date] = Counter()
    for recorded_at, total_fen, refunded_fen in session.execute(statement):
        day = local_date(recorded_at)
        if total_fen > 0:
            counts[day] += 1
        totals[day] += total_fen
        refunds[day] += refunded_fen
    return [
        DaySales(day, counts[day], totals[day], refunds[day])
        for day in (first + timedelta(days=offset) for offset in range(days))
    ]


def nice_step(maximum: int, ticks: int) -> int:
    """Return a round step (1, 2 or 5 times a power of ten) for about ``ticks`` gridlines."""
    raw = max(maximum / ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5):
        if multiple * magnitude >= raw:
            return int(multiple * magnitude)
    return int(10 * magnitude)


def sales_chart(days: list[DaySales]) -> Chart:
    """Lay out the bars of daily sales; the axis is in whole yuan."""
    peak_yuan = math.ceil(max((day.total_fen for day in days), default=0) / 100)
    step = nice_step(peak_yuan, CHART_TICKS)
    top_yuan = max(step * math.ceil(peak_yuan / step), step)
    plot_right = CHART_WIDTH - CHART_RIGHT
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    baseline = CHART_HEIGHT - CHART_BOTTOM
    slot = (plot_right - CHART_LEFT) / max(len(days), 1)
    label_every = 1 if len(days) <= LABELLED_DAYS else math.ceil(len(days) / LABELLED_DAYS * 2)
    bars = []
    for index, day in enumerate(days):
        height = day.total_fen / 100 / top_yuan * plot_height
        labelled = index % label_every == 0 or index == len(days) - 1
        bars.append(
            Bar(
                x=round(CHART_LEFT + index * slot + slot * (1 - BAR_FILL) / 2, 1),
                y=round(baseline - height, 1),
                width=round(slot * BAR_FILL, 1),
                height=round(height, 1),
                label=day.day.strftime("%m-%d") if labelled else "",
                day=day,
            )
        )
    ticks = [
        (round(baseline - value / top_yuan * plot_height, 1), f"{value:,}")
        for value in range(0, top_yuan + 1, step)
    ]
    unit_y = CHART_TOP / 2
    return Chart(CHART_WIDTH, CHART_HEIGHT, bars, ticks, CHART_LEFT, plot_right, baseline, unit_y)


@router.get("/sales")
def sales(
    request: Request,
    session: SessionDep,
    user: OperatorUser,
    days: str | None = None,
    kiosk_id: str | None = None,
    view: str = "review",
    offset: str | None = None,
) -> Response:
    actor = actor_of(user)
    chosen_days = parse_int(days)
    if chosen_days not in DAY_CHOICES:
        chosen_days = DEFAULT_DAYS
    kiosk_ids = [row.kiosk_id for row in fleet_rows(session, actor)]
    chosen_kiosk = kiosk_id if kiosk_id in kiosk_ids else None
    review_only = view != "all"
    page_offset = parse_int(offset) or 0
    by_day = daily_sales(
        session, actor, days=chosen_days, kiosk_id=chosen_kiosk, today=local_date(utc_now())
    )
    page = sale_service.list_sales(
        session,
        actor=actor,
        limit=SALES_PAGE_SIZE,
        offset=page_offset,
        kiosk_id=chosen_kiosk,
        review_needed=True if review_only else None,
    )
    return render(
        request,
        "operator/sales.html",
        {
            "chart": sales_chart(by_day),
            "by_day": by_day,
            "period_fen": sum(day.total_fen for day in by_day),
            "period_count": sum(day.count for day in by_day),
            "days": chosen_days,
            "day_choices": DAY_CHOICES,
            "kiosk_ids": kiosk_ids,
            "chosen_kiosk": chosen_kiosk,
            "view": "review" if review_only else "all",
            "page": page,
            "page_size": SALES_PAGE_SIZE,
            "review_text": partial(review_text, translator(request)),
            "when": format_time,
            "nav_current": "sales",
        },
        user=user,
    )


# --- One sale and its refunds ---------------------------------------------------------------


def new_reference() -> str:
    """Return a refund reference; the form carries it, so a resubmission refunds once."""
    return f"web-refund:{uuid.uuid4()}"


@dataclass
class RefundForm:
    mode: str = "amount"
    amount: str = ""
    quantities: dict[int, str] = field(default_factory=dict)
    reason: str = ""
    reference: str = field(default_factory=new_reference)
    errors: dict[str, str] = field(default_factory=dict)


def find_sale(session: Session, user: PageUser, sale_id: str) -> Sale | None:
    try:
        return sale_service.get_sale(session, actor=actor_of(user), sale_id=uuid.UUID(sale_id))
    except (ValueError, ServiceError):
        return None


def render_sale(
    request: Request,
    user: PageUser,
    sale: Sale,
    form: RefundForm | None = None,
    *,
    form_error: str | None = None,
    refunded: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "operator/sale.html",
        {
            "sale": sale,
            "form": form or RefundForm(),
            "form_error": form_error,
            "refunded": refunded,
            "refundable_fen": sale.captured_fen - sale.refunded_fen,
            "review_text": partial(review_text, translator(request)),
            "when": format_time,
            "nav_current": "sales",
        },
        user=user,
        status_code=status_code,
    )


@router.get("/sales/{sale_id}")
def sale_page(
    request: Request,
    session: SessionDep,
    user: OperatorUser,
    sale_id: str,
    refund: str | None = None,
) -> Response:
    sale = find_sale(session, user, sale_id)
    if sale is None:
        return not_found(request, user)
    # The refund just made, named by its id, so the notice shows what was really refunded.
    made = next((item for item in sale.refunds if str(item.id) == refund), None)
    refunded = yuan(made.amount_fen) if made is not None else None
    return render_sale(request, user, sale, refunded=refunded)


def check_refund(
    form: RefundForm, sale: Sale, t: i18n.Translator
) -> tuple[int | None, list[sale_service.RefundLineRequest] | None]:
    """Mark the bad fields of a refund form; return (amount, None) or (None, lines)."""
    if not form.reason.strip():
        form.errors["reason"] = t("operator.error.required")
    elif len(form.reason) > MAX_REASON_CHARS:
        form.errors["reason"] = t("operator.error.reason_long")

    if form.mode == "lines":
        lines: list[sale_service.RefundLineRequest] = []
        for line in sale.lines:
            text = form.quantities.get(line.id, "").strip()
            if not text:
                continue
            quantity = parse_int(text)
            remaining = line.quantity - line.refunded_quantity
            key = f"quantity-{line.id}"
            if quantity is None:
                form.errors[key] = t("operator.error.integer")
            elif quantity > remaining:
                form.errors[key] = t("operator.error.refund_quantity", remaining=remaining)
            elif quantity > 0:
                lines.append(sale_service.RefundLineRequest(line.id, quantity))
        if not lines and not any(key.startswith("quantity-") for key in form.errors):
            form.errors["lines"] = t("operator.error.refund_no_lines")
        return (None, lines) if not form.errors else (None, None)

    refundable = sale.captured_fen - sale.refunded_fen
    amount_fen = parse_yuan(form.amount)
    if not form.amount:
        form.errors["amount"] = t("operator.error.required")
    elif amount_fen is None:
        form.errors["amount"] = t("operator.error.yuan")
    elif amount_fen == 0:
        form.errors["amount"] = t("operator.error.positive")
    elif amount_fen > refundable:
        form.errors["amount"] = t("operator.error.refund_exceeds", refundable=yuan(refundable))
    return (amount_fen, None) if not form.errors else (None, None)


@router.post("/sales/{sale_id}")
def refund(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    fields: FormFields,
    sale_id: str,
) -> Response:
    if not csrf_ok(user, settings, fields):
        return csrf_failed(request, user)
    sale = find_sale(session, user, sale_id)
    if sale is None:
        return not_found(request, user)
    t = translator(request)
    form = RefundForm(
        mode="lines" if fields.get("mode") == "lines" else "amount",
        amount=fields.get("amount", "").strip(),
        quantities={line.id: fields.get(f"quantity-{line.id}", "") for line in sale.lines},
        reason=fields.get("reason", ""),
        reference=fields.get("reference") or new_reference(),
    )
    amount_fen, lines = check_refund(form, sale, t)
    if form.errors:
        return render_sale(
            request, user, sale, form, form_error=t("form.fix_errors"), status_code=422
        )

    try:
        new_refund, _created = sale_service.refund_sale(
            session,
            actor=actor_of(user),
            provider=get_payment_provider(request, session),
            sale_id=sale.sale_id,
            amount_fen=amount_fen,
            lines=lines,
            reason=form.reason.strip(),
            reference=form.reference,
        )
    except ServiceError as error:
        session.rollback()
        log_rejection(user, "refund", sale.sale_id, error)
        message = service_text(request, error)
        if error.code == "refund_exceeds_captured" and form.mode == "amount":
            form.errors["amount"] = message
        elif error.code == "refund_line_invalid":
            form.errors["lines"] = message
        form_error = t("form.fix_errors") if form.errors else message
        fresh = find_sale(session, user, sale_id)
        return render_sale(
            request, user, fresh or sale, form, form_error=form_error, status_code=422
        )
    session.commit()
    return RedirectResponse(
        f"/operator/sales/{sale.sale_id}?refund={new_refund.id}", status_code=303
    )
