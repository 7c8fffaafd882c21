"""Bodies for buildings and for the cabinet placements inside them."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from fleet_server.models import Building, LocationType, Placement
from fleet_server.schemas.common import (
    CoordinatesMixin,
    Count,
    Latitude,
    Longitude,
    NameStr,
    RequestModel,
    UpdateModel,
    from_microdegrees,
)

DescriptionStr = Annotated[str, Field(min_length=1, max_length=500, examples=["一楼大厅东侧"])]
Floor = Annotated[int, Field(strict=True, ge=-10, le=200)]


class BuildingCreate(CoordinatesMixin, RequestModel):
    name: NameStr
    location_type: LocationType
    capacity: Count | None = Field(
        default=None, description="beds, seats or residents, depending on the location type"
    )


class BuildingUpdate(CoordinatesMixin, UpdateModel):
    NOT_NULLABLE = frozenset({"name", "location_type"})

    name: NameStr | None = None
    location_type: LocationType | None = None
    capacity: Count | None = None


class BuildingPublic(BaseModel):
    id: int
    school_id: int
    name: str
    location_type: LocationType
    capacity: int | None
    latitude: Latitude | None
    longitude: Longitude | None
    created_at: datetime

    @classmethod
    def from_model(cls, building: Building) -> "BuildingPublic":
        return cls(
            id=building.id,
            school_id=building.school_id,
            name=building.name,
            location_type=building.location_type,
            capacity=building.capacity,
            latitude=from_microdegrees(building.latitude_microdeg),
            longitude=from_microdegrees(building.longitude_microdeg),
            created_at=building.created_at,
        )


class PlacementCreate(CoordinatesMixin, RequestModel):
    building_id: int
    floor: Floor | None = None
    description: DescriptionStr


class PlacementUpdate(CoordinatesMixin, UpdateModel):
    NOT_NULLABLE = frozenset({"building_id", "description"})

    building_id: int | None = None
    floor: Floor | None = None
    description: DescriptionStr | None = None


class PlacementPublic(BaseModel):
    id: int
    school_id: int
    building_id: int
    floor: int | None
    description: str
    latitude: Latitude | None
    longitude: Longitude | None
    created_at: datetime

    @classmethod
    def from_model(cls, placement: Placement) -> "PlacementPublic":
        return cls(
            id=placement.id,
            school_id=placement.building.school_id,
            building_id=placement.building_id,
            floor=placement.floor,
            description=placement.description,
            latitude=from_microdegrees(placement.latitude_microdeg),
            longitude=from_microdegrees(placement.longitude_microdeg),
            created_at=placement.created_at,
        )
