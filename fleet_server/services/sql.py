"""Dialect-specific statements that payments and ingest need on SQLite and PostgreSQL alike."""

import enum
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Enum,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator, TypeEngine

from fleet_server.models.base import Base


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


def _array_element_type(column: ColumnElement[Any]) -> TypeEngine[Any]:
    """Return the PostgreSQL array element type for a column's values."""
    column_type = column.type
    if isinstance(column_type, Enum):
        return String()
    if isinstance(column_type, TypeDecorator):
        return column_type.impl_instance
    return column_type


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
    return nothing. On PostgreSQL the rows travel as one array parameter per column and
    ``unnest`` turns them back into rows, so the statement text stays short: a multi-row
    VALUES list of a few thousand parameters costs psycopg more time to parse than the
    database takes to insert it. SQLite gets the multi-row VALUES form.
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
    arrays: list[ColumnElement[Any]] = []
    for name in names:
        column = table.c[name]
        if isinstance(column.type, JSON):
            # A list value would be taken for a nested array, so JSON travels as text.
            texts = [None if row[name] is None else json.dumps(row[name]) for row in rows]
            parameter = bindparam(f"rows_{name}", texts, type_=postgresql.ARRAY(Text()))
            arrays.append(cast(func.unnest(parameter), postgresql.JSONB()))
            continue
        element_type = _array_element_type(column)
        values = [_plain(row[name]) for row in rows]
        parameter = bindparam(f"rows_{name}", values, type_=postgresql.ARRAY(element_type))
        arrays.append(func.unnest(parameter))
    statement = postgresql.insert(table).from_select(names, select(*arrays))
    if conflict_columns is not None:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
    if returning:
        result = session.execute(statement.returning(*(table.c[n] for n in returning)))
        return [tuple(row) for row in result]
    session.execute(statement)
    return []


def _plain(value: Any) -> Any:
    """Return enum members as their values, which the text array element type expects."""
    return value.value if isinstance(value, enum.Enum) else value
