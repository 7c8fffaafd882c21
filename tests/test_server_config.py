"""Server settings and the database engine: modes, secrets, settings file, SQLite pragmas."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.config import (
    DEVELOPMENT_DATABASE_URL,
    DEVELOPMENT_SECRET_KEY,
    ServerSettings,
    SettingsError,
    load_settings,
)
from fleet_server.core.db import create_db_engine, session_scope
from fleet_server.models import Building, LocationType, Operator

pytest_plugins = ["server_fixtures"]

STRONG_SECRET = "k7Qz-3vLp9_XwR2mYt8NcB4hJd6FsGa1"
POSTGRES_URL = "postgresql+psycopg://zhigui:pw@127.0.0.1/zhigui"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ZHIGUI_MODE",
        "ZHIGUI_DATABASE_URL",
        "ZHIGUI_SECRET_KEY",
        "ZHIGUI_SETTINGS_FILE",
        "ZHIGUI_ACCESS_TOKEN_TTL_S",
    ):
        monkeypatch.delenv(name, raising=False)


def test_development_defaults() -> None:
    settings = load_settings()

    assert settings.mode == "development"
    assert settings.resolved_database_url == DEVELOPMENT_DATABASE_URL == "sqlite:///./zhigui.db"
    assert settings.resolved_secret_key == DEVELOPMENT_SECRET_KEY.encode()


def test_production_requires_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIGUI_MODE", "production")
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", POSTGRES_URL)

    with pytest.raises(SettingsError, match="ZHIGUI_SECRET_KEY is required"):
        load_settings()


def test_production_requires_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIGUI_MODE", "production")
    monkeypatch.setenv("ZHIGUI_SECRET_KEY", STRONG_SECRET)

    with pytest.raises(SettingsError, match="ZHIGUI_DATABASE_URL is required"):
        load_settings()


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        pytest.param(DEVELOPMENT_SECRET_KEY, "placeholder word 'changethis'", id="dev-default"),
        pytest.param("changeme-changeme-changeme-changeme", "placeholder", id="changeme"),
        pytest.param("my-super-secret-key-for-production", "placeholder word 'secret'", id="word"),
        pytest.param("k7Qz-3vLp9", "fewer than 32", id="short"),
        pytest.param("a" * 40, "distinct characters", id="repetitive"),
    ],
)
def test_production_rejects_weak_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str, reason: str
) -> None:
    monkeypatch.setenv("ZHIGUI_MODE", "production")
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("ZHIGUI_SECRET_KEY", secret)

    with pytest.raises(SettingsError, match=reason) as error:
        load_settings()

    assert secret not in str(error.value)


def test_production_accepts_strong_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIGUI_MODE", "production")
    monkeypatch.setenv("ZHIGUI_DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("ZHIGUI_SECRET_KEY", STRONG_SECRET)

    settings = load_settings()

    assert settings.resolved_secret_key == STRONG_SECRET.encode()
    assert settings.resolved_database_url == POSTGRES_URL
    assert STRONG_SECRET not in repr(settings)


def test_settings_file_below_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file = tmp_path / "zhigui.env"
    settings_file.write_text(
        "ZHIGUI_DATABASE_URL=sqlite:///from-file.db\nZHIGUI_ACCESS_TOKEN_TTL_S=60\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ZHIGUI_SETTINGS_FILE", str(settings_file))
    monkeypatch.setenv("ZHIGUI_ACCESS_TOKEN_TTL_S", "120")

    settings = load_settings()

    assert settings.resolved_database_url == "sqlite:///from-file.db"
    assert settings.access_token_ttl_s == 120


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "absent.env")


# Every int, float and bool setting, with a text as the environment would give it.
ENVIRONMENT_VALUES = [
    ("ZHIGUI_DATABASE_ECHO", "true", True),
    ("ZHIGUI_SQLITE_BUSY_TIMEOUT_MS", "250", 250),
    ("ZHIGUI_ACCESS_TOKEN_TTL_S", "900", 900),
    ("ZHIGUI_HTTP_PORT", "8080", 8080),
    ("ZHIGUI_MQTT_PORT", "8883", 8883),
    ("ZHIGUI_CABINET_BROKER_PORT", "8884", 8884),
    ("ZHIGUI_CABINET_BROKER_TLS", "1", True),
    ("ZHIGUI_INGEST_MONITORING", "false", False),
    ("ZHIGUI_HEARTBEAT_INTERVAL_S", "12.5", 12.5),
    ("ZHIGUI_OFFLINE_AFTER_HEARTBEATS", "5", 5),
    ("ZHIGUI_MONITOR_SWEEP_INTERVAL_S", "2.5", 2.5),
    ("ZHIGUI_OFFLINE_ALERT_AFTER_S", "30", 30.0),
    ("ZHIGUI_ALERT_RAISE_AFTER_S", "45", 45.0),
    ("ZHIGUI_ALERT_RAISE_AFTER_COUNT", "3", 3),
    ("ZHIGUI_ALERT_CLEAR_AFTER_S", "90", 90.0),
    ("ZHIGUI_LOW_STOCK_FRACTION", "0.4", 0.4),
    ("ZHIGUI_BACKLOG_ALERT_MESSAGES", "250", 250),
    ("ZHIGUI_BACKLOG_ALERT_AGE_S", "600", 600.0),
    ("ZHIGUI_DISK_FREE_ALERT_BYTES", "1048576", 1_048_576),
    ("ZHIGUI_PLANOGRAM_RESEND_INTERVAL_S", "120", 120.0),
    ("ZHIGUI_PURCHASE_MIN_BALANCE_FEN", "200", 200),
    ("ZHIGUI_PURCHASE_HOLD_MAX_FEN", "5000", 5000),
    ("ZHIGUI_PURCHASE_TIMEOUT_S", "300", 300.0),
    ("ZHIGUI_UNLOCK_LIFETIME_S", "20", 20.0),
    ("ZHIGUI_INGEST_SHARED_SUBSCRIPTION", "false", False),
    ("ZHIGUI_INGEST_BATCH_SIZE", "100", 100),
    ("ZHIGUI_INGEST_BATCH_LATENCY_MS", "20", 20),
]


def test_environment_table_covers_every_typed_setting() -> None:
    typed = {
        f"ZHIGUI_{name.upper()}"
        for name, field in ServerSettings.model_fields.items()
        if field.annotation in (int, float, bool, int | None)
    }

    assert {name for name, _text, _value in ENVIRONMENT_VALUES} == typed


@pytest.mark.parametrize(
    ("variable", "text", "expected"), ENVIRONMENT_VALUES, ids=[row[0] for row in ENVIRONMENT_VALUES]
)
def test_typed_setting_from_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str, expected: object
) -> None:
    monkeypatch.setenv(variable, text)

    settings = load_settings()

    value = getattr(settings, variable.removeprefix("ZHIGUI_").lower())
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["12.5", "1e3", "abc", ""])
def test_fen_setting_rejects_non_integer(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("ZHIGUI_PURCHASE_HOLD_MAX_FEN", text)

    with pytest.raises(SettingsError, match="ZHIGUI_PURCHASE_HOLD_MAX_FEN"):
        load_settings()


def test_invalid_value_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIGUI_ACCESS_TOKEN_TTL_S", "0")

    with pytest.raises(SettingsError, match="ZHIGUI_ACCESS_TOKEN_TTL_S: Input should be greater"):
        load_settings()


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg2://u@127.0.0.1/db", "mysql+pymysql://u@127.0.0.1/db"], ids=str
)
def test_engine_rejects_other_drivers(url: str) -> None:
    with pytest.raises(ValueError, match="not supported"):
        create_db_engine(url)


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'p.db'}", sqlite_busy_timeout_ms=1234)
    try:
        with engine.connect() as connection:
            journal_mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
            busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    finally:
        engine.dispose()

    assert journal_mode == "wal"
    assert foreign_keys == 1
    assert busy_timeout == 1234


def test_foreign_keys_enforced(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(Building(school_id=999_999, name="无主楼", location_type=LocationType.OTHER))


def test_timestamps_are_utc_aware(session_factory: sessionmaker[Session]) -> None:
    shanghai = timezone(timedelta(hours=8))
    with session_scope(session_factory) as session:
        operator = Operator(
            name="时区测试公司", created_at=datetime(2024, 3, 4, 9, 0, tzinfo=shanghai)
        )
        session.add(operator)
        session.flush()
        operator_id = operator.id

    with session_factory() as session:
        stored = session.get(Operator, operator_id)
        assert stored is not None
        assert stored.created_at == datetime(2024, 3, 4, 1, 0, tzinfo=UTC)
        assert stored.created_at.utcoffset() == timedelta(0)


def test_naive_timestamp_rejected(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        session.add(Operator(name="无时区公司", created_at=datetime(2024, 3, 4, 9, 0)))

        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            session.flush()


def test_settings_repr_hides_secret() -> None:
    settings = ServerSettings(secret_key=STRONG_SECRET)

    assert STRONG_SECRET not in repr(settings)
    assert STRONG_SECRET not in str(settings.model_dump())
