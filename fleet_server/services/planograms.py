"""Planograms: versioned shelf layouts, checked for decodability and sent to the cabinet.

Saving runs the agent's own check (``kiosk_agent.decoding.check_planogram``). A shelf
where two ways of taking packs weigh too nearly the same is rejected, because the cabinet
could not tell them apart. When the planogram gives each shelf's door, a product whose
pack, put back on another shelf behind the same door, would pass for that shelf's own
packs is rejected too (``check_misplaced``); without doors that is a warning. Coincidences
that a pack put back only in the same visit can cause (``check_returns``) are warnings.

Every save is a new version. The command is published after the version is committed, so
a cabinet never has a version that the server lost. Commands are not retained by the
broker: ``resend_planogram`` sends the latest version again when a cabinet comes online
or reports an older version.

In the MQTT contract a product is named by its catalog id as a decimal string
(``planogram_product_id``), so sales lines map back with ``parse_planogram_product_id``.
"""

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from fleet_server.messaging.publisher import CommandPublisher, PublishError
from fleet_server.models import (
    Cabinet,
    Planogram,
    PlanogramLine,
    PlanogramShelf,
    Product,
)
from fleet_server.models.base import utc_now
from fleet_server.schemas.planograms import PlanogramUpdate
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
)
from kiosk_agent.contract import PlanogramCommand, PlanogramProduct
from kiosk_agent.contract import PlanogramShelf as ContractShelf
from kiosk_agent.decoding import (
    Conflict,
    MisplacedConflict,
    ProductWeight,
    check_misplaced,
    check_planogram,
    check_returns,
)
from kiosk_agent.signing import new_nonce

logger = logging.getLogger(__name__)

MG_PER_G = 1000
# The largest value of products.id, a 32-bit INTEGER column.
CATALOG_ID_MAX = 2**31 - 1
PLANOGRAM_COMMAND_LIFETIME_S = PlanogramCommand.MAX_LIFETIME_S
# The contract limits product names to 100 characters.
CONTRACT_NAME_CHARS = 100
# Conflicts listed in one rejection; a bad shelf can have dozens.
MAX_LISTED_CONFLICTS = 20
# The search for misplaced packs stops after this many, because its work grows with the
# square of the shelves behind one door.
MAX_COUNTED_MISPLACED = 200


class PlanogramNotFoundError(NotFoundError):
    def __init__(self, kiosk_id: str) -> None:
        ServiceError.__init__(
            self,
            code="planogram_not_found",
            message=f"智能专柜尚无商品陈列图：{kiosk_id}",
            message_en=f"Cabinet {kiosk_id} has no planogram yet",
        )


class PlanogramVersionConflictError(ConflictError):
    def __init__(self, base_version: int, current_version: int | None) -> None:
        current = "无" if current_version is None else str(current_version)
        ServiceError.__init__(
            self,
            code="planogram_version_conflict",
            message=(
                f"商品陈列图已被修改：编辑基于版本 {base_version}，当前版本为 {current}，"
                "请刷新后重试"
            ),
            message_en=(
                f"The planogram changed meanwhile: the edit started from version {base_version}, "
                f"the current version is {current_version}; reload and try again"
            ),
        )


# Kinds of ConflictMessage, as the API names them.
AMBIGUOUS_WEIGHTS = "ambiguous_weights"
MISPLACED_PACK = "misplaced_pack"
RETURN_COINCIDENCE = "return_coincidence"


@dataclass(frozen=True)
class ConflictMessage:
    """One ambiguity in words, with the position of its shelf in the request body."""

    shelf: int
    body_index: int
    code: str
    message: str
    message_en: str


class PlanogramAmbiguousError(InvalidInputError):
    """The planogram puts products on a shelf whose take combinations weigh the same.

    ``total`` counts every conflict found; with ``total_capped`` the search stopped there
    and more may exist.
    """

    def __init__(
        self, conflicts: list[ConflictMessage], total: int, *, total_capped: bool = False
    ) -> None:
        first = conflicts[0]
        count = f"{total}+" if total_capped else str(total)
        more_zh = f"（共 {count} 处）" if total > 1 else ""
        more_en = f" ({count} conflicts in total)" if total > 1 else ""
        hint_zh = hint_en = ""
        if any(conflict.code == MISPLACED_PACK for conflict in conflicts):
            hint_zh = "。若仍要保存，请在请求中设 accept_misplaced_reviews 为 true"
            hint_en = ". To save it anyway, set accept_misplaced_reviews to true"
        super().__init__(
            code="planogram_ambiguous",
            message=f"商品陈列图无法按重量识别商品：{first.message}{more_zh}{hint_zh}",
            message_en=(
                f"The planogram cannot be decoded by weight: {first.message_en}{more_en}{hint_en}"
            ),
        )
        self.conflicts = conflicts
        self.total = total
        self.total_capped = total_capped


