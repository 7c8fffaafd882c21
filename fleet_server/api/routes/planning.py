"""Placement planning: recommendations, submitted plans, the province's view."""

from fastapi import APIRouter, Response, status

from fleet_server.api.deps import ProvinceAdminActor, SchoolManagerActor, SessionDep
from fleet_server.api.errors import error_responses
from fleet_server.api.routes.procurement import XLSX, attachment
from fleet_server.planning.planner import PlannerConfig
from fleet_server.reporting.export import plan_workbook, province_plans_workbook
from fleet_server.schemas.planning import (
    PlannerSettings,
    PlanPublic,
    PlanSubmit,
    ProvincePlanRow,
    ProvincePlans,
    Recommendation,
)
from fleet_server.services import placement_plans as plans
from fleet_server.services.errors import NotFoundError

router = APIRouter(tags=["planning"])


def _config(body: PlannerSettings) -> PlannerConfig:
    return plans.make_config(
        body.students_per_cabinet,
        {key.value: value for key, value in body.type_weights.items()}
        if body.type_weights is not None
        else None,
        {key.value: value for key, value in body.min_per_building.items()}
        if body.min_per_building is not None
        else None,
    )


@router.post(
    "/schools/{school_id}/placement-plan/recommendation",
    responses=error_responses(400, 401, 403, 404, 422),
)
def recommend(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: PlannerSettings
) -> Recommendation:
    """Recommend cabinets for the school's enrollment and buildings, each number explained.

    Nothing is stored; the comparison with installed and online cabinets is included.
    """
    return Recommendation.from_result(plans.recommend_for(session, actor, school_id, _config(body)))


@router.post(
    "/schools/{school_id}/placement-plan",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 403, 404, 422),
)
def submit_plan(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: PlanSubmit
) -> PlanPublic:
    """Submit the recommendation for these settings as the school's plan to the province."""
    plan = plans.submit_plan(
        session, actor=actor, school_id=school_id, config=_config(body), note=body.note
    )
    session.commit()
    return PlanPublic.from_model(plan)


@router.get("/schools/{school_id}/placement-plan", responses=error_responses(401, 403, 404, 422))
def get_plan(session: SessionDep, actor: SchoolManagerActor, school_id: int) -> PlanPublic:
    """Return the school's current (latest submitted) plan."""
    plans.check_plan_access(session, actor, school_id)
    plan = plans.current_plan(session, school_id)
    if plan is None:
        raise NotFoundError("placement_plan", school_id)
    return PlanPublic.from_model(plan)


@router.post(
    "/schools/{school_id}/placement-plan/recommendation/export",
    responses={200: {"content": {XLSX: {}}}, **error_responses(400, 401, 403, 404, 422)},
    response_class=Response,
)
def export_recommendation(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: PlannerSettings
) -> Response:
    """Return the recommendation for these settings as an Excel file."""
    result = plans.recommend_for(session, actor, school_id, _config(body))
    content = plan_workbook(result.school.name, Recommendation.from_result(result))
    return attachment(content, XLSX, f"{result.school.name}_点位规划.xlsx")


def province_summary(session: SessionDep, actor: ProvinceAdminActor) -> ProvincePlans:
    rows = plans.province_plans(session, actor=actor)
    return ProvincePlans(
        planned=sum(row.plan.total for row in rows if row.plan is not None),
        installed=sum(row.installed for row in rows),
        online=sum(row.online for row in rows),
        schools_with_plan=sum(1 for row in rows if row.plan is not None),
        schools=[ProvincePlanRow.from_row(row) for row in rows],
    )


@router.get("/placement-plans", responses=error_responses(401, 403))
def province_plans(session: SessionDep, actor: ProvinceAdminActor) -> ProvincePlans:
    """List every school's plan with its installed and online cabinets, against the target."""
    return province_summary(session, actor)


@router.get(
    "/placement-plans/export",
    responses={200: {"content": {XLSX: {}}}, **error_responses(401, 403)},
    response_class=Response,
)
def export_province_plans(session: SessionDep, actor: ProvinceAdminActor) -> Response:
    return attachment(
        province_plans_workbook(province_summary(session, actor)), XLSX, "全省点位规划.xlsx"
    )
