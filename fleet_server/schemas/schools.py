from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from fleet_server.models import School, SchoolType
from fleet_server.schemas.common import Count, DivisionCodeStr, NameStr, RequestModel, UpdateModel
from fleet_server.schemas.counties import CountySummary

CityStr = Annotated[str, Field(min_length=1, max_length=50, examples=["合肥市"])]
AsOfStr = Annotated[str, Field(max_length=20, examples=["2022"])]


class SchoolCreate(RequestModel):
    name: NameStr
    name_en: NameStr | None = None
    school_type: SchoolType
    city: CityStr
    enrollment: Count | None = None
    enrollment_as_of: AsOfStr | None = None
    staff_count: Count | None = None
    designated_county_codes: list[DivisionCodeStr] = Field(
        default_factory=list,
        description="对接贫困县: current or former division codes of the designated counties",
    )


class SchoolUpdate(UpdateModel):
    NOT_NULLABLE = frozenset({"name", "school_type", "city", "designated_county_codes"})

    name: NameStr | None = None
    name_en: NameStr | None = None
    school_type: SchoolType | None = None
    city: CityStr | None = None
    enrollment: Count | None = None
    enrollment_as_of: AsOfStr | None = None
    staff_count: Count | None = None
    designated_county_codes: list[DivisionCodeStr] | None = Field(
        default=None, description="replaces the whole list when given"
    )


class SchoolPublic(BaseModel):
    id: int
    name: str
    name_en: str | None
    school_type: SchoolType
    city: str
    enrollment: int | None
    enrollment_as_of: str | None
    staff_count: int | None
    designated_counties: list[CountySummary]
    created_at: datetime

    @classmethod
    def from_model(cls, school: School) -> "SchoolPublic":
        return cls(
            id=school.id,
            name=school.name,
            name_en=school.name_en,
            school_type=school.school_type,
            city=school.city,
            enrollment=school.enrollment,
            enrollment_as_of=school.enrollment_as_of,
            staff_count=school.staff_count,
            designated_counties=[
                CountySummary.from_model(county) for county in school.designated_counties
            ],
            created_at=school.created_at,
        )
