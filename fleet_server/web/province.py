"""The province's pages: every school's weekly report, late list, rankings, counties, plans."""

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.api.routes.planning import province_summary
from fleet_server.api.routes.procurement import week_county_totals, week_overview, week_rankings
from fleet_server.models import Role
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import last_completed_week
from fleet_server.schemas.procurement import ReportPublic
from fleet_server.services import procurement_reports as reports
from fleet_server.services.access import Actor
from fleet_server.services.errors import ServiceError
from fleet_server.web import i18n
from fleet_server.web.messages import province as province_messages
from fleet_server.web.rendering import page_user, render
from fleet_server.web.session import CSRF_FIELD, PageUser, csrf_matches

i18n.register(province_messages)

router = APIRouter(prefix="/province", include_in_schema=False)
ProvinceAdmin = Annotated[PageUser, Depends(page_user(Role.PROVINCE_ADMIN))]


def _monday(week: date | None) -> date:
    if week is None:
        return last_completed_week(utc_now()).monday
    return week - timedelta(days=week.weekday())


@router.get("")
def week_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: ProvinceAdmin,
    week: date | None = None,
    late_only: bool = False,
) -> Response:
    monday = _monday(week)
    overview, _ = week_overview(
        session, Actor.for_user(user.user), settings, monday, late_only=late_only
    )
    return render(
        request,
        "province/week.html",
        {
            "overview": overview,
            "late_only": late_only,
            "previous": monday - timedelta(days=7),
            "next": monday + timedelta(days=7),
        },
        user=user,
    )


@router.get("/rankings")
def rankings_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: ProvinceAdmin,
    week: date | None = None,
) -> Response:
    monday = _monday(week)
    _, views = week_overview(session, Actor.for_user(user.user), settings, monday)
    ranking = week_rankings(monday, views)
    peak = (
        max([row.year_to_date_fen for row in ranking.undergraduate + ranking.vocational] or [0])
        or 1
    )
    return render(request, "province/rankings.html", {"ranking": ranking, "peak": peak}, user=user)


@router.get("/counties")
def counties_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: ProvinceAdmin,
    week: date | None = None,
) -> Response:
    monday = _monday(week)
    _, views = week_overview(session, Actor.for_user(user.user), settings, monday)
    totals = week_county_totals(monday, views)
    peak = max([row.year_to_date_fen for row in totals.counties] or [0]) or 1
    return render(request, "province/counties.html", {"totals": totals, "peak": peak}, user=user)


@router.get("/plans")
def plans_page(request: Request, session: SessionDep, user: ProvinceAdmin) -> Response:
    summary = province_summary(session, Actor.for_user(user.user))
    return render(request, "province/plans.html", {"plans": summary}, user=user)


@router.get("/schools/{school_id}/reports/{week}")
def school_report(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: ProvinceAdmin,
    school_id: int,
    week: date,
    seen: int | None = None,
) -> Response:
    view = reports.get_report(
        session,
        actor=Actor.for_user(user.user),
        school_id=school_id,
        week=reports.parse_week(_monday(week)),
        year=reports.YearStart.from_settings(settings),
    )
    return render(
        request,
        "province/school_report.html",
        {
            "report": ReportPublic.from_view(view),
            "seen": seen,
            "export_base": (
                f"/api/v1/schools/{school_id}/procurement/reports/{view.week.monday}/export"
            ),
        },
        user=user,
    )


@router.post("/schools/{school_id}/reports/{week}/seen")
def mark_seen(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: ProvinceAdmin,
    school_id: int,
    week: date,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    if not csrf_matches(user.token, settings.resolved_secret_key, csrf_token):
        return render(
            request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403
        )
    try:
        reports.mark_seen(
            session,
            actor=Actor.for_user(user.user),
            school_id=school_id,
            week=reports.parse_week(week),
        )
        session.commit()
    except ServiceError:
        # Only a submitted report can be marked; the page shows its real status.
        session.rollback()
        return RedirectResponse(f"/province/schools/{school_id}/reports/{week}", status_code=303)
    return RedirectResponse(f"/province/schools/{school_id}/reports/{week}?seen=1", status_code=303)
