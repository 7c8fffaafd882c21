"""Placement plans: the planner applied to a school's registry, submission, province view.

The planner (``fleet_server.planning.planner``) is pure; this module feeds it the school's
enrollment and buildings, compares its recommendation with the cabinets installed and
online, and keeps every submitted version of a school's plan. The latest submitted version
is the school's plan; the province compares the sum of all plans with its target.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.models import (
    Building,
    Cabinet,
    CabinetServiceStatus,
    Placement,
    PlacementPlan,
    PlanStatus,
    Role,
    School,
)
from fleet_server.models.base import utc_now
from fleet_server.planning import planner
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import InvalidInputError, NotFoundError, PermissionDeniedError

# The province's goal for smart cabinets (消费扶贫智能专柜) across all sites.
PROVINCE_TARGET = 30_000


@dataclass(frozen=True)
class PlanResult:
    school: School
    config: planner.PlannerConfig
    plan: planner.Plan
    buildings: list[Building]
    gaps: list[planner.PlacementGap]
    installed: int
    online: int


def check_plan_access(session: Session, actor: Actor, school_id: int) -> School:
    """Return the school if the actor may plan for it: its administrator or the province."""
    school = session.get(School, school_id)
    own_school = actor.role is Role.SCHOOL_ADMIN and actor.school_id == school_id
    if school is None or not (actor.sees_everything or own_school):
        raise NotFoundError("school", school_id)
    return school


def make_config(
    students_per_cabinet: int | None,
    type_weights: Mapping[str, int] | None,
    min_per_building: Mapping[str, int] | None,
) -> planner.PlannerConfig:
    """Return the planner's settings, each one the default unless given."""
    default = planner.PlannerConfig()
    weights = dict(default.type_weights)
    if type_weights is not None:
        weights.update({planner.LocationType(key): value for key, value in type_weights.items()})
    minimums = dict(default.min_per_building)
    if min_per_building is not None:
        minimums.update(
            {planner.LocationType(key): value for key, value in min_per_building.items()}
        )
    return planner.PlannerConfig(
        students_per_cabinet=students_per_cabinet or default.students_per_cabinet,
        type_weights=weights,
        min_per_building=minimums,
    )


def config_document(config: planner.PlannerConfig) -> dict[str, Any]:
    return {
        "students_per_cabinet": config.students_per_cabinet,
        "type_weights": {key.value: value for key, value in config.type_weights.items()},
        "min_per_building": {key.value: value for key, value in config.min_per_building.items()},
    }


def recommend_for(
    session: Session, actor: Actor, school_id: int, config: planner.PlannerConfig
) -> PlanResult:
    """Run the planner on the school's registry and compare with its cabinets."""
    school = check_plan_access(session, actor, school_id)
    if school.enrollment is None:
        raise InvalidInputError(
            code="enrollment_missing",
            message="请先填写学校的在校生人数",
            message_en="Enter the school's enrollment first",
            details={"field": "enrollment"},
        )
    buildings = list(
        session.scalars(
            select(Building).where(Building.school_id == school_id).order_by(Building.id)
        )
    )
    plan = planner.recommend(
        enrollment=school.enrollment,
        buildings=[
            planner.Building(
                str(building.id),
                building.name,
                planner.LocationType(building.location_type.value),
                building.capacity or 0,
            )
            for building in buildings
        ],
        config=config,
    )
    installed, online = cabinet_counts_by_building(session, school_id)
    return PlanResult(
        school=school,
        config=config,
        plan=plan,
        buildings=buildings,
        gaps=planner.compare(plan, installed, online),
        installed=sum(installed.values()),
        online=sum(online.values()),
    )


def cabinet_counts_by_building(
    session: Session, school_id: int
) -> tuple[Counter[str], Counter[str]]:
    """Return building id -> cabinets installed (not retired) and online there."""
    rows = session.execute(
        select(Placement.building_id, Cabinet.online)
        .join(Cabinet, Cabinet.placement_id == Placement.id)
        .join(Building, Placement.building_id == Building.id)
        .where(
            Building.school_id == school_id,
            Cabinet.service_status != CabinetServiceStatus.RETIRED,
        )
    )
    installed: Counter[str] = Counter()
    online: Counter[str] = Counter()
    for building_id, is_online in rows:
        installed[str(building_id)] += 1
        if is_online:
            online[str(building_id)] += 1
    return installed, online


