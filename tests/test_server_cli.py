"""The fleet-server command: migrate, seed, create-user, serve and the ingest stub."""

import io
import os
import socket
import subprocess
import sys
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


# --- User mistakes, run as the real command --------------------------------------------------

FLEET_SERVER = Path(sys.executable).with_name("fleet-server")
# Ten seconds of broker connect timeout, plus start-up.
COMMAND_TIMEOUT_S = 60


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_fleet_server(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed fleet-server command with only the given ZHIGUI_* variables."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ZHIGUI_")}
    environment.update(env or {})
    return subprocess.run(
        [str(FLEET_SERVER), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], command: str, message: str, status: int = 1
) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"fleet-server {command}: error: "), result.stderr
    assert message in last_line


@pytest.fixture
def migrated_file(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    result = run_fleet_server("migrate", env={"ZHIGUI_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    return url


@pytest.mark.parametrize(
    ("arguments", "env", "message"),
    [
        pytest.param(
            ["migrate"],
            {"ZHIGUI_DATABASE_URL": "mysql://user:password@127.0.0.1/zhigui"},
            "database backend 'mysql' is not supported; use sqlite:///PATH or postgresql",
            id="mysql-url",
        ),
        pytest.param(
            ["migrate"],
            {"ZHIGUI_DATABASE_URL": "not a url"},
            "the database URL is invalid; use sqlite:///PATH",
            id="unparsable-url",
        ),
        pytest.param(
            ["migrate"],
            {"ZHIGUI_DATABASE_URL": "sqlite:////nonexistent-directory/zhigui.db"},
            "database error: unable to open database file; check ZHIGUI_DATABASE_URL",
            id="sqlite-directory-missing",
        ),
        pytest.param(
            ["migrate"],
            {"ZHIGUI_HTTP_PORT": "eighty"},
            "invalid settings: ZHIGUI_HTTP_PORT: Input should be a valid integer",
            id="invalid-setting",
        ),
    ],
)
def test_command_error_is_one_line(arguments: list[str], env: dict[str, str], message: str) -> None:
    result = run_fleet_server(*arguments, env=env)

    assert_one_line_error(result, arguments[0], message)


def test_database_refusing_connections(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://zhigui@127.0.0.1:{free_loopback_port()}/zhigui"

    result = run_fleet_server("migrate", env={"ZHIGUI_DATABASE_URL": url})

    assert_one_line_error(result, "migrate", "Connection refused; check ZHIGUI_DATABASE_URL")


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_serve_rejects_invalid_port(port: str) -> None:
    result = run_fleet_server("serve", "--port", port)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("fleet-server serve: error: argument --port: invalid")
    )


def test_serve_port_in_use(migrated_file: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_fleet_server(
            "serve", "--port", str(port), env={"ZHIGUI_DATABASE_URL": migrated_file}
        )

    assert_one_line_error(
        result, "serve", f"cannot listen on 127.0.0.1:{port}: Address already in use; stop"
    )


def test_serve_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    port = str(free_loopback_port())

    result = run_fleet_server("serve", "--port", port, env={"ZHIGUI_DATABASE_URL": url})

    assert_one_line_error(result, "serve", "has no schema, but this version needs revision")
    assert "run `fleet-server migrate` first" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "not found", id="missing"),
        pytest.param(b"ZHIGUI_MODE=development\n\xff\xfe\n", "is not UTF-8 text", id="not-utf8"),
        pytest.param(b"ZHIGUI_MQTT_PORT=0\n", "ZHIGUI_MQTT_PORT: Input should be", id="bad-value"),
    ],
)
def test_settings_file_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    settings_file = tmp_path / "zhigui.env"
    if content is not None:
        settings_file.write_bytes(content)

    result = run_fleet_server("--settings-file", str(settings_file), "migrate")

    assert_one_line_error(result, "migrate", message)


def test_settings_file_is_directory(tmp_path: Path) -> None:
    result = run_fleet_server("--settings-file", str(tmp_path), "migrate")

    assert_one_line_error(result, "migrate", "is not a regular file")


def test_database_from_newer_version(migrated_file: str) -> None:
    engine = create_db_engine(migrated_file)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    env = {"ZHIGUI_DATABASE_URL": migrated_file}

    serve = run_fleet_server("serve", "--port", str(free_loopback_port()), env=env)
    ingest = run_fleet_server("ingest", env=env)
    migrate = run_fleet_server("migrate", env=env)

    newer = "revision 0099_future, which this version of fleet-server does not know"
    assert_one_line_error(serve, "serve", newer)
    assert_one_line_error(ingest, "ingest", newer)
    assert_one_line_error(migrate, "migrate", "Can't locate revision identified by '0099_future'")


def test_ingest_without_broker(migrated_file: str) -> None:
    env = {
        "ZHIGUI_DATABASE_URL": migrated_file,
        "ZHIGUI_MQTT_HOST": "127.0.0.1",
        "ZHIGUI_MQTT_PORT": str(free_loopback_port()),
    }

    result = run_fleet_server("ingest", env=env)

    assert_one_line_error(result, "ingest", "check ZHIGUI_MQTT_HOST, ZHIGUI_MQTT_PORT")


def test_broker_config_output_not_writable(migrated_file: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    env = {"ZHIGUI_DATABASE_URL": migrated_file, "ZHIGUI_MQTT_PASSWORD": "broker-password"}

    result = run_fleet_server("broker-config", "--out", str(blocker / "broker"), env=env)

    assert_one_line_error(result, "broker-config", f"cannot access {blocker / 'broker'}")
