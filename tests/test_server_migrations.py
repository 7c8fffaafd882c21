"""The Alembic revisions build exactly the schema that the models describe."""

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from fleet_server.core.db import create_db_engine
from fleet_server.core.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from fleet_server.models import Base

pytest_plugins = ["server_fixtures"]


def schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_head_matches_models(database_url: str) -> None:
    upgrade_to_head(database_url)

    engine = create_db_engine(database_url)
    try:
        assert schema_differences(engine) == []
        assert current_revision(engine) == head_revision()
        tables = set(sa.inspect(engine).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_head_twice_is_noop(database_url: str) -> None:
    upgrade_to_head(database_url)
    upgrade_to_head(database_url)

    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_base_drops_tables(database_url: str) -> None:
    upgrade_to_head(database_url)

    command.downgrade(alembic_config(database_url), "base")

    engine = create_db_engine(database_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_empty_database_detects_every_table(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        differences = schema_differences(engine)
    finally:
        engine.dispose()

    added = {
        diff[1].name for diff in differences if isinstance(diff, tuple) and diff[0] == "add_table"
    }
    assert added == set(Base.metadata.tables)
