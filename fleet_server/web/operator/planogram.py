"""The planogram editor: shelves, products and capacity, checked for decodability on save.

The form works without JavaScript: "add a shelf", "add a product" and "remove this shelf"
are submit buttons that post the form back, and the page returns with the change and
everything typed so far. A rejected save keeps the input and shows each conflict that
the decodability check found next to its shelf.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.models import Product
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import local_date
from fleet_server.schemas.planograms import (
    MAX_CAPACITY_ITEMS,
    MAX_DOOR_INDEX,
    MAX_PRODUCTS_PER_SHELF,
    MAX_SHELF_INDEX,
    PlanogramUpdate,
)
from fleet_server.services import operators as operator_service
from fleet_server.services import planograms as planogram_service
from fleet_server.services.access import Actor
from fleet_server.services.errors import NotFoundError, ServiceError
from fleet_server.web import i18n
from fleet_server.web.operator.common import (
    PAGE_PREFIX,
    FormFields,
    OperatorUser,
    actor_of,
    csrf_failed,
    csrf_ok,
    is_english,
    log_rejection,
    mark_chinese_data,
    not_found,
    parse_int,
    parse_yuan,
    sample_notice,
    service_text,
    translator,
    yuan,
)
from fleet_server.web.rendering import render
from fleet_server.web.session import PageUser

router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)

DEFAULT_SHELF_CAPACITY = 20


@dataclass
class LineForm:
    product_id: str = ""
    price: str = ""
    error: str | None = None


@dataclass
class ShelfForm:
    """One shelf of the form, as typed, with its field errors and check results."""

    shelf: str
    capacity: str
    lines: list[LineForm]
    door: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def blank_shelf(
    number: int, capacity: str = str(DEFAULT_SHELF_CAPACITY), door: str = ""
) -> ShelfForm:
    return ShelfForm(str(number), capacity, [LineForm()], door)


def shelves_from_planogram(
    session: Session, actor: Actor, kiosk_id: str
) -> tuple[list[ShelfForm], int | None]:
    """Return the form of the newest planogram and its version, or one blank shelf."""
    try:
        planogram = planogram_service.get_planogram(session, actor=actor, kiosk_id=kiosk_id)
    except planogram_service.PlanogramNotFoundError:
        return [blank_shelf(0)], None
    shelves = [
        ShelfForm(
            shelf=str(shelf.shelf),
            capacity=str(shelf.capacity_items),
            lines=[
                LineForm(
                    product_id=str(line.product_id),
                    price=yuan(line.price_fen).replace(",", "") if line.price_overridden else "",
                )
                for line in shelf.lines
            ],
            door="" if shelf.door is None else str(shelf.door),
        )
        for shelf in planogram.shelves
    ]
    return shelves, planogram.version


def shelves_from_form(fields: dict[str, str]) -> list[ShelfForm]:
    """Read the shelves back from the posted form, exactly as typed."""
    count = min(parse_int(fields.get("shelf_count")) or 0, MAX_SHELF_INDEX + 1)
    shelves = []
    for index in range(count):
        prefix = f"shelves-{index}-"
        line_count = min(parse_int(fields.get(prefix + "line_count")) or 0, MAX_PRODUCTS_PER_SHELF)
        lines = [
            LineForm(
                product_id=fields.get(f"{prefix}product-{line}", "").strip(),
                price=fields.get(f"{prefix}price-{line}", "").strip(),
            )
            for line in range(line_count)
        ]
        shelf = fields.get(prefix + "shelf", "").strip()
        capacity = fields.get(prefix + "capacity", "").strip()
        door = fields.get(prefix + "door", "").strip()
        shelves.append(ShelfForm(shelf, capacity, lines, door))
    return shelves


def apply_editor_action(shelves: list[ShelfForm], action: str) -> None:
    """Add a shelf, add a product row to a shelf, or remove a shelf."""
    name, _, target = action.partition(":")
    index = parse_int(target)
    if name == "add_shelf":
        numbers = [number for shelf in shelves if (number := parse_int(shelf.shelf)) is not None]
        next_number = min(max(numbers, default=-1) + 1, MAX_SHELF_INDEX)
        capacity = shelves[-1].capacity if shelves else str(DEFAULT_SHELF_CAPACITY)
        door = shelves[-1].door if shelves else ""
        shelves.append(blank_shelf(next_number, capacity, door))
    elif index is None or index >= len(shelves):
        return
    elif name == "add_product" and len(shelves[index].lines) < MAX_PRODUCTS_PER_SHELF:
        shelves[index].lines.append(LineForm())
    elif name == "remove_shelf":
        del shelves[index]


def check_lines(
    shelf: ShelfForm, products: dict[int, Product], t: i18n.Translator
) -> list[dict[str, Any]]:
    """Mark bad product rows of a shelf; return the valid ones. Empty rows are skipped."""
    lines: list[dict[str, Any]] = []
    seen: set[int] = set()
    for line in shelf.lines:
        if not line.product_id:
            if line.price:
                line.error = t("operator.error.unknown_product")
            continue
        product_id = parse_int(line.product_id)
        price_fen = parse_yuan(line.price) if line.price else None
        if product_id is None or product_id not in products:
            line.error = t("operator.error.unknown_product")
        elif product_id in seen:
            line.error = t("operator.error.product_duplicate")
        elif line.price and price_fen is None:
            line.error = t("operator.error.yuan")
        elif price_fen == 0:
            line.error = t("operator.error.positive")
        else:
            seen.add(product_id)
            lines.append({"product_id": product_id, "price_fen": price_fen})
    return lines


def check_shelves(
    shelves: list[ShelfForm], products: dict[int, Product], t: i18n.Translator
) -> PlanogramUpdate | None:
    """Mark every bad field of the form; return the request body when all are valid."""
    body: list[dict[str, Any]] = []
    seen: set[int] = set()
    # Doors are given for every shelf or for none.
    doors_given = any(shelf.door for shelf in shelves)
    for shelf in shelves:
        number = parse_int(shelf.shelf)
        if not shelf.shelf:
            shelf.errors["shelf"] = t("operator.error.required")
        elif number is None or number > MAX_SHELF_INDEX:
            shelf.errors["shelf"] = t("operator.error.range", low=0, high=MAX_SHELF_INDEX)
        elif number in seen:
            shelf.errors["shelf"] = t("operator.error.shelf_duplicate", shelf=number)
        if number is not None:
            seen.add(number)
        capacity = parse_int(shelf.capacity)
        if not shelf.capacity:
            shelf.errors["capacity"] = t("operator.error.required")
        elif capacity is None or not 1 <= capacity <= MAX_CAPACITY_ITEMS:
            shelf.errors["capacity"] = t("operator.error.range", low=1, high=MAX_CAPACITY_ITEMS)
        door = parse_int(shelf.door)
        if not shelf.door and doors_given:
            shelf.errors["door"] = t("operator.error.door_missing")
        elif shelf.door and (door is None or door > MAX_DOOR_INDEX):
            shelf.errors["door"] = t("operator.error.range", low=0, high=MAX_DOOR_INDEX)
        lines = check_lines(shelf, products, t)
        if not lines and not any(line.error for line in shelf.lines):
            shelf.errors["products"] = t("operator.error.no_products")
        body.append({"shelf": number, "door": door, "capacity_items": capacity, "products": lines})
    invalid = any(shelf.errors or any(line.error for line in shelf.lines) for shelf in shelves)
    if invalid or not shelves:
        return None
    return PlanogramUpdate.model_validate({"shelves": body})


def layout_fingerprint(body: PlanogramUpdate) -> str:
    """Return a digest of the shelves, doors and products of ``body``."""
    layout = body.model_dump_json(include={"shelves"})
    return hashlib.sha256(layout.encode()).hexdigest()[:32]


def catalog_products(session: Session, today: date) -> dict[int, Product]:
    """Return the products certified today, the only ones a planogram may use."""
    products = session.scalars(
        select(Product)
        .where(Product.valid_from <= today, Product.valid_until >= today)
        .order_by(Product.id)
        .options(joinedload(Product.source_county))
    )
    return {product.id: product for product in products}


def render_editor(
    request: Request,
    user: PageUser,
    kiosk_id: str,
    products: dict[int, Product],
    shelves: list[ShelfForm],
    base_version: int | None,
    *,
    form_error: str | None = None,
    saved: dict[str, Any] | None = None,
    status_code: int = 200,
    misplaced_layout: str = "",
    accept_misplaced: bool = False,
) -> Response:
    """Render the editor; ``misplaced_layout`` is the fingerprint of a layout rejected for
    misplaced packs, whose conflicts the operator may accept by ticking the checkbox."""
    return render(
        request,
        "operator/planogram.html",
        {
            "kiosk_id": kiosk_id,
            "shelves": shelves,
            "base_version": base_version,
            "products": products,
            "max_products": MAX_PRODUCTS_PER_SHELF,
            "form_error": form_error,
            "saved": saved,
            "misplaced_layout": misplaced_layout,
            "accept_misplaced": accept_misplaced,
            "sample_notice": sample_notice(request),
            "nav_current": "board",
        },
        user=user,
        status_code=status_code,
    )


@router.get("/cabinets/{kiosk_id}/planogram")
def planogram_editor(
    request: Request, session: SessionDep, user: OperatorUser, kiosk_id: str
) -> Response:
    actor = actor_of(user)
    try:
        operator_service.get_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    except NotFoundError:
        return not_found(request, user)
    shelves, version = shelves_from_planogram(session, actor, kiosk_id)
    products = catalog_products(session, local_date(utc_now()))
    return render_editor(request, user, kiosk_id, products, shelves, version)


@router.post("/cabinets/{kiosk_id}/planogram")
def save_planogram(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    fields: FormFields,
    kiosk_id: str,
) -> Response:
    if not csrf_ok(user, settings, fields):
        return csrf_failed(request, user)
    actor = actor_of(user)
    try:
        operator_service.get_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    except NotFoundError:
        return not_found(request, user)
    t = translator(request)
    products = catalog_products(session, local_date(utc_now()))
    editor = partial(render_editor, request, user, kiosk_id, products)
    shelves = shelves_from_form(fields)
    base_version = parse_int(fields.get("base_version"))
    # The checkbox accepts only the conflicts of the layout that was shown with them.
    misplaced_layout = fields.get("misplaced_layout", "")
    ticked = bool(misplaced_layout) and fields.get("accept_misplaced_reviews") == "yes"
    editor = partial(editor, misplaced_layout=misplaced_layout, accept_misplaced=ticked)
    action = fields.get("action", "save")
    if action != "save":
        apply_editor_action(shelves, action)
        return editor(shelves, base_version)

    body = check_shelves(shelves, products, t)
    if body is None:
        error = t("form.fix_errors") if shelves else t("operator.error.no_shelves")
        return editor(shelves, base_version, form_error=error, status_code=422)
    body.base_version = base_version
    body.accept_misplaced_reviews = ticked and layout_fingerprint(body) == misplaced_layout
    english = is_english(request)
    names = [products[line.product_id].name for shelf in body.shelves for line in shelf.products]
    try:
        result = planogram_service.save_planogram(
            session, actor=actor, kiosk_id=kiosk_id, data=body
        )
    except planogram_service.PlanogramAmbiguousError as error:
        session.rollback()
        log_rejection(user, "planogram", kiosk_id, error)
        # Every shelf of the form is in the body, in order, so body_index is its position.
        for conflict in error.conflicts:
            message = conflict.message_en if english else conflict.message
            shelves[conflict.body_index].conflicts.append(mark_chinese_data(message, names))
        plus = "+" if error.total_capped else ""
        form_error = t("operator.planogram.rejected", count=f"{error.total}{plus}")
        if error.total > len(error.conflicts):
            unlisted = f"{error.total - len(error.conflicts)}{plus}"
            form_error += " " + t("operator.planogram.more_conflicts", count=unlisted)
        misplaced = any(c.code == planogram_service.MISPLACED_PACK for c in error.conflicts)
        return editor(
            shelves,
            base_version,
            form_error=form_error,
            status_code=422,
            misplaced_layout=layout_fingerprint(body) if misplaced else "",
            accept_misplaced=False,
        )
    except ServiceError as error:
        session.rollback()
        log_rejection(user, "planogram", kiosk_id, error)
        return editor(
            shelves, base_version, form_error=service_text(request, error), status_code=422
        )
    session.commit()
    publisher = getattr(request.app.state, "command_publisher", None)
    outcome = planogram_service.publish_planogram(session, publisher, result.planogram)
    session.commit()

    saved_shelves, version = shelves_from_planogram(session, actor, kiosk_id)
    by_number = {shelf.shelf: shelf for shelf in saved_shelves}
    for warning in result.warnings:
        message = warning.message_en if english else warning.message
        by_number[str(warning.shelf)].warnings.append(mark_chinese_data(message, names))
    saved = {
        "version": result.planogram.version,
        "published": outcome.published,
        "publish_error": outcome.error_en if english else outcome.error,
    }
    # The saved layout's next edit needs consent of its own.
    return editor(saved_shelves, version, saved=saved, misplaced_layout="", accept_misplaced=False)
