"""Operating companies (运营企业) and the cabinets they run."""

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, joinedload

from fleet_server.models import Building, Cabinet, CabinetServiceStatus, Operator, Placement
from fleet_server.schemas.operators import CabinetCreate, OperatorCreate, OperatorUpdate
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit, snapshot
from fleet_server.services.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from fleet_server.services.pagination import PageResult, fetch_page

OPERATOR_FIELDS = ("name", "name_en", "credit_code")
CABINET_FIELDS = ("kiosk_id", "placement_id", "operator_id", "firmware_version", "service_status")


# --- Operators ----------------------------------------------------------------------------


def list_operators(
    session: Session, *, actor: Actor, limit: int, offset: int
) -> PageResult[Operator]:
    statement = select(Operator).where(actor.visible_operators()).order_by(Operator.id)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_operator(session: Session, *, actor: Actor, operator_id: int) -> Operator:
    operator = session.scalar(
        select(Operator).where(Operator.id == operator_id, actor.visible_operators())
    )
    if operator is None:
        raise NotFoundError("operator", operator_id)
    return operator


def _check_operator_unique(
    session: Session, *, name: str | None, credit_code: str | None, operator_id: int | None
) -> None:
    if name is not None:
        existing = session.scalar(select(Operator.id).where(Operator.name == name))
        if existing is not None and existing != operator_id:
            raise ConflictError("operator", "name", name)
    if credit_code is not None:
        existing = session.scalar(select(Operator.id).where(Operator.credit_code == credit_code))
        if existing is not None and existing != operator_id:
            raise ConflictError("operator", "credit_code", credit_code)


def create_operator(session: Session, *, actor: Actor, data: OperatorCreate) -> Operator:
    _check_operator_unique(session, name=data.name, credit_code=data.credit_code, operator_id=None)
    operator = Operator(name=data.name, name_en=data.name_en, credit_code=data.credit_code)
    session.add(operator)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="operator.create",
        object_type="operator",
        object_id=operator.id,
        after=snapshot(operator, OPERATOR_FIELDS),
    )
    return operator


def update_operator(
    session: Session, *, actor: Actor, operator_id: int, data: OperatorUpdate
) -> Operator:
    operator = get_operator(session, actor=actor, operator_id=operator_id)
    changes = data.changes()
    _check_operator_unique(
        session,
        name=changes.get("name"),
        credit_code=changes.get("credit_code"),
        operator_id=operator.id,
    )
    before = snapshot(operator, OPERATOR_FIELDS)
    for field, value in changes.items():
        setattr(operator, field, value)
    session.flush()
    after = snapshot(operator, OPERATOR_FIELDS)
    changed = [field for field in OPERATOR_FIELDS if before[field] != after[field]]
    if changed:
        record_audit(
            session,
            actor=actor,
            action="operator.update",
            object_type="operator",
            object_id=operator.id,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )
    return operator


# --- Cabinets -----------------------------------------------------------------------------


def _visible_cabinets(actor: Actor) -> Select[Cabinet]:
    return (
        select(Cabinet)
        .where(actor.visible_cabinets())
        .options(joinedload(Cabinet.placement).joinedload(Placement.building))
    )


def list_cabinets(
    session: Session,
    *,
    actor: Actor,
    limit: int,
    offset: int,
    operator_id: int | None = None,
    school_id: int | None = None,
    service_status: CabinetServiceStatus | None = None,
) -> PageResult[Cabinet]:
    statement = _visible_cabinets(actor).order_by(Cabinet.kiosk_id)
    if operator_id is not None:
        statement = statement.where(Cabinet.operator_id == operator_id)
    if school_id is not None:
        statement = statement.where(
            Cabinet.placement_id.in_(
                select(Placement.id)
                .join(Building, Placement.building_id == Building.id)
                .where(Building.school_id == school_id)
            )
        )
    if service_status is not None:
        statement = statement.where(Cabinet.service_status == service_status)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_cabinet(session: Session, *, actor: Actor, kiosk_id: str) -> Cabinet:
    cabinet = session.scalar(_visible_cabinets(actor).where(Cabinet.kiosk_id == kiosk_id))
    if cabinet is None:
        raise NotFoundError("cabinet", kiosk_id)
    return cabinet


def register_cabinet(session: Session, *, actor: Actor, data: CabinetCreate) -> Cabinet:
    """Register a new cabinet at a placement, run by the given (or the caller's) operator.

    NOTE: an operator account may register a cabinet at any existing placement, because
    the registry does not yet record which operators a school has contracted.
    """
    operator_id = data.operator_id if data.operator_id is not None else actor.operator_id
    if operator_id is None:
        raise InvalidInputError(
            code="operator_required",
            message="请指定运营企业（operator_id）",
            message_en="operator_id is required",
        )
    if not actor.may_register_cabinet_for(operator_id):
        raise PermissionDeniedError(
            message="只能为本企业登记智能专柜",
            message_en="Operators may register cabinets for their own company only",
        )
    if session.get(Operator, operator_id) is None:
        raise NotFoundError("operator", operator_id)
    placement = session.get(Placement, data.placement_id)
    if placement is None:
        raise NotFoundError("placement", data.placement_id)
    if session.scalar(select(Cabinet.id).where(Cabinet.kiosk_id == data.kiosk_id)) is not None:
        raise ConflictError("cabinet", "kiosk_id", data.kiosk_id)

    cabinet = Cabinet(
        kiosk_id=data.kiosk_id,
        placement=placement,
        operator_id=operator_id,
        firmware_version=data.firmware_version,
        service_status=CabinetServiceStatus.PROVISIONED,
    )
    session.add(cabinet)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="cabinet.register",
        object_type="cabinet",
        object_id=cabinet.kiosk_id,
        after=snapshot(cabinet, CABINET_FIELDS),
    )
    return cabinet
