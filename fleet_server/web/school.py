"""The school administrator's pages: overview, ledger, import, weekly report, placement plan."""

import unicodedata
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.core.config import ServerSettings
from fleet_server.models import (
    EntrySource,
    LocationType,
    ProcurementChannel,
    ProcurementEntry,
    Role,
)
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import last_completed_week, week_of
from fleet_server.schemas.planning import PlannerSettings, Recommendation
from fleet_server.schemas.procurement import EntryCreate, EntryPublic, ReportPublic
from fleet_server.services import placement_plans as plans
from fleet_server.services import procurement_import as importing
from fleet_server.services import procurement_ledger as ledger
from fleet_server.services import procurement_reports as reports
from fleet_server.services.access import Actor
from fleet_server.services.errors import ServiceError
from fleet_server.web import i18n
from fleet_server.web.messages import school as school_messages
from fleet_server.web.rendering import page_user, render
from fleet_server.web.session import CSRF_FIELD, PageUser, csrf_matches

i18n.register(school_messages)

router = APIRouter(prefix="/school", include_in_schema=False)
SchoolAdmin = Annotated[PageUser, Depends(page_user(Role.SCHOOL_ADMIN))]
MANUAL_CHANNELS = [
    channel for channel in ProcurementChannel if channel is not ProcurementChannel.CABINET
]
ENTRY_FIELDS = (
    "occurred_on",
    "channel",
    "product_name",
    "certificate_number",
    "county_code",
    "county_name",
    "supplier",
    "quantity",
    "unit",
    "amount_yuan",
    "voucher_ref",
    "note",
)
# Message key of a rejected field, by field name.
FIELD_ERRORS = {
    "amount_yuan": "ledger.error.amount",
    "amount_fen": "ledger.error.amount",
    "quantity": "ledger.error.quantity",
    "occurred_on": "ledger.error.date",
    "county_code": "ledger.error.county_code",
}


def check_csrf(user: PageUser, settings: ServerSettings, offered: str) -> bool:
    return csrf_matches(user.token, settings.resolved_secret_key, offered)


def school_of(user: PageUser) -> int:
    assert user.user.school_id is not None, "a school administrator has a school"
    return user.user.school_id


# --- Overview ---------------------------------------------------------------------------------


@router.get("")
def overview(
    request: Request, session: SessionDep, settings: SettingsDep, user: SchoolAdmin
) -> Response:
    actor = Actor.for_user(user.user)
    school_id = school_of(user)
    now = utc_now()
    year = reports.YearStart.from_settings(settings)
    current = reports.get_report(
        session, actor=actor, school_id=school_id, week=week_of(now), year=year, now=now
    )
    last = reports.get_report(
        session, actor=actor, school_id=school_id, week=last_completed_week(now), year=year, now=now
    )
    recent = []
    week = last_completed_week(now)
    for _ in range(8):
        view = reports.get_report(
            session, actor=actor, school_id=school_id, week=week, year=year, now=now
        )
        recent.append(ReportPublic.from_view(view))
        week = week.previous()
    recent.reverse()
    peak = max((report.period_fen for report in recent), default=0) or 1
    return render(
        request,
        "school/overview.html",
        {
            "school": current.school,
            "current": ReportPublic.from_view(current),
            "last": ReportPublic.from_view(last),
            "recent": recent,
            "peak": peak,
        },
        user=user,
    )


# --- Ledger -----------------------------------------------------------------------------------


def _ledger_context(
    session: SessionDep, user: PageUser, counting: str | None, offset: int
) -> dict[str, Any]:
    school_id = school_of(user)
    page = ledger.list_entries(
        session,
        actor=Actor.for_user(user.user),
        school_id=school_id,
        limit=50,
        offset=max(offset, 0),
        counting={"yes": True, "no": False}.get(counting or ""),
    )
    return {
        "entries": [EntryPublic.from_model(entry) for entry in page.items],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "counting": counting or "",
        "channels": MANUAL_CHANNELS,
    }


@router.get("/ledger")
def ledger_page(
    request: Request,
    session: SessionDep,
    user: SchoolAdmin,
    counting: str | None = None,
    offset: int = 0,
    saved: int | None = None,
) -> Response:
    context = _ledger_context(session, user, counting, offset)
    notice = None
    if saved is not None:
        entry = next((item for item in context["entries"] if item.id == saved), None)
        if entry is not None:
            notice = entry
    return render(
        request,
        "school/ledger.html",
        {
            **context,
            "form": {"occurred_on": date.today().isoformat(), "channel": "canteen"},
            "errors": {},
            "saved": notice,
        },
        user=user,
    )


