"""Declarative base, constraint naming convention and column types shared by all tables."""

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so migrations can drop and alter constraints by name on
# both SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamp with time zone``. SQLite has no time zone type, so the
    value is stored as naive UTC and read back with UTC attached. Naive datetimes are
    rejected on write, because their zone is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} rejected; pass a timezone-aware value")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared INTEGER PRIMARY KEY, so large ids use
# BIGINT on PostgreSQL and INTEGER on SQLite (which is 64-bit there anyway).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

IntPk = Annotated[int, mapped_column(primary_key=True)]
CreatedAt = Annotated[datetime, mapped_column(UTCDateTime(), default=utc_now)]
Name = Annotated[str, mapped_column(String(200))]
# Integer micro-degrees (WGS-84): exact, so equal coordinates compare equal on every backend.
MicroDegrees = Annotated[int | None, mapped_column(Integer())]
# GB/T 2260 administrative division code: six digits.
DivisionCode = Annotated[str, mapped_column(String(6))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
