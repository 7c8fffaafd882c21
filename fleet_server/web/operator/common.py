"""Helpers of the operator's pages: the signed-in operator, forms, times, money, fleet rows."""

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from fleet_server.core.config import ServerSettings
from fleet_server.models import AlertKind, Role
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import SHANGHAI, local_date
from fleet_server.schemas.monitoring import AlertPublic, FleetCabinetPublic, FleetConnection
from fleet_server.schemas.products import SAMPLE_NOTICE, SAMPLE_NOTICE_EN
from fleet_server.services import alerts as alert_service
from fleet_server.services import fleet as fleet_service
from fleet_server.services.access import Actor
from fleet_server.services.errors import ServiceError
from fleet_server.services.pagination import MAX_PAGE_LIMIT
from fleet_server.web import i18n
from fleet_server.web.rendering import page_user, render
from fleet_server.web.session import CSRF_FIELD, PageUser, csrf_matches

logger = logging.getLogger(__name__)

PAGE_PREFIX = "/operator"
OperatorUser = Annotated[PageUser, Depends(page_user(Role.OPERATOR))]

# The board and the map poll the API this often, so an operator sees a fault about one
# interval after the cabinet reported it.
POLL_INTERVAL_MS = 2000
# Amounts typed in yuan: up to 9 digits and at most two decimals, so fen fit in int4.
YUAN_PATTERN = re.compile(r"^([0-9]{1,9})(?:\.([0-9]{1,2}))?$")
MAX_INT_DIGITS = 9

# Keys of the catalog that operator.js needs to word its live updates.
SCRIPT_TEXT_PREFIXES = (
    "operator.alert.",
    "operator.alert_state.",
    "operator.alerts.",
    "operator.board.",
    "operator.condition.",
    "operator.connection.",
    "operator.offline.",
    "operator.value.",
)


def actor_of(user: PageUser) -> Actor:
    return Actor.for_user(user.user)


def translator(request: Request) -> i18n.Translator:
    return i18n.Translator(i18n.request_lang(request))


def is_english(request: Request) -> bool:
    return i18n.request_lang(request) == "en"


def service_text(request: Request, error: ServiceError) -> str:
    """Return a service error's message in the page's language."""
    return error.message_en if is_english(request) else error.message


def log_rejection(user: PageUser, action: str, subject: object, error: ServiceError) -> None:
    """Log a form or button that a service rejected; the page shows the message."""
    logger.info(
        "%s of %s by %s rejected: %s (%s)",
        action,
        subject,
        user.user.username,
        error.code,
        error.message_en,
    )


def sample_notice(request: Request) -> str:
    return SAMPLE_NOTICE_EN if is_english(request) else SAMPLE_NOTICE


def script_texts(lang: i18n.Lang) -> dict[str, str]:
    """Return the texts operator.js formats, keyed without the "operator." prefix."""
    index = 0 if lang == "zh" else 1
    return {
        key.removeprefix("operator."): texts[index]
        for key, texts in i18n.CATALOG.items()
        if key.startswith(SCRIPT_TEXT_PREFIXES)
    }


def format_time(moment: datetime | None) -> str:
    """Return a time in Asia/Shanghai: HH:MM:SS today, else the date and the minute.

    operator.js formats the live values with the same rule.
    """
    if moment is None:
        return "—"
    local = moment.astimezone(SHANGHAI)
    if local.date() == local_date(utc_now()):
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def yuan(fen: int) -> str:
    """Return fen as yuan with two decimals and thousands separators, exactly."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def parse_yuan(text: str) -> int | None:
    """Return an amount typed in yuan as fen, or None if it is not a valid amount."""
    match = YUAN_PATTERN.match(text.strip())
    if match is None:
        return None
    cents = (match.group(2) or "").ljust(2, "0")
    return int(match.group(1)) * 100 + int(cents)


def parse_int(text: str | None) -> int | None:
    """Return a non-negative whole number typed in a field, or None."""
    text = (text or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > MAX_INT_DIGITS:
        return None
    return int(text)


def mark_chinese_data(text: str, names: Iterable[str]) -> Markup:
    """Return ``text`` as HTML with each of ``names`` in it marked lang="zh-CN".

    Service messages embed Chinese product names in English sentences too. The marking
    lets browsers and readers tell the data apart from the wording.
    """
    escaped = str(escape(text))
    wanted = sorted({str(escape(name)) for name in names if name}, key=len, reverse=True)
    if not wanted:
        return Markup(escaped)
    pattern = re.compile("|".join(re.escape(name) for name in wanted))
    return Markup(pattern.sub(lambda match: f'<span lang="zh-CN">{match[0]}</span>', escaped))


def csrf_ok(user: PageUser, settings: ServerSettings, fields: dict[str, str]) -> bool:
    return csrf_matches(user.token, settings.resolved_secret_key, fields.get(CSRF_FIELD))


def csrf_failed(request: Request, user: PageUser) -> Response:
    return render(request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403)


def not_found(request: Request, user: PageUser) -> Response:
    return render(
        request, "error.html", {"message_key": "error.not_found"}, user=user, status_code=404
    )


async def form_fields(request: Request) -> dict[str, str]:
    """Return the posted form's text fields; a sync handler cannot await the body itself."""
    form = await request.form()
    return {key: value for key, value in form.multi_items() if isinstance(value, str)}


