"""Placement plans: how many cabinets a school means to place, and where."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models.base import Base, BigIntId, CreatedAt, JSONDocument, UTCDateTime
from fleet_server.models.enums import enum_type


class PlanStatus(enum.StrEnum):
    SUBMITTED = "submitted"  # sent to the province; the school's latest one is its plan


class PlacementPlan(Base):
    """One submitted version of a school's placement plan, never changed afterwards."""

    __tablename__ = "placement_plans"
    __table_args__ = (
        # A school's plans, newest first; the first one is the school's current plan.
        Index("ix_placement_plans_school_id_submitted_at", "school_id", "submitted_at"),
        CheckConstraint("total >= 0", name="total_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    status: Mapped[PlanStatus] = mapped_column(enum_type(PlanStatus, "plan_status"))
    # Enrollment and staff the plan was made from.
    enrollment: Mapped[int] = mapped_column(Integer())
    staff_count: Mapped[int | None] = mapped_column(Integer())
    # The planner's settings: students_per_cabinet, type_weights, min_per_building.
    config: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    total: Mapped[int] = mapped_column(Integer())
    # {"total": {...}, "by_type": [...], "by_building": [...]}, each with its explanation.
    allocation: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    note: Mapped[str] = mapped_column(String(500), default="")
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[CreatedAt]
