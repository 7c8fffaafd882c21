"""Schools, their buildings, cabinet placements, operating companies and cabinets."""

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, CreatedAt, IntPk, MicroDegrees, Name, UTCDateTime
from fleet_server.models.counties import County
from fleet_server.models.enums import (
    CabinetServiceStatus,
    LocationType,
    SchoolType,
    enum_type,
)


def _coordinate_checks() -> tuple[CheckConstraint, ...]:
    """Return the range and pairing checks for a table's latitude/longitude columns.

    A constraint object belongs to one table, so every table calls this for its own copies.
    """
    return (
        CheckConstraint(
            "latitude_microdeg BETWEEN -90000000 AND 90000000", name="latitude_microdeg_range"
        ),
        CheckConstraint(
            "longitude_microdeg BETWEEN -180000000 AND 180000000",
            name="longitude_microdeg_range",
        ),
        CheckConstraint(
            "(latitude_microdeg IS NULL) = (longitude_microdeg IS NULL)",
            name="coordinates_paired",
        ),
    )


# 对接贫困县: the poverty counties the province assigned to a school for targeted procurement.
school_designated_counties = Table(
    "school_designated_counties",
    Base.metadata,
    Column("school_id", ForeignKey("schools.id", ondelete="CASCADE"), primary_key=True),
    # Lists the schools designated to one county (the primary key leads with school_id).
    Column("county_id", ForeignKey("counties.id"), primary_key=True, index=True),
)


class School(Base):
    __tablename__ = "schools"
    __table_args__ = (
        CheckConstraint("enrollment >= 0", name="enrollment_non_negative"),
        CheckConstraint("staff_count >= 0", name="staff_count_non_negative"),
    )

    id: Mapped[IntPk]
    name: Mapped[Name] = mapped_column(unique=True)
    name_en: Mapped[Name | None]
    school_type: Mapped[SchoolType] = mapped_column(enum_type(SchoolType, "school_type"))
    city: Mapped[str] = mapped_column(String(50))
    # 在校生规模: full-time students, or None when no figure is known.
    enrollment: Mapped[int | None] = mapped_column(Integer())
    # When the enrollment figure was true, as the source gives it (e.g. "2022", "c.2019").
    enrollment_as_of: Mapped[str | None] = mapped_column(String(20))
    staff_count: Mapped[int | None] = mapped_column(Integer())
    created_at: Mapped[CreatedAt]

    designated_counties: Mapped[list[County]] = relationship(
        secondary=school_designated_counties, order_by=County.id
    )
    buildings: Mapped[list["Building"]] = relationship(back_populates="school")


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (
        # Also serves "list the buildings of a school" (leading column school_id).
        UniqueConstraint("school_id", "name"),
        CheckConstraint("capacity >= 0", name="capacity_non_negative"),
        *_coordinate_checks(),
    )

    id: Mapped[IntPk]
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    name: Mapped[Name]
    location_type: Mapped[LocationType] = mapped_column(enum_type(LocationType, "location_type"))
    # Beds for a dormitory, seats for a canteen, library or venue, residents for staff housing.
    capacity: Mapped[int | None] = mapped_column(Integer())
    latitude_microdeg: Mapped[MicroDegrees]
    longitude_microdeg: Mapped[MicroDegrees]
    created_at: Mapped[CreatedAt]

    school: Mapped[School] = relationship(back_populates="buildings")
    placements: Mapped[list["Placement"]] = relationship(back_populates="building")


class Placement(Base):
    """点位: one spot in a building where a cabinet is installed or planned."""

    __tablename__ = "placements"
    __table_args__ = _coordinate_checks()

    id: Mapped[IntPk]
    # Lists the placements of a building, and joins placements to their school.
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    # Floor number as signed in the building: 1 is the ground floor, -1 the first basement.
    floor: Mapped[int | None] = mapped_column(Integer())
    description: Mapped[str] = mapped_column(String(500))
    latitude_microdeg: Mapped[MicroDegrees]
    longitude_microdeg: Mapped[MicroDegrees]
    created_at: Mapped[CreatedAt]

    building: Mapped[Building] = relationship(back_populates="placements")


class Operator(Base):
    """运营企业: a company that installs, stocks and runs cabinets."""

    __tablename__ = "operators"

    id: Mapped[IntPk]
    name: Mapped[Name] = mapped_column(unique=True)
    name_en: Mapped[Name | None]
    # 统一社会信用代码: the 18-character company registration code.
    credit_code: Mapped[str | None] = mapped_column(String(18), unique=True)
    created_at: Mapped[CreatedAt]


class Cabinet(Base):
    __tablename__ = "cabinets"

    id: Mapped[IntPk]
    # Printed on the cabinet and used in MQTT topics, e.g. AH-10357-0001.
    kiosk_id: Mapped[str] = mapped_column(String(32), unique=True)
    # Lists the cabinets of a placement, and of a school through placements and buildings.
    placement_id: Mapped[int] = mapped_column(ForeignKey("placements.id"), index=True)
    # Lists an operator's fleet: the scope of every operator request.
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    service_status: Mapped[CabinetServiceStatus] = mapped_column(
        enum_type(CabinetServiceStatus, "cabinet_service_status"),
        default=CabinetServiceStatus.PROVISIONED,
    )
    # Connection state as last reported over MQTT, written by ingest.
    online: Mapped[bool] = mapped_column(default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[CreatedAt]
    # Credentials, all None until the cabinet is provisioned. The broker username is the
    # kiosk id; the password is shown once and only its Mosquitto hash is kept.
    broker_username: Mapped[str | None] = mapped_column(String(64), unique=True)
    broker_password_hash: Mapped[str | None] = mapped_column(String(255))
    # The cabinet's own 32-byte key as 64 lower-case hex digits. It signs commands and the
    # rotating purchase code, so the server needs the key itself, not a hash.
    # NOTE: stored unencrypted. A production deployment should encrypt this column at rest
    # (for example with a key from a KMS), so that a database dump does not leak every key.
    hmac_key: Mapped[str | None] = mapped_column(String(64))
    credentials_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    placement: Mapped[Placement] = relationship()
    operator: Mapped[Operator] = relationship()
