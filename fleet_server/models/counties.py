"""Poverty counties (贫困县) and every division code each has had."""

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, DivisionCode, IntPk, Name
from fleet_server.models.enums import CountyLevel, enum_type


class County(Base):
    """One poverty county under its current name. Its codes, old and current, are in CountyCode.

    Two counties changed code while on the list: 寿县 moved from 六安市 (341521) to 淮南市
    (340422) in 2016, and 潜山县 became 潜山市 in 2018 (340824 to 340882). Procurement
    entries and reports may carry either code, and both must resolve to one county.
    """

    __tablename__ = "counties"

    id: Mapped[IntPk]
    name: Mapped[Name] = mapped_column(unique=True)
    name_en: Mapped[Name]
    # Prefecture-level city the county belongs to now.
    city: Mapped[str] = mapped_column(String(50))
    level: Mapped[CountyLevel] = mapped_column(enum_type(CountyLevel, "county_level"))
    # True when the level was deduced from the published totals (20 national, 11 provincial)
    # rather than read from a notice that names this county's level.
    level_derived: Mapped[bool] = mapped_column(Boolean(), default=False)

    codes: Mapped[list["CountyCode"]] = relationship(
        back_populates="county", order_by="CountyCode.is_current.desc(), CountyCode.code"
    )

    @property
    def current_code(self) -> str:
        for code in self.codes:
            if code.is_current:
                return code.code
        raise LookupError(f"county {self.id} ({self.name}) has no current division code")


class CountyCode(Base):
    """A division code (current or former) that identifies a county."""

    __tablename__ = "county_codes"
    __table_args__ = (
        # Finds a county's current code. Unique, so each county has at most one.
        Index(
            "uq_county_codes_current_per_county",
            "county_id",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )

    code: Mapped[DivisionCode] = mapped_column(primary_key=True)
    # Lists the codes of one county (County.codes).
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"), index=True)
    is_current: Mapped[bool] = mapped_column(Boolean())
    # Name and city under which the county used this code (e.g. 潜山县, 六安市 for 340824).
    name_then: Mapped[Name]
    city_then: Mapped[str] = mapped_column(String(50))
    # Year the code was replaced by the current one, or None for the current code.
    replaced_in_year: Mapped[int | None] = mapped_column(Integer())

    county: Mapped[County] = relationship(back_populates="codes")