def allocation_document(result: PlanResult) -> dict[str, Any]:
    """Return the plan with its explanations, as stored and as the API shows it."""
    names = {str(building.id): building for building in result.buildings}
    plan = result.plan
    return {
        "total": {
            "count": plan.total.count,
            "explanation": plan.total.explanation.zh,
            "explanation_en": plan.total.explanation.en,
        },
        "by_type": [
            {
                "location_type": location_type.value,
                "count": allocation.count,
                "explanation": allocation.explanation.zh,
                "explanation_en": allocation.explanation.en,
            }
            for location_type, allocation in plan.by_type.items()
        ],
        "by_building": [
            {
                "building_id": int(building_id),
                "building_name": names[building_id].name,
                "location_type": names[building_id].location_type.value,
                "count": allocation.count,
                "explanation": allocation.explanation.zh,
                "explanation_en": allocation.explanation.en,
            }
            for building_id, allocation in plan.by_building.items()
        ],
    }


def submit_plan(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    config: planner.PlannerConfig,
    note: str,
    now: datetime | None = None,
) -> PlacementPlan:
    """Store the recommendation for the school's current registry as its submitted plan."""
    if actor.role is not Role.SCHOOL_ADMIN:
        raise PermissionDeniedError(
            message="没有权限：点位规划由本校管理员报送",
            message_en="Only the school's own administrator submits its placement plan",
        )
    result = recommend_for(session, actor, school_id, config)
    assert result.school.enrollment is not None
    plan = PlacementPlan(
        school_id=school_id,
        status=PlanStatus.SUBMITTED,
        enrollment=result.school.enrollment,
        staff_count=result.school.staff_count,
        config=config_document(config),
        total=result.plan.total.count,
        allocation=allocation_document(result),
        note=note,
        submitted_by=actor.user_id,
        submitted_at=now or utc_now(),
    )
    session.add(plan)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="plan.submit",
        object_type="placement_plan",
        object_id=plan.id,
        after={"school_id": school_id, "total": plan.total, "config": plan.config},
    )
    return plan


def current_plan(session: Session, school_id: int) -> PlacementPlan | None:
    return session.scalar(
        select(PlacementPlan)
        .where(PlacementPlan.school_id == school_id)
        .order_by(PlacementPlan.id.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class SchoolPlanRow:
    school: School
    plan: PlacementPlan | None
    installed: int
    online: int


def province_plans(session: Session, *, actor: Actor) -> list[SchoolPlanRow]:
    """Return every school with its current plan and its installed and online cabinets."""
    if not actor.sees_everything:
        raise PermissionDeniedError(
            message="没有权限：仅省级专班可以查看全省规划",
            message_en="Only the province sees every school's plan",
        )
    latest = (
        select(PlacementPlan.school_id, func.max(PlacementPlan.id).label("plan_id"))
        .group_by(PlacementPlan.school_id)
        .subquery()
    )
    plans = {
        plan.school_id: plan
        for plan in session.scalars(
            select(PlacementPlan).join(latest, PlacementPlan.id == latest.c.plan_id)
        )
    }
    counts = session.execute(
        select(
            Building.school_id,
            func.count(Cabinet.id),
            func.count(Cabinet.id).filter(Cabinet.online.is_(True)),
        )
        .join(Placement, Placement.building_id == Building.id)
        .join(Cabinet, Cabinet.placement_id == Placement.id)
        .where(Cabinet.service_status != CabinetServiceStatus.RETIRED)
        .group_by(Building.school_id)
    )
    by_school = {school_id: (installed, online) for school_id, installed, online in counts}
    return [
        SchoolPlanRow(
            school=school,
            plan=plans.get(school.id),
            installed=by_school.get(school.id, (0, 0))[0],
            online=by_school.get(school.id, (0, 0))[1],
        )
        for school in session.scalars(select(School).order_by(School.id))
    ]
