"""Alert routes: list, acknowledge and resolve (both audit-logged)."""

from fastapi import APIRouter

from fleet_server.api.deps import (
    CabinetRegistrarActor,
    PageLimit,
    PageOffset,
    SessionDep,
    StaffActor,
)
from fleet_server.api.errors import error_responses
from fleet_server.models import AlertKind, AlertState
from fleet_server.schemas.common import Page, Text
from fleet_server.schemas.monitoring import AlertAction, AlertPublic
from fleet_server.services import alerts as alert_service
from fleet_server.services.fleet import alert_public
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", responses=error_responses(401, 403, 422))
def list_alerts(
    session: SessionDep,
    actor: StaffActor,
    state: AlertState | None = None,
    unresolved: bool = False,
    kind: AlertKind | None = None,
    kiosk_id: Text | None = None,
    school_id: int | None = None,
    operator_id: int | None = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[AlertPublic]:
    """List the alerts of the cabinets the caller may see, newest first."""
    page = alert_service.list_alerts(
        session,
        actor=actor,
        limit=limit,
        offset=offset,
        state=state,
        unresolved=unresolved,
        kind=kind,
        kiosk_id=kiosk_id,
        school_id=school_id,
        operator_id=operator_id,
    )
    return Page[AlertPublic](
        items=[alert_public(alert) for alert in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/{alert_id}/acknowledge", responses=error_responses(401, 403, 404, 409, 422))
def acknowledge_alert(
    session: SessionDep, actor: CabinetRegistrarActor, alert_id: int, body: AlertAction
) -> AlertPublic:
    """Mark an open alert as being handled."""
    alert = alert_service.acknowledge_alert(session, actor=actor, alert_id=alert_id, note=body.note)
    session.commit()
    return alert_public(alert)


@router.post("/{alert_id}/resolve", responses=error_responses(401, 403, 404, 409, 422))
def resolve_alert(
    session: SessionDep, actor: CabinetRegistrarActor, alert_id: int, body: AlertAction
) -> AlertPublic:
    """Close an open or acknowledged alert."""
    alert = alert_service.resolve_alert(session, actor=actor, alert_id=alert_id, note=body.note)
    session.commit()
    return alert_public(alert)