@dataclass(frozen=True)
class SaveResult:
    planogram: Planogram
    warnings: list[ConflictMessage]


@dataclass(frozen=True)
class PublishOutcome:
    published: bool
    error: str | None = None
    error_en: str | None = None


def planogram_product_id(product_id: int) -> str:
    """Return how the MQTT contract names a catalog product: its id as a decimal string."""
    return str(product_id)


@lru_cache(maxsize=4096)
def parse_planogram_product_id(text: str) -> int | None:
    """Return the catalog id named by a contract product id, or None if it names none.

    Digits beyond the 32-bit range of ``products.id``, such as a 13-digit barcode, name no
    catalog product: a lookup with them would fail on PostgreSQL.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number <= CATALOG_ID_MAX else None


# --- Reading --------------------------------------------------------------------------------


def _visible_cabinet(session: Session, *, actor: Actor, kiosk_id: str) -> Cabinet:
    cabinet = session.scalar(
        select(Cabinet).where(Cabinet.kiosk_id == kiosk_id, actor.visible_cabinets())
    )
    if cabinet is None:
        raise NotFoundError("cabinet", kiosk_id)
    return cabinet


def latest_planogram(session: Session, cabinet_id: int) -> Planogram | None:
    """Return the newest version of a cabinet's planogram with its shelves and products."""
    return session.scalar(
        select(Planogram)
        .where(Planogram.cabinet_id == cabinet_id)
        .order_by(Planogram.version.desc())
        .limit(1)
        .options(
            joinedload(Planogram.cabinet),
            selectinload(Planogram.shelves)
            .selectinload(PlanogramShelf.lines)
            .joinedload(PlanogramLine.product)
            .joinedload(Product.source_county),
        )
    )


def latest_planograms(session: Session, cabinet_ids: Collection[int]) -> dict[int, Planogram]:
    """Return cabinet id -> newest planogram version with its shelves and products.

    Cabinets without a planogram are left out.
    """
    if not cabinet_ids:
        return {}
    newest = (
        select(Planogram.cabinet_id, func.max(Planogram.version).label("version"))
        .where(Planogram.cabinet_id.in_(cabinet_ids))
        .group_by(Planogram.cabinet_id)
        .subquery()
    )
    planograms = session.scalars(
        select(Planogram)
        .join(
            newest,
            (Planogram.cabinet_id == newest.c.cabinet_id) & (Planogram.version == newest.c.version),
        )
        .options(
            selectinload(Planogram.shelves)
            .selectinload(PlanogramShelf.lines)
            .joinedload(PlanogramLine.product)
        )
    )
    return {planogram.cabinet_id: planogram for planogram in planograms}


def get_planogram(session: Session, *, actor: Actor, kiosk_id: str) -> Planogram:
    cabinet = _visible_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    planogram = latest_planogram(session, cabinet.id)
    if planogram is None:
        raise PlanogramNotFoundError(kiosk_id)
    return planogram


# --- Checking -------------------------------------------------------------------------------


def _describe_side(counts: tuple[tuple[str, int], ...], names: dict[str, str]) -> tuple[str, str]:
    if not counts:
        return "不取商品", "taking nothing"
    zh = " 加 ".join(f"{-n} 件 {names[product]}" for product, n in counts if n < 0)
    en = " + ".join(f"{-n} x {names[product]}" for product, n in counts if n < 0)
    returned = [(product, n) for product, n in counts if n > 0]
    if returned:
        zh += "".join(f" 并放回 {n} 件 {names[product]}" for product, n in returned)
        en += "".join(f" with {n} x {names[product]} put back" for product, n in returned)
    return zh, en


