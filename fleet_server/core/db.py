"""Database engine and session factory for SQLite (development) and PostgreSQL (production)."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

SUPPORTED_URLS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"


class DatabaseUrlError(ValueError):
    """Raised when a database URL cannot be parsed or names an unsupported backend."""


def is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_db_engine(url: str, *, echo: bool = False, sqlite_busy_timeout_ms: int = 5000) -> Engine:
    """Create an engine for ``url``.

    SQLite connections get write-ahead logging (readers do not block the writer), foreign
    key enforcement (off by default in SQLite) and a busy timeout, set on every new
    connection. PostgreSQL URLs must name the psycopg 3 driver (postgresql+psycopg://).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        # The message leaves the URL out, because it may contain a password.
        raise DatabaseUrlError(f"the database URL is invalid; use {SUPPORTED_URLS}") from error
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        raise DatabaseUrlError(
            f"database URL driver {parsed.drivername!r} is not supported; "
            "use postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
        )
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseUrlError(
            f"database backend {backend!r} is not supported; use {SUPPORTED_URLS}"
        )

    engine = create_engine(url, echo=echo, pool_pre_ping=backend == "postgresql")
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms=sqlite_busy_timeout_ms)
    logger.info("database engine created for %s", parsed.render_as_string(hide_password=True))
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # An in-memory database has no write-ahead log and keeps journal_mode "memory".
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False keeps loaded attributes readable after commit, so handlers can
    # build their response from an object they just saved without another query.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session that commits when the block succeeds and rolls back when it raises."""
    with factory() as session, session.begin():
        yield session
