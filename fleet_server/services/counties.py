"""Poverty counties, looked up by any division code they have had."""

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fleet_server.models import County, CountyCode, CountyLevel
from fleet_server.services.errors import NotFoundError


def list_counties(
    session: Session, *, city: str | None = None, level: CountyLevel | None = None
) -> list[County]:
    """Return the counties, ordered by current division code, with their codes loaded."""
    statement = (
        select(County)
        .join(CountyCode, (CountyCode.county_id == County.id) & CountyCode.is_current)
        .options(selectinload(County.codes))
        .order_by(CountyCode.code)
    )
    if city is not None:
        statement = statement.where(County.city == city)
    if level is not None:
        statement = statement.where(County.level == level)
    return list(session.scalars(statement))


def get_county_by_code(session: Session, *, code: str) -> County:
    """Return the county that has or had division code ``code``.

    Raises NotFoundError when no county ever had the code.
    """
    statement = (
        select(County)
        .join(CountyCode, CountyCode.county_id == County.id)
        .where(CountyCode.code == code)
        .options(selectinload(County.codes))
    )
    county = session.scalar(statement)
    if county is None:
        raise NotFoundError("county", code)
    return county


def get_counties_by_codes(session: Session, *, codes: Iterable[str]) -> list[County]:
    """Return the counties for ``codes``, without duplicates, in the order first named.

    Two codes of one county (e.g. 341521 and 340422) yield that county once.
    """
    counties: list[County] = []
    seen: set[int] = set()
    for code in codes:
        county = get_county_by_code(session, code=code)
        if county.id not in seen:
            seen.add(county.id)
            counties.append(county)
    return counties