def describe_conflict(
    conflict: Conflict, names: dict[str, str], body_index: int, code: str = AMBIGUOUS_WEIGHTS
) -> ConflictMessage:
    """Word a conflict for the operator, e.g. "层板 2：2 件 A 与 1 件 B 重量相近，无法区分"."""
    first_zh, first_en = _describe_side(conflict.first, names)
    second_zh, second_en = _describe_side(conflict.second, names)
    return ConflictMessage(
        shelf=conflict.shelf,
        body_index=body_index,
        code=code,
        message=f"层板 {conflict.shelf}：{first_zh} 与 {second_zh} 重量相近，无法区分",
        message_en=(
            f"shelf {conflict.shelf}: {first_en} weighs about as much as {second_en}, "
            "so they cannot be told apart"
        ),
    )


def _every_door(data: PlanogramUpdate) -> dict[int, int] | None:
    """Return shelf -> door when every shelf has one, None when none has; raise otherwise."""
    doors = data.doors()
    if not doors:
        return None
    missing = [shelf.shelf for shelf in data.shelves if shelf.shelf not in doors]
    if missing:
        listed = "、".join(str(shelf) for shelf in missing)
        shelves_en = ", ".join(str(shelf) for shelf in missing)
        if len(missing) == 1:
            subject_en = f"Shelf {shelves_en} has"
        else:
            subject_en = f"Shelves {shelves_en} have"
        raise InvalidInputError(
            code="planogram_doors_incomplete",
            message=f"层板 {listed} 未填写柜门：请为每个层板填写柜门，或都不填",
            message_en=f"{subject_en} no door: give the door of every shelf or of none",
        )
    return doors


def _one_per_shelf_first(conflicts: list[MisplacedConflict]) -> list[MisplacedConflict]:
    """Order conflicts so that every shelf's first one comes before any shelf's second."""
    rank: dict[int, int] = {}
    ranked = []
    for conflict in conflicts:
        rank[conflict.shelf] = rank.get(conflict.shelf, -1) + 1
        ranked.append((rank[conflict.shelf], conflict))
    return [conflict for _, conflict in sorted(ranked, key=lambda item: item[0])]


def describe_misplaced(
    conflict: MisplacedConflict, names: dict[str, str], body_index: int
) -> ConflictMessage:
    """Word a misplaced pack for the operator: both shelves, the weights, the share of
    visits that would go to review, and the fix."""
    product = names[conflict.product]
    taken_zh, taken_en = _describe_side(conflict.taken, names)
    rival_zh, rival_en = _describe_side(conflict.rival, names)
    percent = round(100 * conflict.review_share)
    return ConflictMessage(
        shelf=conflict.shelf,
        body_index=body_index,
        code=MISPLACED_PACK,
        message=(
            f"层板 {conflict.shelf}：若有一件 {product} 从层板 {conflict.home} 被放错到这里，"
            f"{taken_zh} 与 {rival_zh} 重量相近，约 {percent}% 的此类购物需人工复核；"
            "请把这两种商品放在不同的柜门后"
        ),
        message_en=(
            f"shelf {conflict.shelf}: with a pack of {product} put back there from shelf "
            f"{conflict.home}, {taken_en} weighs about as much as {rival_en}, and about "
            f"{percent} % of such visits would go to review; put the two products behind "
            "different doors"
        ),
    )


def _product_weight(product: Product) -> ProductWeight:
    return ProductWeight(
        planogram_product_id(product.id),
        product.unit_weight_g * MG_PER_G,
        product.weight_tolerance_g * MG_PER_G,
    )


def _load_products(session: Session, data: PlanogramUpdate, today: date) -> dict[int, Product]:
    wanted = {line.product_id for shelf in data.shelves for line in shelf.products}
    products = {
        product.id: product
        for product in session.scalars(select(Product).where(Product.id.in_(wanted)))
    }
    for product_id in sorted(wanted):
        product = products.get(product_id)
        if product is None:
            raise NotFoundError("product", product_id)
        if not product.valid_from <= today <= product.valid_until:
            raise InvalidInputError(
                code="product_not_certified",
                message=(
                    f"扶贫产品 {product.name} 的认定有效期为 {product.valid_from} 至 "
                    f"{product.valid_until}，今天不在有效期内"
                ),
                message_en=(
                    f"Certified product {product_id} is certified from {product.valid_from} to "
                    f"{product.valid_until}, which does not include today"
                ),
            )
    return products