@router.post("/ledger")
async def add_entry(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: SchoolAdmin,
    voucher_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    form = await request.form()
    values = {name: str(form.get(name) or "").strip() for name in ENTRY_FIELDS}
    # Full-width digits, as Chinese input methods type them, are digits too.
    for name in ("county_code", "quantity"):
        values[name] = unicodedata.normalize("NFKC", values[name])
    if not check_csrf(user, settings, str(form.get(CSRF_FIELD) or "")):
        return render(
            request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403
        )

    errors: dict[str, str] = {}
    translate = i18n.Translator(i18n.request_lang(request))
    amount_fen = importing.yuan_to_fen(values["amount_yuan"]) if values["amount_yuan"] else None
    if values["amount_yuan"] and amount_fen is None:
        errors["amount_yuan"] = translate("ledger.error.amount")
    optional = ("certificate_number", "county_code", "county_name")
    body: dict[str, Any] = {
        key: (values[key] or None) if key in optional else values[key]
        for key in ENTRY_FIELDS
        if key != "amount_yuan"
    }
    body["amount_fen"] = amount_fen
    entry: EntryCreate | None = None
    try:
        entry = EntryCreate.model_validate(body)
    except ValidationError as error:
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else ""
            field = "amount_yuan" if field == "amount_fen" else field
            if field in errors:
                continue
            if not values.get(field) and field in values:
                errors[field] = translate("form.required")
            elif item["type"] == "string_too_long":
                errors[field] = translate("ledger.error.too_long")
            else:
                errors[field] = translate(FIELD_ERRORS.get(field, "form.fix_errors"))
    if entry is not None and not errors:
        try:
            voucher_id = None
            content = await voucher_file.read(ledger.MAX_VOUCHER_BYTES + 1) if voucher_file else b""
            if voucher_file is not None and voucher_file.filename and content:
                voucher = ledger.store_voucher(
                    session,
                    actor=Actor.for_user(user.user),
                    school_id=school_of(user),
                    filename=voucher_file.filename,
                    content=content,
                )
                voucher_id = voucher.id
            entry_input = entry.to_input(voucher_id)
            (saved,) = ledger.add_entries(
                session,
                actor=Actor.for_user(user.user),
                school_id=school_of(user),
                entries=[entry_input],
                source=EntrySource.FORM,
            )
            session.commit()
            return RedirectResponse(f"/school/ledger?saved={saved.id}", status_code=303)
        except ServiceError as error:
            session.rollback()
            field = (error.details or {}).get("field", "")
            field = {"file": "voucher_file", "amount_fen": "amount_yuan"}.get(field, field)
            errors[field or "_form"] = error.message if translate.lang == "zh" else error.message_en

    context = _ledger_context(session, user, None, 0)
    return render(
        request,
        "school/ledger.html",
        {**context, "form": values, "errors": errors, "saved": None},
        user=user,
        status_code=422,
    )


@router.post("/ledger/{entry_id}/void")
def void_entry(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: SchoolAdmin,
    entry_id: int,
    reason: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    if not check_csrf(user, settings, csrf_token):
        return render(
            request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403
        )
    # Control characters would only garble the audit log; the reason is free text.
    reason = "".join(char for char in reason if char.isprintable()).strip()[:500] or "—"
    try:
        ledger.void_entry(
            session,
            actor=Actor.for_user(user.user),
            school_id=school_of(user),
            entry_id=entry_id,
            reason=reason,
        )
        session.commit()
    except ServiceError:
        session.rollback()
    return RedirectResponse("/school/ledger", status_code=303)


# --- Import -----------------------------------------------------------------------------------


@router.get("/import")
def import_page(
    request: Request, session: SessionDep, user: SchoolAdmin, batch: str | None = None
) -> Response:
    result = None
    if batch:
        rows = session.execute(
            select(ProcurementEntry.amount_fen, ProcurementEntry.not_counting_reason).where(
                ProcurementEntry.school_id == school_of(user),
                ProcurementEntry.import_batch == batch[:36],
            )
        ).all()
        if rows:
            result = {
                "created": len(rows),
                "counting": sum(1 for _, reason in rows if reason is None),
                "amount_fen": sum(amount for amount, _ in rows),
            }
    return render(
        request, "school/import.html", {"problems": [], "result": result, "error": None}, user=user
    )


@router.post("/import")
async def import_file(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: SchoolAdmin,
    file: Annotated[UploadFile | None, File()] = None,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    if not check_csrf(user, settings, csrf_token):
        return render(
            request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403
        )
    translate = i18n.Translator(i18n.request_lang(request))
    if file is None or not file.filename:
        return render(
            request,
            "school/import.html",
            {"problems": [], "result": None, "error": translate("import.no_file")},
            user=user,
            status_code=422,
        )
    content = await file.read(importing.MAX_IMPORT_BYTES + 1)
    try:
        entries = importing.parse_entries(content)
        saved = ledger.add_entries(
            session,
            actor=Actor.for_user(user.user),
            school_id=school_of(user),
            entries=entries,
            source=EntrySource.IMPORT,
        )
        session.commit()
    except ServiceError as error:
        session.rollback()
        problems = [
            item["message"] if translate.lang == "zh" else item["message_en"]
            for item in (error.details or {}).get("errors", [])
        ]
        return render(
            request,
            "school/import.html",
            {
                "problems": problems,
                "result": None,
                "error": error.message if translate.lang == "zh" else error.message_en,
            },
            user=user,
            status_code=422,
        )
    # Redirect after the import, so that reloading the result page cannot import again.
    return RedirectResponse(f"/school/import?batch={saved[0].import_batch}", status_code=303)


# --- Weekly report ------------------------------------------------------------------------------


@router.get("/report")
def latest_report() -> Response:
    return RedirectResponse(
        f"/school/reports/{last_completed_week(utc_now()).monday}", status_code=303
    )


@router.get("/reports/{week}")
def report_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: SchoolAdmin,
    week: date,
    submitted: int | None = None,
) -> Response:
    return _render_report(request, session, settings, user, week, submitted=submitted)


def _render_report(
    request: Request,
    session: SessionDep,
    settings: ServerSettings,
    user: PageUser,
    week: date,
    *,
    submitted: int | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    report_week = reports.parse_week(week - timedelta(days=week.weekday()))
    view = reports.get_report(
        session,
        actor=Actor.for_user(user.user),
        school_id=school_of(user),
        week=report_week,
        year=reports.YearStart.from_settings(settings),
    )
    return render(
        request,
        "school/report.html",
        {
            "report": ReportPublic.from_view(view),
            "can_submit": view.status.value == "draft"
            and reports.can_submit(session, school_of(user), report_week, utc_now()),
            "previous": report_week.previous().monday,
            "next": report_week.next().monday,
            "submitted": submitted,
            "error": error,
            "export_base": (
                f"/api/v1/schools/{school_of(user)}/procurement/reports/{report_week.monday}/export"
            ),
        },
        user=user,
        status_code=status_code,
    )


@router.post("/reports/{week}/submit")
def submit_report(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: SchoolAdmin,
    week: date,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    if not check_csrf(user, settings, csrf_token):
        return render(
            request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403
        )
    try:
        reports.submit_report(
            session,
            actor=Actor.for_user(user.user),
            school_id=school_of(user),
            week=reports.parse_week(week),
            year=reports.YearStart.from_settings(settings),
        )
        session.commit()
    except ServiceError as error:
        session.rollback()
        lang = i18n.request_lang(request)
        message = error.message if lang == "zh" else error.message_en
        return render_report_error(request, session, settings, user, week, message)
    return RedirectResponse(f"/school/reports/{week}?submitted=1", status_code=303)


def render_report_error(
    request: Request,
    session: SessionDep,
    settings: ServerSettings,
    user: PageUser,
    week: date,
    message: str,
) -> Response:
    return _render_report(
        request,
        session,
        settings,
        user,
        week - timedelta(days=week.weekday()),
        error=message,
        status_code=422,
    )


# --- Placement plan -------------------------------------------------------------------------------


PLAN_TYPES = list(LocationType)


@router.get("/plan")
def plan_page(
    request: Request, session: SessionDep, user: SchoolAdmin, submitted: int | None = None
) -> Response:
    return _render_plan(request, session, user, {}, {}, submitted=bool(submitted))


@router.post("/plan")
async def plan_action(
    request: Request, session: SessionDep, settings: SettingsDep, user: SchoolAdmin
) -> Response:
    form = await request.form()
    if not check_csrf(user, settings, str(form.get(CSRF_FIELD) or "")):
        return render(
            request, "error.html", {"message_key": "error.csrf"}, user=user, status_code=403
        )
    values = {key: str(value).strip() for key, value in form.items() if isinstance(value, str)}
    translate = i18n.Translator(i18n.request_lang(request))
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"type_weights": {}, "min_per_building": {}}
    number = _whole(values.get("students_per_cabinet", ""))
    if values.get("students_per_cabinet"):
        if number is None or not 1 <= number <= 100_000:
            errors["students_per_cabinet"] = translate("plan.error.positive")
        else:
            body["students_per_cabinet"] = number
    for location_type in PLAN_TYPES:
        for prefix, limit, message in (
            ("weight_", 1_000, "plan.error.weight"),
            ("minimum_", 100, "plan.error.minimum"),
        ):
            name = prefix + location_type.value
            if not values.get(name):
                continue
            number = _whole(values[name])
            if number is None or not 0 <= number <= limit:
                errors[name] = translate(message)
            else:
                key = "type_weights" if prefix == "weight_" else "min_per_building"
                body[key][location_type.value] = number
    if errors:
        return _render_plan(request, session, user, values, errors, status_code=422)
    settings_body = PlannerSettings.model_validate(body)
    if values.get("action") == "submit":
        try:
            plans.submit_plan(
                session,
                actor=Actor.for_user(user.user),
                school_id=school_of(user),
                config=_planner_config(settings_body),
                note="",
            )
            session.commit()
        except ServiceError as error:
            session.rollback()
            errors["_form"] = error.message if translate.lang == "zh" else error.message_en
            return _render_plan(request, session, user, values, errors, status_code=422)
        return RedirectResponse("/school/plan?submitted=1", status_code=303)
    return _render_plan(request, session, user, values, errors)


def _whole(text: str) -> int | None:
    # isdigit() alone also accepts superscripts such as "²", which int() refuses.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 7 else None


def _planner_config(body: PlannerSettings) -> Any:
    return plans.make_config(
        body.students_per_cabinet,
        {key.value: value for key, value in (body.type_weights or {}).items()},
        {key.value: value for key, value in (body.min_per_building or {}).items()},
    )


def _render_plan(
    request: Request,
    session: SessionDep,
    user: PageUser,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    submitted: bool = False,
    status_code: int = 200,
) -> Response:
    config_values: dict[str, Any] = {"type_weights": {}, "min_per_building": {}}
    if not errors:
        if values.get("students_per_cabinet"):
            config_values["students_per_cabinet"] = int(values["students_per_cabinet"])
        for location_type in PLAN_TYPES:
            for prefix, key in (("weight_", "type_weights"), ("minimum_", "min_per_building")):
                if values.get(prefix + location_type.value):
                    config_values[key][location_type.value] = int(
                        values[prefix + location_type.value]
                    )
    config = _planner_config(PlannerSettings.model_validate(config_values))
    recommendation = None
    problem = None
    try:
        recommendation = Recommendation.from_result(
            plans.recommend_for(session, Actor.for_user(user.user), school_of(user), config)
        )
    except ServiceError as error:
        problem = error.code
    document = plans.config_document(config)
    shown = {
        "students_per_cabinet": values.get(
            "students_per_cabinet", str(document["students_per_cabinet"])
        ),
        **{
            f"weight_{key}": values.get(f"weight_{key}", str(document["type_weights"].get(key, 0)))
            for key in (t.value for t in PLAN_TYPES)
        },
        **{
            f"minimum_{key}": values.get(
                f"minimum_{key}", str(document["min_per_building"].get(key, 0))
            )
            for key in (t.value for t in PLAN_TYPES)
        },
    }
    return render(
        request,
        "school/plan.html",
        {
            "recommendation": recommendation,
            "problem": problem,
            "current": plans.current_plan(session, school_of(user)),
            "values": shown,
            "errors": errors,
            "types": PLAN_TYPES,
            "submitted": submitted,
        },
        user=user,
        status_code=status_code,
    )
