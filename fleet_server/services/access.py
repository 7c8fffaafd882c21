"""Scope rules: the one place where a caller's role becomes SQL conditions on each table.

- province_admin: every school, building, placement, operator and cabinet.
- school_admin: its own school with its buildings and placements, the cabinets at that
  school, and the operators that run them.
- operator: its own company and cabinets, and (read-only) the schools, buildings and
  placements where it has a cabinet.
- student: none of these.

Counties and products are reference data that every signed-in user may read. Services
filter every query through these conditions, so an object outside the caller's scope is
reported as not found, exactly like one that does not exist.
"""

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, select, true

from fleet_server.models import Building, Cabinet, Operator, Placement, Role, School, User


@dataclass(frozen=True)
class Actor:
    """The caller of a service: a signed-in user, or the system itself (role None)."""

    user_id: int | None
    label: str
    role: Role | None
    school_id: int | None = None
    operator_id: int | None = None

    @classmethod
    def for_user(cls, user: User) -> "Actor":
        return cls(
            user_id=user.id,
            label=user.username,
            role=user.role,
            school_id=user.school_id,
            operator_id=user.operator_id,
        )

    @classmethod
    def system(cls, label: str) -> "Actor":
        """Return the actor for command-line tools and background jobs, which see everything."""
        return cls(user_id=None, label=f"system:{label}", role=None)

    @property
    def sees_everything(self) -> bool:
        return self.role is None or self.role is Role.PROVINCE_ADMIN

    def visible_schools(self) -> ColumnElement[bool]:
        """Return the condition on School that selects the schools this actor may read."""
        if self.sees_everything:
            return true()
        if self.role is Role.SCHOOL_ADMIN and self.school_id is not None:
            return School.id == self.school_id
        if self.role is Role.OPERATOR and self.operator_id is not None:
            return School.id.in_(
                select(Building.school_id)
                .join(Placement, Placement.building_id == Building.id)
                .join(Cabinet, Cabinet.placement_id == Placement.id)
                .where(Cabinet.operator_id == self.operator_id)
            )
        return false()

    def visible_operators(self) -> ColumnElement[bool]:
        if self.sees_everything:
            return true()
        if self.role is Role.OPERATOR and self.operator_id is not None:
            return Operator.id == self.operator_id
        if self.role is Role.SCHOOL_ADMIN and self.school_id is not None:
            return Operator.id.in_(
                select(Cabinet.operator_id)
                .join(Placement, Cabinet.placement_id == Placement.id)
                .join(Building, Placement.building_id == Building.id)
                .where(Building.school_id == self.school_id)
            )
        return false()

    def visible_cabinets(self) -> ColumnElement[bool]:
        if self.sees_everything:
            return true()
        if self.role is Role.OPERATOR and self.operator_id is not None:
            return Cabinet.operator_id == self.operator_id
        if self.role is Role.SCHOOL_ADMIN and self.school_id is not None:
            return Cabinet.placement_id.in_(
                select(Placement.id)
                .join(Building, Placement.building_id == Building.id)
                .where(Building.school_id == self.school_id)
            )
        return false()

    def may_manage_school(self, school_id: int) -> bool:
        """Return whether the actor may edit the school's record, buildings and placements."""
        if self.sees_everything:
            return True
        return self.role is Role.SCHOOL_ADMIN and self.school_id == school_id

    def may_register_cabinet_for(self, operator_id: int) -> bool:
        if self.sees_everything:
            return True
        return self.role is Role.OPERATOR and self.operator_id == operator_id
