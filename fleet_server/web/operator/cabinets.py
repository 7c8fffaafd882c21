"""One cabinet's page (live state, alerts, service status, new credentials), stock, restock."""

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.core.config import ServerSettings
from fleet_server.models import CabinetServiceStatus
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import SHANGHAI
from fleet_server.services import fleet as fleet_service
from fleet_server.services import operators as operator_service
from fleet_server.services import provisioning as provisioning_service
from fleet_server.services.errors import NotFoundError, ServiceError
from fleet_server.services.monitoring import MonitoringPolicy
from fleet_server.web import i18n
from fleet_server.web.operator.common import (
    PAGE_PREFIX,
    FormFields,
    OperatorUser,
    actor_of,
    alert_view,
    cabinet_condition,
    csrf_failed,
    csrf_ok,
    fleet_rows,
    format_time,
    log_rejection,
    not_found,
    sample_notice,
    service_text,
    translator,
)
from fleet_server.web.operator.provisioning import render_provisioned
from fleet_server.web.rendering import render
from fleet_server.web.session import PageUser

router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)

MIB = 1024 * 1024
# Operators choose among these; "provisioned" is only the state before the first choice.
CHOSEN_STATUSES = (
    CabinetServiceStatus.IN_SERVICE,
    CabinetServiceStatus.OUT_OF_SERVICE,
    CabinetServiceStatus.RETIRED,
)


def render_cabinet(
    request: Request,
    session: Session,
    settings: ServerSettings,
    user: PageUser,
    kiosk_id: str,
    *,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        live = fleet_service.get_live_state(
            session,
            actor=actor_of(user),
            kiosk_id=kiosk_id,
            policy=MonitoringPolicy.from_settings(settings),
        )
    except NotFoundError:
        return not_found(request, user)
    t = translator(request)
    context: dict[str, Any] = {
        "cabinet": live,
        "condition": cabinet_condition(live),
        "alerts": [alert_view(alert, t, {live.kiosk_id: live}) for alert in live.alerts],
        "errors": errors or {},
        "notice": notice,
        "statuses": CHOSEN_STATUSES,
        "session_keys": {key for key in i18n.CATALOG if key.startswith("operator.session.")},
        "has_sample": any(line.is_sample for line in live.stock),
        "mib": MIB,
        "sample_notice": sample_notice(request),
        "when": format_time,
        "nav_current": "board",
    }
    return render(request, "operator/cabinet.html", context, user=user, status_code=status_code)


@router.get("/cabinets/{kiosk_id}")
def cabinet_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    kiosk_id: str,
    notice: str | None = None,
) -> Response:
    shown_notice = notice if notice == "service_saved" else None
    return render_cabinet(request, session, settings, user, kiosk_id, notice=shown_notice)


@router.post("/cabinets/{kiosk_id}/service-status")
def set_service_status(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    fields: FormFields,
    kiosk_id: str,
) -> Response:
    if not csrf_ok(user, settings, fields):
        return csrf_failed(request, user)
    chosen = fields.get("service_status", "")
    status = next((status for status in CHOSEN_STATUSES if status.value == chosen), None)
    if status is None:
        error = translator(request)("operator.error.required")
        return render_cabinet(
            request,
            session,
            settings,
            user,
            kiosk_id,
            errors={"service_status": error},
            status_code=422,
        )
    try:
        provisioning_service.set_service_status(
            session, actor=actor_of(user), kiosk_id=kiosk_id, status=status
        )
    except NotFoundError:
        return not_found(request, user)
    except ServiceError as error:
        session.rollback()
        log_rejection(user, "service status", kiosk_id, error)
        return render_cabinet(
            request,
            session,
            settings,
            user,
            kiosk_id,
            errors={"service_status": service_text(request, error)},
            status_code=422,
        )
    session.commit()
    return RedirectResponse(
        f"/operator/cabinets/{quote(kiosk_id)}?notice=service_saved", status_code=303
    )


@router.post("/cabinets/{kiosk_id}/provision")
def reprovision(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    fields: FormFields,
    kiosk_id: str,
) -> Response:
    """Issue new credentials for a registered cabinet once the operator confirmed it."""
    if not csrf_ok(user, settings, fields):
        return csrf_failed(request, user)
    if fields.get("confirm") != "yes":
        error = translator(request)("operator.cabinet.reprovision_unconfirmed")
        return render_cabinet(
            request, session, settings, user, kiosk_id, errors={"confirm": error}, status_code=422
        )
    try:
        bundle = provisioning_service.provision_cabinet(
            session, actor=actor_of(user), kiosk_id=kiosk_id, settings=settings
        )
    except NotFoundError:
        return not_found(request, user)
    except ServiceError as error:
        session.rollback()
        log_rejection(user, "provisioning", kiosk_id, error)
        errors = {"confirm": service_text(request, error)}
        return render_cabinet(
            request, session, settings, user, kiosk_id, errors=errors, status_code=422
        )
    session.commit()
    return render_provisioned(request, user, bundle)


@router.get("/cabinets/{kiosk_id}/service-status")
@router.get("/cabinets/{kiosk_id}/provision")
def back_to_cabinet(request: Request, kiosk_id: str) -> Response:
    """Send a GET of a form's target, such as after a language switch, to the cabinet page."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/operator/cabinets/{quote(kiosk_id)}{query}", status_code=303)


@router.get("/cabinets/{kiosk_id}/sticker")
def sticker_page(
    request: Request, session: SessionDep, user: OperatorUser, kiosk_id: str
) -> Response:
    try:
        cabinet = operator_service.get_cabinet(session, actor=actor_of(user), kiosk_id=kiosk_id)
    except NotFoundError:
        return not_found(request, user)
    return render(
        request,
        "operator/sticker.html",
        {"kiosk_id": cabinet.kiosk_id, "nav_current": "board"},
        user=user,
    )


@router.get("/stock")
def stock(
    request: Request, session: SessionDep, settings: SettingsDep, user: OperatorUser
) -> Response:
    actor = actor_of(user)
    policy = MonitoringPolicy.from_settings(settings)
    cabinets = [
        fleet_service.get_live_state(session, actor=actor, kiosk_id=row.kiosk_id, policy=policy)
        for row in fleet_rows(session, actor)
    ]
    return render(
        request,
        "operator/stock.html",
        {
            "cabinets": cabinets,
            "has_sample": any(line.is_sample for cabinet in cabinets for line in cabinet.stock),
            "sample_notice": sample_notice(request),
            "when": format_time,
            "nav_current": "stock",
        },
        user=user,
    )


@router.get("/restock")
def restock(
    request: Request, session: SessionDep, settings: SettingsDep, user: OperatorUser
) -> Response:
    """Render the restock list of the operator's company, laid out for printing."""
    policy = MonitoringPolicy.from_settings(settings)
    restock_list = fleet_service.restock_list(
        session, actor=actor_of(user), policy=policy, operator_id=user.user.operator_id
    )
    return render(
        request,
        "operator/restock.html",
        {
            "restock": restock_list,
            "percent": round(restock_list.low_stock_fraction * 100),
            "generated_at": utc_now().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
            "sample_notice": sample_notice(request),
            "nav_current": "restock",
        },
        user=user,
    )
