"""Provisioning routes: issue a cabinet's credentials and print its sticker."""

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict

from fleet_server.api.deps import CabinetRegistrarActor, SessionDep, SettingsDep, StaffActor
from fleet_server.api.errors import error_responses
from fleet_server.models.enums import CabinetServiceStatus
from fleet_server.schemas.common import Text
from fleet_server.schemas.operators import CabinetCreate
from fleet_server.schemas.provisioning import ProvisioningPublic
from fleet_server.services import provisioning as provisioning_service

router = APIRouter(tags=["provisioning"])

# The response carries a password and a key, which no cache may keep.
NO_STORE = "no-store"


@router.post("/cabinets/{kiosk_id}/provision", responses=error_responses(401, 403, 404, 422))
def provision_cabinet(
    session: SessionDep,
    settings: SettingsDep,
    actor: CabinetRegistrarActor,
    kiosk_id: Text,
    response: Response,
) -> ProvisioningPublic:
    """Issue new broker credentials and a new key for a cabinet, replacing earlier ones.

    The response is the only copy of the broker password: the server keeps its hash.
    """
    bundle = provisioning_service.provision_cabinet(
        session, actor=actor, kiosk_id=kiosk_id, settings=settings
    )
    session.commit()
    response.headers["Cache-Control"] = NO_STORE
    return ProvisioningPublic.from_bundle(bundle)


@router.post(
    "/provisioning/cabinets",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 404, 409, 422),
)
def register_and_provision(
    session: SessionDep,
    settings: SettingsDep,
    actor: CabinetRegistrarActor,
    body: CabinetCreate,
    response: Response,
) -> ProvisioningPublic:
    """Register a new cabinet at a placement and issue its credentials in one step."""
    bundle = provisioning_service.register_and_provision(
        session, actor=actor, data=body, settings=settings
    )
    session.commit()
    response.headers["Cache-Control"] = NO_STORE
    return ProvisioningPublic.from_bundle(bundle)


class ServiceStatusUpdate(BaseModel):
    """A cabinet's new service status: in_service, out_of_service or retired."""

    model_config = ConfigDict(extra="forbid")

    service_status: CabinetServiceStatus


class ServiceStatusPublic(BaseModel):
    kiosk_id: str
    service_status: CabinetServiceStatus


@router.put("/cabinets/{kiosk_id}/service-status", responses=error_responses(401, 403, 404, 422))
def set_service_status(
    session: SessionDep,
    actor: CabinetRegistrarActor,
    kiosk_id: Text,
    body: ServiceStatusUpdate,
) -> ServiceStatusPublic:
    """Put a provisioned cabinet in service (purchases need it), pause it or retire it."""
    cabinet = provisioning_service.set_service_status(
        session, actor=actor, kiosk_id=kiosk_id, status=body.service_status
    )
    session.commit()
    return ServiceStatusPublic(kiosk_id=cabinet.kiosk_id, service_status=cabinet.service_status)


@router.get(
    "/cabinets/{kiosk_id}/sticker.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **error_responses(401, 403, 404, 422)},
)
def get_sticker(
    session: SessionDep, settings: SettingsDep, actor: StaffActor, kiosk_id: Text
) -> Response:
    """Return the printable sticker (SVG) with the cabinet's id, placement and QR code."""
    svg = provisioning_service.get_sticker(
        session, actor=actor, kiosk_id=kiosk_id, settings=settings
    )
    return Response(content=svg, media_type="image/svg+xml")
