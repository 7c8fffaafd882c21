from typing import Annotated

from fastapi import APIRouter, Path

from fleet_server.api.deps import CurrentActor, SessionDep
from fleet_server.api.errors import error_responses
from fleet_server.models import CountyLevel
from fleet_server.schemas.common import Text
from fleet_server.schemas.counties import CountyPublic
from fleet_server.services import counties as county_service

router = APIRouter(prefix="/counties", tags=["counties"])


@router.get("", responses=error_responses(401, 422))
def list_counties(
    session: SessionDep,
    actor: CurrentActor,
    city: Text | None = None,
    level: CountyLevel | None = None,
) -> list[CountyPublic]:
    """List Anhui's poverty counties with every division code each has had."""
    return [
        CountyPublic.from_model(county)
        for county in county_service.list_counties(session, city=city, level=level)
    ]


@router.get("/{code}", responses=error_responses(401, 404, 422))
def get_county(
    session: SessionDep,
    actor: CurrentActor,
    code: Annotated[str, Path(pattern=r"^\d{6}$", examples=["341521"])],
) -> CountyPublic:
    """Look a county up by its current or any former division code."""
    return CountyPublic.from_model(county_service.get_county_by_code(session, code=code))
