"""The fleet board: every cabinet's live state by school and location, and open alerts."""

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.models import LocationType
from fleet_server.schemas.monitoring import FleetCabinetPublic, FleetConnection
from fleet_server.services import alerts as alert_service
from fleet_server.services.errors import ServiceError
from fleet_server.web.operator.common import (
    PAGE_PREFIX,
    AlertView,
    FormFields,
    OperatorUser,
    actor_of,
    alert_view,
    cabinet_condition,
    csrf_failed,
    csrf_ok,
    fleet_rows,
    format_time,
    live_context,
    log_rejection,
    not_found,
    parse_int,
    translator,
    unresolved_alerts,
)
from fleet_server.web.rendering import render

router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)

BOARD_NOTICES = frozenset({"alert_acknowledged", "alert_resolved", "alert_failed"})


@dataclass
class CabinetCard:
    row: FleetCabinetPublic
    condition: str
    alerts: list[AlertView]


@dataclass
class LocationGroup:
    location_type: LocationType
    cabinets: list[CabinetCard] = field(default_factory=list)


@dataclass
class SchoolGroup:
    school_id: int
    school_name: str
    locations: list[LocationGroup] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(location.cabinets) for location in self.locations)

    @property
    def online(self) -> int:
        return sum(
            1
            for location in self.locations
            for card in location.cabinets
            if card.row.connection is FleetConnection.ONLINE
        )


def group_board(cards: list[CabinetCard]) -> list[SchoolGroup]:
    """Group cards by school, then by location type in the order of LocationType."""
    location_order = {location: index for index, location in enumerate(LocationType)}
    schools: dict[int, SchoolGroup] = {}
    for card in cards:
        school = schools.setdefault(
            card.row.school_id, SchoolGroup(card.row.school_id, card.row.school_name)
        )
        location = next(
            (group for group in school.locations if group.location_type == card.row.location_type),
            None,
        )
        if location is None:
            location = LocationGroup(card.row.location_type)
            school.locations.append(location)
        location.cabinets.append(card)
    for school in schools.values():
        school.locations.sort(key=lambda group: location_order[group.location_type])
    return sorted(schools.values(), key=lambda school: school.school_id)


@router.get("")
def board(
    request: Request,
    session: SessionDep,
    user: OperatorUser,
    school_id: str | None = None,
    notice: str | None = None,
) -> Response:
    actor = actor_of(user)
    t = translator(request)
    chosen_school = parse_int(school_id)
    all_rows = fleet_rows(session, actor)
    rows = [row for row in all_rows if chosen_school is None or row.school_id == chosen_school]
    by_kiosk = {row.kiosk_id: row for row in rows}
    alerts = [
        alert_view(alert, t, by_kiosk)
        for alert in unresolved_alerts(session, actor)
        if alert.kiosk_id in by_kiosk
    ]
    cards = [
        CabinetCard(
            row=row,
            condition=cabinet_condition(row),
            alerts=[alert for alert in alerts if alert.kiosk_id == row.kiosk_id],
        )
        for row in rows
    ]
    return render(
        request,
        "operator/board.html",
        {
            "groups": group_board(cards),
            "alerts": alerts,
            "schools": sorted({(row.school_id, row.school_name) for row in all_rows}),
            "chosen_school": chosen_school,
            "summary": {
                "cabinets": len(rows),
                "online": sum(1 for row in rows if row.connection is FleetConnection.ONLINE),
                "offline": sum(1 for row in rows if row.connection is FleetConnection.OFFLINE),
                "alerts": len(alerts),
            },
            "notice": notice if notice in BOARD_NOTICES else None,
            "when": format_time,
            "nav_current": "board",
            **live_context(request, rows),
        },
        user=user,
    )


@router.post("/alerts/{alert_id}/{action}")
def alert_action(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: OperatorUser,
    fields: FormFields,
    alert_id: int,
    action: str,
) -> Response:
    """Acknowledge or resolve an alert when the page runs without JavaScript.

    With JavaScript, operator.js calls the API instead and stays on the page.
    """
    if not csrf_ok(user, settings, fields):
        return csrf_failed(request, user)
    handlers: dict[str, Callable[..., object]] = {
        "acknowledge": alert_service.acknowledge_alert,
        "resolve": alert_service.resolve_alert,
    }
    handler = handlers.get(action)
    if handler is None:
        return not_found(request, user)
    try:
        handler(session, actor=actor_of(user), alert_id=alert_id)
    except ServiceError as error:
        session.rollback()
        log_rejection(user, f"alert {action}", alert_id, error)
        return RedirectResponse("/operator?notice=alert_failed", status_code=303)
    session.commit()
    notice = "alert_acknowledged" if action == "acknowledge" else "alert_resolved"
    return RedirectResponse(f"/operator?notice={notice}", status_code=303)