def check_layout(data: PlanogramUpdate, products: dict[int, Product]) -> list[ConflictMessage]:
    """Raise PlanogramAmbiguousError if a shelf cannot be decoded; return the warnings.

    With the doors given, a pack that can be put back on another shelf behind the same
    door and then passes for that shelf's own packs is a conflict too, unless the request
    accepts the reviews that such packs cause. Without doors, or so accepted, such packs
    are warnings; without doors any two shelves may share a door.
    """
    names = {planogram_product_id(p.id): p.name for p in products.values()}
    body_index = {shelf.shelf: index for index, shelf in enumerate(data.shelves)}
    weights = {
        shelf.shelf: [_product_weight(products[line.product_id]) for line in shelf.products]
        for shelf in data.shelves
    }
    doors = _every_door(data)

    listed: list[ConflictMessage] = []
    total = 0
    capped = False
    conflicts = check_planogram(weights)
    if conflicts:
        listed = [
            describe_conflict(conflict, names, body_index[conflict.shelf])
            for conflict in conflicts[:MAX_LISTED_CONFLICTS]
        ]
        total = len(conflicts)
    misplaced_warned = doors is None or data.accept_misplaced_reviews
    if not misplaced_warned:
        misplaced = check_misplaced(weights, doors, limit=MAX_COUNTED_MISPLACED)
        listed += [
            describe_misplaced(pack, names, body_index[pack.shelf])
            for pack in _one_per_shelf_first(misplaced)[: MAX_LISTED_CONFLICTS - len(listed)]
        ]
        total += len(misplaced)
        capped = len(misplaced) == MAX_COUNTED_MISPLACED
    if listed:
        raise PlanogramAmbiguousError(listed, total=total, total_capped=capped)

    warnings: list[ConflictMessage] = []
    seen: set[str] = set()
    if misplaced_warned:
        for pack in check_misplaced(weights, doors, limit=MAX_LISTED_CONFLICTS):
            warnings.append(describe_misplaced(pack, names, body_index[pack.shelf]))
    for conflict in check_returns(weights):
        warning = describe_conflict(conflict, names, body_index[conflict.shelf], RETURN_COINCIDENCE)
        if warning.message not in seen:
            seen.add(warning.message)
            warnings.append(warning)
    return warnings


# --- Saving and publishing ------------------------------------------------------------------


def may_edit_planogram(actor: Actor, cabinet: Cabinet) -> bool:
    return actor.may_register_cabinet_for(cabinet.operator_id)


def save_planogram(
    session: Session,
    *,
    actor: Actor,
    kiosk_id: str,
    data: PlanogramUpdate,
    today: date | None = None,
) -> SaveResult:
    """Check the layout and add it as the cabinet's next version. The caller commits."""
    cabinet = _visible_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    if not may_edit_planogram(actor, cabinet):
        raise PermissionDeniedError(
            message="只有该柜的运营企业或省级专班可以修改商品陈列图",
            message_en=(
                "Only the cabinet's operator or the province work group may edit its planogram"
            ),
        )
    current_version = session.scalar(
        select(func.max(Planogram.version)).where(Planogram.cabinet_id == cabinet.id)
    )
    if data.base_version is not None and data.base_version != current_version:
        raise PlanogramVersionConflictError(data.base_version, current_version)

    products = _load_products(session, data, today or utc_now().date())
    warnings = check_layout(data, products)
    # Whether the operator saved misplaced-pack conflicts knowingly, for the audit log.
    accepted_misplaced = bool(data.doors()) and any(w.code == MISPLACED_PACK for w in warnings)

    planogram = Planogram(
        cabinet=cabinet,
        version=(current_version or 0) + 1,
        created_by_user_id=actor.user_id,
        created_by_label=actor.label,
        publish_count=0,
    )
    for shelf_in in data.shelves:
        shelf = PlanogramShelf(
            shelf=shelf_in.shelf, door=shelf_in.door, capacity_items=shelf_in.capacity_items
        )
        for position, line_in in enumerate(shelf_in.products):
            product = products[line_in.product_id]
            shelf.lines.append(
                PlanogramLine(
                    product=product,
                    position=position,
                    price_fen=(
                        product.price_fen if line_in.price_fen is None else line_in.price_fen
                    ),
                    price_overridden=line_in.price_fen is not None,
                    unit_weight_mg=product.unit_weight_g * MG_PER_G,
                    tolerance_mg=product.weight_tolerance_g * MG_PER_G,
                )
            )
        planogram.shelves.append(shelf)
    session.add(planogram)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="planogram.save",
        object_type="cabinet",
        object_id=cabinet.kiosk_id,
        after={
            "version": planogram.version,
            "accept_misplaced_reviews": accepted_misplaced,
            "shelves": [
                {
                    "shelf": shelf.shelf,
                    "door": shelf.door,
                    "capacity_items": shelf.capacity_items,
                    "products": [[line.product_id, line.price_fen] for line in shelf.lines],
                }
                for shelf in planogram.shelves
            ],
        },
    )
    return SaveResult(planogram=planogram, warnings=warnings)


