"""Request and response bodies of placement planning."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from fleet_server.models import LocationType, PlacementPlan
from fleet_server.schemas.common import RequestModel
from fleet_server.services.placement_plans import (
    PROVINCE_TARGET,
    PlanResult,
    SchoolPlanRow,
    allocation_document,
    config_document,
)

Weight = Annotated[int, Field(strict=True, ge=0, le=1_000)]
Minimum = Annotated[int, Field(strict=True, ge=0, le=100)]


class PlannerSettings(RequestModel):
    """The planner's assumptions; anything left out keeps its default."""

    students_per_cabinet: int | None = Field(
        default=None, strict=True, ge=1, le=100_000, description="students one cabinet serves"
    )
    type_weights: dict[LocationType, Weight] | None = Field(
        default=None, description="relative weight of each location type"
    )
    min_per_building: dict[LocationType, Minimum] | None = Field(
        default=None, description="least cabinets in every building of a type"
    )


class PlanSubmit(PlannerSettings):
    note: str = Field(default="", max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")


class TypeAllocation(BaseModel):
    location_type: LocationType
    count: int
    explanation: str
    explanation_en: str


class BuildingAllocation(BaseModel):
    building_id: int
    building_name: str
    location_type: LocationType
    count: int
    explanation: str
    explanation_en: str
    installed: int = 0
    online: int = 0
    to_install: int = 0


class Recommendation(BaseModel):
    school_id: int
    enrollment: int
    staff_count: int | None
    config: dict[str, Any]
    total: int
    total_explanation: str
    total_explanation_en: str
    by_type: list[TypeAllocation]
    by_building: list[BuildingAllocation]
    installed: int
    online: int

    @classmethod
    def from_result(cls, result: PlanResult) -> "Recommendation":
        document = allocation_document(result)
        gaps = {int(gap.building_id): gap for gap in result.gaps}
        assert result.school.enrollment is not None
        return cls(
            school_id=result.school.id,
            enrollment=result.school.enrollment,
            staff_count=result.school.staff_count,
            config=config_document(result.config),
            total=document["total"]["count"],
            total_explanation=document["total"]["explanation"],
            total_explanation_en=document["total"]["explanation_en"],
            by_type=[TypeAllocation(**row) for row in document["by_type"]],
            by_building=[
                BuildingAllocation(
                    **row,
                    installed=gaps[row["building_id"]].installed,
                    online=gaps[row["building_id"]].online,
                    to_install=gaps[row["building_id"]].to_install,
                )
                for row in document["by_building"]
            ],
            installed=result.installed,
            online=result.online,
        )


class PlanPublic(BaseModel):
    id: int
    school_id: int
    enrollment: int
    staff_count: int | None
    config: dict[str, Any]
    total: int
    allocation: dict[str, Any]
    note: str
    submitted_at: datetime
    submitted_by: int | None

    @classmethod
    def from_model(cls, plan: PlacementPlan) -> "PlanPublic":
        return cls(
            id=plan.id,
            school_id=plan.school_id,
            enrollment=plan.enrollment,
            staff_count=plan.staff_count,
            config=plan.config,
            total=plan.total,
            allocation=plan.allocation,
            note=plan.note,
            submitted_at=plan.submitted_at,
            submitted_by=plan.submitted_by,
        )


class ProvincePlanRow(BaseModel):
    school_id: int
    school_name: str
    school_type: str
    enrollment: int | None
    planned: int | None = Field(description="total of the current plan, None if none submitted")
    plan_submitted_at: datetime | None
    installed: int
    online: int

    @classmethod
    def from_row(cls, row: SchoolPlanRow) -> "ProvincePlanRow":
        return cls(
            school_id=row.school.id,
            school_name=row.school.name,
            school_type=row.school.school_type.value,
            enrollment=row.school.enrollment,
            planned=row.plan.total if row.plan else None,
            plan_submitted_at=row.plan.submitted_at if row.plan else None,
            installed=row.installed,
            online=row.online,
        )


class ProvincePlans(BaseModel):
    target: int = PROVINCE_TARGET
    planned: int
    installed: int
    online: int
    schools_with_plan: int
    schools: list[ProvincePlanRow]
