"""The placement map: each campus drawn as inline SVG from the placements' coordinates.

No map tiles: the page draws the cabinets of a school relative to each other, projected
from latitude and longitude, with a scale bar. Nothing is loaded from another host.
"""

import math
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from fleet_server.api.deps import SessionDep
from fleet_server.models import Placement
from fleet_server.schemas.monitoring import FleetCabinetPublic
from fleet_server.web.operator.common import (
    PAGE_PREFIX,
    OperatorUser,
    actor_of,
    cabinet_condition,
    fleet_rows,
    live_context,
)
from fleet_server.web.rendering import render

router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)

MAP_WIDTH = 640
MAP_HEIGHT = 400
MAP_PADDING = 56
# A campus drawn from one building would have no extent; show at least this many metres.
MAP_MIN_SPAN_M = 300.0
METRES_PER_DEGREE = 111_320.0
MICRODEGREES = 1_000_000
# Cabinets at one spot sit on a ring of this radius around it, in SVG user units.
FAN_RADIUS = 14.0
LABEL_GAP = 6.0
SCALE_BAR_MAX = 140.0
SCALE_BAR_STEPS_M = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
CONDITIONS = ("ok", "attention", "offline", "unknown")


@dataclass(frozen=True)
class MapDot:
    row: FleetCabinetPublic
    x: float
    y: float
    hub_x: float
    hub_y: float
    condition: str


@dataclass(frozen=True)
class MapLabel:
    """A building's name beside its spot; ``fanned`` when several cabinets ring the spot."""

    x: float
    y: float
    text: str
    hub_x: float
    hub_y: float
    fanned: bool


@dataclass
class SchoolMap:
    school_id: int
    school_name: str
    dots: list[MapDot]
    labels: list[MapLabel]
    scale_length: float
    scale_m: int
    unplaced: list[FleetCabinetPublic]


def placement_point(placement: Placement) -> tuple[int, int] | None:
    """Return a placement's (latitude, longitude) in micro-degrees, else its building's."""
    if placement.latitude_microdeg is not None and placement.longitude_microdeg is not None:
        return placement.latitude_microdeg, placement.longitude_microdeg
    building = placement.building
    if building.latitude_microdeg is not None and building.longitude_microdeg is not None:
        return building.latitude_microdeg, building.longitude_microdeg
    return None


def project_school(
    school_id: int,
    school_name: str,
    rows: list[FleetCabinetPublic],
    placements: dict[int, Placement],
) -> SchoolMap:
    """Project a school's cabinets onto the map, north up.

    The projection is equirectangular: x is longitude scaled by cos(latitude), y is
    latitude. Across a campus of a few kilometres its distortion is far below a pixel.
    """
    located: dict[tuple[int, int], list[FleetCabinetPublic]] = {}
    building_names: dict[tuple[int, int], str] = {}
    unplaced: list[FleetCabinetPublic] = []
    for row in rows:
        placement = placements[row.placement_id]
        point = placement_point(placement)
        if point is None:
            unplaced.append(row)
            continue
        located.setdefault(point, []).append(row)
        building_names.setdefault(point, placement.building.name)
    if not located:
        return SchoolMap(school_id, school_name, [], [], 0.0, 0, unplaced)

    mean_latitude = sum(lat for lat, _ in located) / len(located) / MICRODEGREES
    x_metres = math.cos(math.radians(mean_latitude)) * METRES_PER_DEGREE / MICRODEGREES
    y_metres = METRES_PER_DEGREE / MICRODEGREES
    metres = {point: (point[1] * x_metres, point[0] * y_metres) for point in located}
    xs = [x for x, _ in metres.values()]
    ys = [y for _, y in metres.values()]
    span_x = max(max(xs) - min(xs), MAP_MIN_SPAN_M)
    span_y = max(max(ys) - min(ys), MAP_MIN_SPAN_M)
    scale = min((MAP_WIDTH - 2 * MAP_PADDING) / span_x, (MAP_HEIGHT - 2 * MAP_PADDING) / span_y)
    centre_x = (max(xs) + min(xs)) / 2
    centre_y = (max(ys) + min(ys)) / 2

    dots: list[MapDot] = []
    labels: list[MapLabel] = []
    for point, cabinets in sorted(located.items()):
        metre_x, metre_y = metres[point]
        hub_x = MAP_WIDTH / 2 + (metre_x - centre_x) * scale
        hub_y = MAP_HEIGHT / 2 - (metre_y - centre_y) * scale
        labels.append(
            MapLabel(
                x=round(hub_x + FAN_RADIUS + LABEL_GAP, 1),
                y=round(hub_y - FAN_RADIUS, 1),
                text=building_names[point],
                hub_x=round(hub_x, 1),
                hub_y=round(hub_y, 1),
                fanned=len(cabinets) > 1,
            )
        )
        radius = FAN_RADIUS if len(cabinets) > 1 else 0.0
        for index, row in enumerate(sorted(cabinets, key=lambda row: row.kiosk_id)):
            angle = 2 * math.pi * index / len(cabinets) - math.pi / 2
            dots.append(
                MapDot(
                    row=row,
                    x=round(hub_x + radius * math.cos(angle), 1),
                    y=round(hub_y + radius * math.sin(angle), 1),
                    hub_x=round(hub_x, 1),
                    hub_y=round(hub_y, 1),
                    condition=cabinet_condition(row),
                )
            )
    scale_m = max(
        (step for step in SCALE_BAR_STEPS_M if step * scale <= SCALE_BAR_MAX),
        default=SCALE_BAR_STEPS_M[0],
    )
    return SchoolMap(
        school_id, school_name, dots, labels, round(scale_m * scale, 1), scale_m, unplaced
    )


@router.get("/map")
def placement_map(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    rows = fleet_rows(session, actor_of(user))
    placements = {
        placement.id: placement
        for placement in session.scalars(
            select(Placement)
            .where(Placement.id.in_({row.placement_id for row in rows}))
            .options(joinedload(Placement.building))
        )
    }
    by_school: dict[tuple[int, str], list[FleetCabinetPublic]] = {}
    for row in rows:
        by_school.setdefault((row.school_id, row.school_name), []).append(row)
    maps = [
        project_school(school_id, school_name, school_rows, placements)
        for (school_id, school_name), school_rows in sorted(by_school.items())
    ]
    return render(
        request,
        "operator/map.html",
        {
            "maps": maps,
            "map_width": MAP_WIDTH,
            "map_height": MAP_HEIGHT,
            "conditions": CONDITIONS,
            "nav_current": "map",
            **live_context(request, rows),
        },
        user=user,
    )
