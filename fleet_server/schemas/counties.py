from pydantic import BaseModel, ConfigDict

from fleet_server.models import County, CountyLevel


class CountyCodePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    is_current: bool
    name_then: str
    city_then: str
    replaced_in_year: int | None


class CountySummary(BaseModel):
    """A county as other objects (schools, products) refer to it."""

    id: int
    code: str
    name: str
    name_en: str
    city: str
    level: CountyLevel

    @classmethod
    def from_model(cls, county: County) -> "CountySummary":
        return cls(
            id=county.id,
            code=county.current_code,
            name=county.name,
            name_en=county.name_en,
            city=county.city,
            level=county.level,
        )


class CountyPublic(CountySummary):
    level_derived: bool
    codes: list[CountyCodePublic]

    @classmethod
    def from_model(cls, county: County) -> "CountyPublic":
        return cls(
            **CountySummary.from_model(county).model_dump(),
            level_derived=county.level_derived,
            codes=[CountyCodePublic.model_validate(code) for code in county.codes],
        )
