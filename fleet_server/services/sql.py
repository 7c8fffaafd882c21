"""Dialect-specific statements that payments and ingest need on SQLite and PostgreSQL alike."""

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Table, bindparam, column, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.dml import Insert

from fleet_server.models.base import Base, UTCDateTime


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_ignoring_conflicts(
    session: Session, model: type[Base], conflict_columns: Sequence[str]
) -> Insert:
    """Return ``INSERT INTO model ... ON CONFLICT (conflict_columns) DO NOTHING``.

    Both backends skip a row that violates the unique constraint on ``conflict_columns``,
    including a row that conflicts with an earlier row of the same statement.
    """
    table = model.__table__
    assert isinstance(table, Table)
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))


def matches_any(
    session: Session,
    column: QueryableAttribute[Any] | ColumnElement[Any],
    values: Iterable[Any],
) -> ColumnElement[bool]:
    """Return ``column IN values`` for a batch of hundreds of values.

    On PostgreSQL it is ``column IN (SELECT unnest(:array))``: one parameter whose
    statement text stays the same for any number of values, so psycopg prepares it once.
    An ``IN`` list has one parameter per value and new text for each count, which costs
    more to build and parse than the lookup itself. ``column = ANY(:array)`` would read the
    same, but once the server caches a generic plan for a prepared statement, it compares
    each row with every element of the array: 25 ms for a thousand cabinets, where the
    join with ``unnest`` takes one.
    """
    values = list(values)
    element = column.expression if isinstance(column, QueryableAttribute) else column
    if dialect_name(session) == "postgresql":
        array = bindparam(None, values, type_=postgresql.ARRAY(element.type))
        return element.in_(select(func.unnest(array)))
    return element.in_(values)


def take_sqlite_write_lock(session: Session, model: type[Base], primary_key: Any) -> None:
    """On SQLite, write now, so the transaction takes the database's write lock at once.

    SQLite has no row locks, and SELECT ... FOR UPDATE is ignored. A write takes the one
    write lock, which the transaction keeps until it ends, so another transaction that
    calls this waits (up to the busy timeout) and then reads what the first one committed.
    On PostgreSQL this does nothing, because callers lock rows with FOR UPDATE there.
    """
    if dialect_name(session) != "sqlite":
        return
    table = model.__table__
    assert isinstance(table, Table)
    primary_column = next(iter(table.primary_key.columns))
    session.execute(
        update(table)
        .where(primary_column == primary_key)
        .values({primary_column.name: primary_column})
    )


def bulk_insert(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    *,
    conflict_columns: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert many rows in one statement and return the ``returning`` columns of new rows.

    With ``conflict_columns``, rows that violate that unique constraint are skipped and
    return nothing. On PostgreSQL the rows travel as one JSON parameter that
    ``json_to_recordset`` turns back into typed rows: encoding them with orjson costs
    about a microsecond a row, where psycopg's adaptation of one array per column, or
    of a VALUES list of thousands of parameters, cost several times that. SQLite gets the
    multi-row VALUES form.
    """
    if not rows:
        return []
    table = model.__table__
    assert isinstance(table, Table)
    if dialect_name(session) != "postgresql":
        statement: Any = sqlite.insert(table)
        if conflict_columns is not None:
            statement = statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
        if returning:
            statement = statement.returning(*(table.c[name] for name in returning))
            return [tuple(row) for row in session.execute(statement, list(rows))]
        session.execute(statement, list(rows))
        return []

    names = list(rows[0])
    dialect = session.get_bind().dialect
    record_type = ", ".join(
        f"{_quoted(name)} {table.c[name].type.compile(dialect=dialect)}" for name in names
    )
    source = text(f"SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS r({record_type})")
    _reject_naive_datetimes(table, rows)
    source = source.bindparams(rows=orjson.dumps(rows).decode())
    statement = postgresql.insert(table).from_select(
        names, source.columns(*(column(name) for name in names))
    )
    if conflict_columns is not None:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
    if returning:
        result = session.execute(statement.returning(*(table.c[n] for n in returning)))
        return [tuple(row) for row in result]
    session.execute(statement)
    return []


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reject_naive_datetimes(table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Raise ValueError for a naive datetime, as UTCDateTime does.

    orjson writes a naive datetime without an offset, and PostgreSQL would read it in the
    session's time zone.
    """
    names = [name for name in rows[0] if isinstance(table.c[name].type, UTCDateTime)]
    for row in rows:
        for name in names:
            value = row[name]
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{table.name}.{name}: naive datetime {value!r} has no time zone")
