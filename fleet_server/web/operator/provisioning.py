"""Registering and provisioning a cabinet, and the page that shows its credentials once."""

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.models import Building, Placement, School
from fleet_server.schemas.operators import CabinetCreate
from fleet_server.services import provisioning as provisioning_service
from fleet_server.services.errors import ConflictError, ServiceError
from fleet_server.services.stickers import placement_name
from fleet_server.web.operator.common import (
    PAGE_PREFIX,
    FormFields,
    OperatorUser,
    actor_of,
    csrf_failed,
    csrf_ok,
    log_rejection,
    parse_int,
    service_text,
    translator,
)
from fleet_server.web.rendering import render
from fleet_server.web.session import PageUser

router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)

# The same format as the API's KioskId; checked here to word the error for the form.
KIOSK_ID_PATTERN = re.compile(r"^AH-\d{5}-\d{4}$")
MAX_FIRMWARE_CHARS = 64


@dataclass
class ProvisionForm:
    kiosk_id: str = ""
    placement_id: str = ""
    firmware_version: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlacementChoice:
    id: int
    label: str


def placement_choices(session: Session) -> list[tuple[str, list[PlacementChoice]]]:
    """Return every placement grouped by school name, for the registration form.

    NOTE: this lists the placements of every school, beyond what an operator may read
    elsewhere, because registration accepts any placement: the registry does not yet
    record which operators a school has contracted.
    """
    placements = session.scalars(
        select(Placement)
        .join(Building, Placement.building_id == Building.id)
        .join(School, Building.school_id == School.id)
        .order_by(School.id, Building.id, Placement.id)
        .options(joinedload(Placement.building).joinedload(Building.school))
    )
    groups: dict[str, list[PlacementChoice]] = {}
    for placement in placements:
        building = placement.building
        label = placement_name(building.name, placement.floor, placement.description)
        groups.setdefault(building.school.name, []).append(PlacementChoice(placement.id, label))
    return list(groups.items())


def render_form(
    request: Request,
    session: Session,
    user: PageUser,
    form: ProvisionForm,
    *,
    form_error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "operator/provision.html",
        {
            "form": form,
            "placement_groups": placement_choices(session),
            "form_error": form_error,
            "nav_current": "provision",
        },
        user=user,
        status_code=status_code,
    )


def strip_xml_declaration(svg: str) -> str:
    """Return an SVG document without its <?xml?> line, for use inside HTML."""
    return svg.split("?>", 1)[1].lstrip() if svg.startswith("<?xml") else svg


def render_provisioned(
    request: Request, user: PageUser, bundle: provisioning_service.ProvisioningBundle
) -> Response:
    """Show the credentials this once. The config file downloads from a data: URL.

    The page is the only copy of the broker password, so no cache may keep it and the
    server keeps nothing to download later.
    """
    response = render(
        request,
        "operator/provisioned.html",
        {
            "bundle": bundle,
            "config_name": f"{bundle.kiosk_id}.agent.toml",
            "config_href": "data:application/toml;charset=utf-8," + quote(bundle.agent_config_toml),
            "sticker_svg": strip_xml_declaration(bundle.sticker_svg),
            "nav_current": "provision",
        },
        user=user,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/provision")
def provision_form(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    return render_form(request, session, user, ProvisionForm())


@router.post("/provision")
def provision(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    fields: FormFields,
) -> Response:
    if not csrf_ok(user, settings, fields):
        return csrf_failed(request, user)
    t = translator(request)
    form = ProvisionForm(
        kiosk_id=fields.get("kiosk_id", "").strip().upper(),
        placement_id=fields.get("placement_id", "").strip(),
        firmware_version=fields.get("firmware_version", "").strip(),
    )
    if not form.kiosk_id:
        form.errors["kiosk_id"] = t("operator.error.required")
    elif not KIOSK_ID_PATTERN.match(form.kiosk_id):
        form.errors["kiosk_id"] = t("operator.error.kiosk_id")
    placement_id = parse_int(form.placement_id)
    if placement_id is None:
        form.errors["placement_id"] = t("operator.error.choose_placement")
    if len(form.firmware_version) > MAX_FIRMWARE_CHARS:
        form.errors["firmware_version"] = t("operator.error.firmware")
    if form.errors or placement_id is None:
        return render_form(
            request, session, user, form, form_error=t("form.fix_errors"), status_code=422
        )

    try:
        data = CabinetCreate(
            kiosk_id=form.kiosk_id,
            placement_id=placement_id,
            operator_id=user.user.operator_id,
            firmware_version=form.firmware_version or None,
        )
        bundle = provisioning_service.register_and_provision(
            session, actor=actor_of(user), data=data, settings=settings
        )
    except ValidationError as error:
        # The checks above mirror CabinetCreate; mark whatever field it still rejected.
        for detail in error.errors():
            name = str(detail["loc"][0]) if detail["loc"] else ""
            if name in ("kiosk_id", "placement_id", "firmware_version"):
                form.errors[name] = t("operator.error.invalid")
        return render_form(
            request, session, user, form, form_error=t("form.fix_errors"), status_code=422
        )
    except ServiceError as error:
        session.rollback()
        log_rejection(user, "registration", form.kiosk_id, error)
        message = service_text(request, error)
        if isinstance(error, ConflictError):
            form.errors["kiosk_id"] = message
        elif error.code == "placement_not_found":
            form.errors["placement_id"] = message
        form_error = t("form.fix_errors") if form.errors else message
        return render_form(request, session, user, form, form_error=form_error, status_code=422)
    session.commit()
    return render_provisioned(request, user, bundle)