def build_command(planogram: Planogram, *, now: datetime) -> PlanogramCommand:
    """Return an unsigned command that carries the planogram, valid for one hour."""
    return PlanogramCommand(
        command_id=uuid.uuid4(),
        kiosk_id=planogram.cabinet.kiosk_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=PLANOGRAM_COMMAND_LIFETIME_S),
        nonce=new_nonce(),
        version=planogram.version,
        shelves=[
            ContractShelf(
                shelf=shelf.shelf,
                door=shelf.door,
                capacity_items=shelf.capacity_items,
                products=[
                    PlanogramProduct(
                        product_id=planogram_product_id(line.product_id),
                        name=line.product.name[:CONTRACT_NAME_CHARS],
                        unit_weight_mg=line.unit_weight_mg,
                        tolerance_mg=line.tolerance_mg,
                        price_fen=line.price_fen,
                    )
                    for line in shelf.lines
                ],
            )
            for shelf in planogram.shelves
        ],
    )


def _send(publisher: CommandPublisher, planogram: Planogram, *, now: datetime) -> None:
    """Sign and publish the planogram, then record it; raises PublishError on failure."""
    cabinet = planogram.cabinet
    if cabinet.hmac_key is None:
        raise PublishError(f"cabinet {cabinet.kiosk_id} has no key: provision it first")
    publisher.send_command(build_command(planogram, now=now), bytes.fromhex(cabinet.hmac_key))
    planogram.published_at = now
    planogram.publish_count += 1


def publish_planogram(
    session: Session, publisher: CommandPublisher | None, planogram: Planogram
) -> PublishOutcome:
    """Send a saved version to its cabinet and record when the broker accepted it.

    A failure is returned, not raised: the version stays saved and is sent again when
    the cabinet next comes online. The caller commits.
    """
    if publisher is None:
        return PublishOutcome(
            published=False,
            error="服务器未连接 MQTT，陈列图将在专柜上线时下发",
            error_en=(
                "The server has no MQTT connection; the planogram is sent when the cabinet "
                "comes online"
            ),
        )
    if planogram.cabinet.hmac_key is None:
        return PublishOutcome(
            published=False,
            error="智能专柜尚未签发凭证，陈列图将在专柜上线时下发",
            error_en=(
                "The cabinet is not provisioned yet; the planogram is sent when it comes online"
            ),
        )
    try:
        _send(publisher, planogram, now=utc_now())
    except PublishError as error:
        logger.warning(
            "planogram %d of %s not published: %s",
            planogram.version,
            planogram.cabinet.kiosk_id,
            error,
        )
        return PublishOutcome(
            published=False,
            error="MQTT 代理未确认，陈列图将在专柜上线时重新下发",
            error_en=(
                f"The broker did not accept the command ({error}); it is sent again when the "
                "cabinet comes online"
            ),
        )
    session.flush()
    return PublishOutcome(published=True)


def resend_planogram(
    db: Session, publisher: CommandPublisher, cabinet: Cabinet, *, now: datetime | None = None
) -> Planogram | None:
    """Send the cabinet's latest planogram again as a fresh command; return it, or None.

    Returns None when the cabinet has no planogram or no key. Raises PublishError when the
    broker does not accept the command. Works inside the caller's transaction.
    """
    planogram = latest_planogram(db, cabinet.id)
    if planogram is None or cabinet.hmac_key is None:
        return None
    _send(publisher, planogram, now=now or utc_now())
    db.flush()
    logger.info("planogram %d sent again to %s", planogram.version, cabinet.kiosk_id)
    return planogram
