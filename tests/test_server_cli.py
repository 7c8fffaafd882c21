"""The fleet-server command: migrate, seed, create-user, serve and the ingest stub."""

import io
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from fleet_server import cli
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope
from fleet_server.core.migrate import current_revision, head_revision
from fleet_server.models import County, Product, Role, School, User
from fleet_server.services.users import authenticate

pytest_plugins = ["server_fixtures"]

PASSWORD = "a long enough password"


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the command's settings at the test's empty database."""
    for name in ("ZHIGUI_MODE", "ZHIGUI_SECRET_KEY", "ZHIGUI_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", database_url)
    return database_url


@pytest.fixture
def migrated(cli_database: str) -> str:
    assert cli.main(["migrate"]) == 0
    return cli_database


def row_counts(database_url: str) -> dict[str, int]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                model.__tablename__: connection.scalar(
                    sa.select(sa.func.count()).select_from(model)
                )
                or 0
                for model in (County, School, Product, User)
            }
    finally:
        engine.dispose()


def test_migrate_upgrades_to_head(cli_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["migrate"])

    assert status == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out
    engine = create_db_engine(cli_database)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_seed_twice_changes_nothing(migrated: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()

    first = cli.main(["seed"])
    first_output = capsys.readouterr().out
    counts_after_first = row_counts(migrated)
    second = cli.main(["seed"])
    second_output = capsys.readouterr().out

    assert first == second == 0
    assert "counties 31" in first_output
    assert "schools 119" in first_output
    assert "products 42" in first_output
    assert second_output == (
        "rows inserted: counties 0, county_codes 0, schools 0, designations 0, products 0\n"
    )
    assert row_counts(migrated) == counts_after_first


def test_seed_needs_migrated_database(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["seed"])

    assert status == 1
    error = capsys.readouterr().err
    assert "the database has no schema" in error
    assert "run `fleet-server migrate` first" in error


def test_create_user_from_stdin(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["seed"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))

    status = cli.main(
        [
            "create-user",
            "--username",
            "ahu-admin",
            "--role",
            "school_admin",
            "--school",
            "安徽大学",
            "--display-name",
            "安徽大学后勤处",
            "--password-stdin",
        ]
    )

    assert status == 0
    assert "created user 'ahu-admin'" in capsys.readouterr().out
    engine = create_db_engine(migrated)
    try:
        with session_scope(create_session_factory(engine)) as session:
            user = authenticate(session, username="ahu-admin", password=PASSWORD)
            assert user is not None
            assert user.role is Role.SCHOOL_ADMIN
            assert user.display_name == "安徽大学后勤处"
            assert user.school is not None
            assert user.school.name == "安徽大学"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("arguments", "stdin", "message"),
    [
        pytest.param(["--role", "province_admin"], "short\n", "at least 10 characters", id="short"),
        pytest.param(
            ["--role", "school_admin", "--school", "不存在的大学"],
            PASSWORD + "\n",
            "school '不存在的大学' not found",
            id="unknown-school",
        ),
        pytest.param(
            ["--role", "operator"], PASSWORD + "\n", "needs an operator_id", id="no-operator"
        ),
        pytest.param(["--role", "province_admin"], "\n", "no password", id="empty"),
    ],
)
def test_create_user_rejects(
    migrated: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    stdin: str,
    message: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))

    status = cli.main(["create-user", "--username", "x", "--password-stdin", *arguments])

    assert status == 1
    assert message in capsys.readouterr().err
    assert row_counts(migrated)["users"] == 0


def test_create_user_needs_terminal(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))

    status = cli.main(["create-user", "--username", "x", "--role", "province_admin"])

    assert status == 1
    assert "pass --password-stdin" in capsys.readouterr().err


def test_serve_runs_uvicorn(migrated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(app: object, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr("uvicorn.run", fake_run)

    status = cli.main(["serve", "--host", "127.0.0.1", "--port", "8123"])

    assert status == 0
    assert len(calls) == 1
    assert isinstance(calls[0]["app"], FastAPI)
    assert calls[0]["host"] == "127.0.0.1"
    assert calls[0]["port"] == 8123


def test_serve_refuses_unmigrated_database(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: pytest.fail("uvicorn started"))

    status = cli.main(["serve"])

    assert status == 1
    assert "run `fleet-server migrate` first" in capsys.readouterr().err


def test_production_without_secret_fails(
    cli_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZHIGUI_MODE", "production")

    status = cli.main(["migrate"])

    assert status == 1
    assert "ZHIGUI_SECRET_KEY is required" in capsys.readouterr().err


def test_ingest_needs_migrated_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")

    status = cli.main(["ingest"])

    assert status == 1
    assert "fleet-server migrate" in capsys.readouterr().err
