"""Fleet monitoring routes: the fleet list, one cabinet's live state and restock lists."""

from typing import Annotated

from fastapi import APIRouter, Depends

from fleet_server.api.deps import PageLimit, PageOffset, SessionDep, SettingsDep, StaffActor
from fleet_server.api.errors import error_responses
from fleet_server.models import LocationType
from fleet_server.schemas.common import Page, Text
from fleet_server.schemas.monitoring import (
    CabinetLivePublic,
    FleetCabinetPublic,
    FleetConnection,
    RestockListPublic,
)
from fleet_server.services import fleet as fleet_service
from fleet_server.services.monitoring import MonitoringPolicy
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(tags=["fleet"])


def get_monitoring_policy(settings: SettingsDep) -> MonitoringPolicy:
    return MonitoringPolicy.from_settings(settings)


PolicyDep = Annotated[MonitoringPolicy, Depends(get_monitoring_policy)]


@router.get("/fleet/cabinets", responses=error_responses(401, 403, 422))
def list_fleet(
    session: SessionDep,
    actor: StaffActor,
    school_id: int | None = None,
    location_type: LocationType | None = None,
    state: FleetConnection | None = None,
    operator_id: int | None = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[FleetCabinetPublic]:
    """List the cabinets the caller may see with their live state, ordered by kiosk id."""
    page = fleet_service.list_fleet(
        session,
        actor=actor,
        limit=limit,
        offset=offset,
        school_id=school_id,
        location_type=location_type,
        connection=state,
        operator_id=operator_id,
    )
    return Page[FleetCabinetPublic](
        items=page.items, total=page.total, limit=page.limit, offset=page.offset
    )


@router.get("/fleet/cabinets/{kiosk_id}", responses=error_responses(401, 403, 404, 422))
def get_cabinet_state(
    session: SessionDep, actor: StaffActor, policy: PolicyDep, kiosk_id: Text
) -> CabinetLivePublic:
    """Return one cabinet's doors, scales, outbox, stock and unresolved alerts."""
    return fleet_service.get_live_state(session, actor=actor, kiosk_id=kiosk_id, policy=policy)


@router.get("/restock", responses=error_responses(401, 403, 422))
def get_restock_list(
    session: SessionDep,
    actor: StaffActor,
    policy: PolicyDep,
    operator_id: int | None = None,
    school_id: int | None = None,
) -> RestockListPublic:
    """Return the products to bring to each cabinet, and the totals to load (补货清单)."""
    return fleet_service.restock_list(
        session, actor=actor, policy=policy, operator_id=operator_id, school_id=school_id
    )
