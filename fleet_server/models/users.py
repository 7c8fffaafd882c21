"""Accounts that sign in to the server, with the role and the school or operator they act for."""

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, CreatedAt, IntPk, Name, UTCDateTime
from fleet_server.models.enums import Role, enum_type
from fleet_server.models.registry import Operator, School


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # A school administrator acts for exactly one school and an operator account for one
        # company. A province administrator is bound to neither.
        CheckConstraint(
            "role <> 'school_admin' OR school_id IS NOT NULL", name="school_admin_has_school"
        ),
        CheckConstraint(
            "(role = 'operator') = (operator_id IS NOT NULL)", name="operator_has_operator"
        ),
        CheckConstraint(
            "role <> 'province_admin' OR school_id IS NULL", name="province_admin_unscoped"
        ),
    )

    id: Mapped[IntPk]
    # Sign-in name. The unique constraint's index serves the sign-in lookup.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[Name]
    # argon2id hash in PHC string format.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    # Lists the accounts of a school.
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    # Lists the accounts of an operator.
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean(), default=True)
    created_at: Mapped[CreatedAt]
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    school: Mapped[School | None] = relationship()
    operator: Mapped[Operator | None] = relationship()
