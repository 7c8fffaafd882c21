"""Schools: the registry entries that cabinets, placements and procurement reports belong to."""

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from fleet_server.models import County, School, SchoolType
from fleet_server.schemas.schools import SchoolCreate, SchoolUpdate
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit, snapshot
from fleet_server.services.counties import get_counties_by_codes
from fleet_server.services.errors import ConflictError, NotFoundError, PermissionDeniedError
from fleet_server.services.pagination import PageResult, fetch_page

AUDITED_FIELDS = (
    "name",
    "name_en",
    "school_type",
    "city",
    "enrollment",
    "enrollment_as_of",
    "staff_count",
)
# Fields that only the province work group may change: a school's identity and the
# poverty counties the province designated to it.
PROVINCE_ONLY_FIELDS = frozenset({"name", "name_en", "school_type", "designated_county_codes"})


def _visible_schools(actor: Actor) -> Select[School]:
    return (
        select(School)
        .where(actor.visible_schools())
        .options(selectinload(School.designated_counties).selectinload(County.codes))
    )


def list_schools(
    session: Session,
    *,
    actor: Actor,
    limit: int,
    offset: int,
    city: str | None = None,
    school_type: SchoolType | None = None,
) -> PageResult[School]:
    statement = _visible_schools(actor).order_by(School.id)
    if city is not None:
        statement = statement.where(School.city == city)
    if school_type is not None:
        statement = statement.where(School.school_type == school_type)
    return fetch_page(session, statement, limit=limit, offset=offset)


def get_school(session: Session, *, actor: Actor, school_id: int) -> School:
    """Return the school, or raise NotFoundError if it does not exist or is out of scope."""
    school = session.scalar(_visible_schools(actor).where(School.id == school_id))
    if school is None:
        raise NotFoundError("school", school_id)
    return school


def require_school_manager(actor: Actor, school_id: int) -> None:
    """Raise PermissionDeniedError unless the actor may edit the school and what it contains."""
    if not actor.may_manage_school(school_id):
        raise PermissionDeniedError(
            message="只有本校管理员或省级专班可以修改学校信息",
            message_en="Only the school's administrators or the province work group may "
            "change this school",
        )


def _check_name_free(session: Session, *, name: str, school_id: int | None) -> None:
    existing = session.scalar(select(School.id).where(School.name == name))
    if existing is not None and existing != school_id:
        raise ConflictError("school", "name", name)


def create_school(session: Session, *, actor: Actor, data: SchoolCreate) -> School:
    _check_name_free(session, name=data.name, school_id=None)
    school = School(
        name=data.name,
        name_en=data.name_en,
        school_type=data.school_type,
        city=data.city,
        enrollment=data.enrollment,
        enrollment_as_of=data.enrollment_as_of,
        staff_count=data.staff_count,
        designated_counties=get_counties_by_codes(session, codes=data.designated_county_codes),
    )
    session.add(school)
    try:
        session.flush()
    except IntegrityError as error:
        # Another request took the name between the check and the insert.
        raise ConflictError("school", "name", data.name) from error
    record_audit(
        session,
        actor=actor,
        action="school.create",
        object_type="school",
        object_id=school.id,
        after={
            **snapshot(school, AUDITED_FIELDS),
            "designated_county_codes": [c.current_code for c in school.designated_counties],
        },
    )
    return school


def update_school(session: Session, *, actor: Actor, school_id: int, data: SchoolUpdate) -> School:
    school = get_school(session, actor=actor, school_id=school_id)
    require_school_manager(actor, school.id)
    changes = data.changes()
    if not actor.sees_everything and PROVINCE_ONLY_FIELDS & changes.keys():
        fields = ", ".join(sorted(PROVINCE_ONLY_FIELDS & changes.keys()))
        raise PermissionDeniedError(
            message=f"学校名称、类型和对接贫困县只能由省级专班修改：{fields}",
            message_en=f"Only the province work group may change these fields: {fields}",
        )

    before = snapshot(school, AUDITED_FIELDS)
    before["designated_county_codes"] = [c.current_code for c in school.designated_counties]
    if "name" in changes:
        _check_name_free(session, name=changes["name"], school_id=school.id)
    codes = changes.pop("designated_county_codes", None)
    if codes is not None:
        school.designated_counties = get_counties_by_codes(session, codes=codes)
    for field, value in changes.items():
        setattr(school, field, value)
    session.flush()

    after = snapshot(school, AUDITED_FIELDS)
    after["designated_county_codes"] = [c.current_code for c in school.designated_counties]
    changed = [field for field in after if after[field] != before[field]]
    if changed:
        record_audit(
            session,
            actor=actor,
            action="school.update",
            object_type="school",
            object_id=school.id,
            before={field: before[field] for field in changed},
            after={field: after[field] for field in changed},
        )
    return school