FormFields = Annotated[dict[str, str], Depends(form_fields)]


# --- Fleet rows and alerts ------------------------------------------------------------------


def fleet_rows(session: Session, actor: Actor) -> list[FleetCabinetPublic]:
    """Return every visible cabinet with its live state, reading page after page."""
    rows: list[FleetCabinetPublic] = []
    while True:
        page = fleet_service.list_fleet(
            session, actor=actor, limit=MAX_PAGE_LIMIT, offset=len(rows)
        )
        rows += page.items
        if not page.items or len(rows) >= page.total:
            return rows


def unresolved_alerts(session: Session, actor: Actor) -> list[AlertPublic]:
    alerts: list[AlertPublic] = []
    while True:
        page = alert_service.list_alerts(
            session, actor=actor, limit=MAX_PAGE_LIMIT, offset=len(alerts), unresolved=True
        )
        alerts += [fleet_service.alert_public(alert) for alert in page.items]
        if not page.items or len(alerts) >= page.total:
            return alerts


def cabinet_condition(row: FleetCabinetPublic) -> str:
    """Classify a cabinet for its colour: ok, attention, offline or unknown.

    operator.js repeats this rule for the live updates.
    """
    if row.connection is FleetConnection.UNKNOWN:
        return "unknown"
    if row.connection is FleetConnection.OFFLINE:
        return "offline"
    faulty = (
        row.doors_closed is False
        or row.lock_faults > 0
        or row.scale_faults > 0
        or row.serial_link_up is False
        or row.open_alerts > 0
    )
    return "attention" if faulty else "ok"


@dataclass(frozen=True)
class AlertView:
    """An alert as the pages show it; the product name stays apart as Chinese data."""

    id: int
    kiosk_id: str
    state: str
    title: str
    product: str | None
    raised_at: str
    occurrences: int
    acknowledged_by: str | None
    school_name: str
    placement_name: str


def alert_view(
    alert: AlertPublic, t: i18n.Translator, rows: dict[str, FleetCabinetPublic]
) -> AlertView:
    # Subjects look like "door:0" or "shelf:2/product:7".
    parts = (part.partition(":") for part in alert.subject.split("/") if part)
    numbers = {name: value for name, _, value in parts}
    product = alert.detail.get("product_name") if alert.kind is AlertKind.LOW_STOCK else None
    row = rows.get(alert.kiosk_id)
    return AlertView(
        id=alert.id,
        kiosk_id=alert.kiosk_id,
        state=alert.state.value,
        title=t(
            f"operator.alert.{alert.kind.value}",
            door=numbers.get("door", "?"),
            shelf=numbers.get("shelf", "?"),
        ),
        product=str(product) if product else None,
        raised_at=format_time(alert.raised_at),
        occurrences=alert.occurrences,
        acknowledged_by=alert.acknowledged_by,
        school_name=row.school_name if row else "",
        placement_name=row.placement_name if row else "",
    )


def live_context(request: Request, rows: list[FleetCabinetPublic]) -> dict[str, Any]:
    """Return what a page that operator.js keeps up to date needs."""
    return {
        "poll_interval_ms": POLL_INTERVAL_MS,
        "script_texts": script_texts(i18n.request_lang(request)),
        "kiosk_ids": [row.kiosk_id for row in rows],
    }
