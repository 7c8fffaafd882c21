"""Agent settings: TOML file plus environment, and rejection of missing or placeholder secrets."""

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from fleet_server.schemas.operators import CabinetCreate
from kiosk_agent.agent import simulation_time
from kiosk_agent.config import ENV_PREFIX, AgentSettings, ConfigError, load_settings
from kiosk_agent.mqtt_link import LinkOptions

HMAC_KEY = "5f1c0e9a7b3d24c8a6e1f0b9d2c3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5"
PASSWORD = "kV8#pQ2-zR7wX4mN"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, **values: object) -> Path:
    settings: dict[str, object] = {
        "kiosk_id": "AH-10359-0301",
        "hmac_key": HMAC_KEY,
        "broker_password": PASSWORD,
        "serial_port": "/dev/ttyS3",
    }
    settings.update(values)
    lines = []
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    return str(error.value)


def test_file_settings_loaded(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, broker_port=8883, heartbeat_interval_s=15))

    assert settings.kiosk_id == "AH-10359-0301"
    assert settings.hmac_key_bytes == bytes.fromhex(HMAC_KEY)
    assert settings.broker_port == 8883
    assert settings.heartbeat_interval_s == 15.0
    assert settings.mqtt_username == "AH-10359-0301"
    assert settings.outbox_path == settings.data_dir / "outbox.db"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, broker_host="file.example")
    monkeypatch.setenv(f"{ENV_PREFIX}BROKER_HOST", "env.example")

    assert load_settings(path).broker_host == "env.example"


def test_secret_from_environment_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, hmac_key=None)
    monkeypatch.setenv(f"{ENV_PREFIX}HMAC_KEY", HMAC_KEY.upper())

    assert load_settings(path).hmac_key_bytes == bytes.fromhex(HMAC_KEY)


def test_secrets_hidden_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))

    assert HMAC_KEY not in repr(settings)
    assert PASSWORD not in repr(settings)


def test_missing_hmac_key_names_variable(tmp_path: Path) -> None:
    message = load_error(write_config(tmp_path, hmac_key=None))

    assert "hmac_key (ZHIGUI_AGENT_HMAC_KEY): missing" in message


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        pytest.param("0" * 64, "placeholder", id="all-zero"),
        pytest.param("0123456789abcdef" * 4, "placeholder", id="repeated-pattern"),
        pytest.param(HMAC_KEY[:32], "at least 32 are required", id="too-short"),
        pytest.param("changeme", "hex digits", id="not-hex"),
        pytest.param(HMAC_KEY + "0", "hex digits", id="odd-length"),
    ],
)
def test_weak_hmac_key_rejected(tmp_path: Path, key: str, reason: str) -> None:
    message = load_error(write_config(tmp_path, hmac_key=key))

    assert reason in message
    assert key not in message


@pytest.mark.parametrize("password", ["changeme", "CHANGEME", "password", "xxxxxxxxxxxxxxxx"])
def test_placeholder_password_rejected(tmp_path: Path, password: str) -> None:
    message = load_error(write_config(tmp_path, broker_password=password))

    assert "broker_password" in message
    assert "placeholder" in message


def test_short_password_rejected_without_echo(tmp_path: Path) -> None:
    message = load_error(write_config(tmp_path, broker_password="Sh0rt-pw"))

    assert "shorter than 12 characters" in message
    assert "Sh0rt-pw" not in message


def test_missing_password_rejected_outside_development(tmp_path: Path) -> None:
    message = load_error(write_config(tmp_path, broker_password=None))

    assert "ZHIGUI_AGENT_BROKER_PASSWORD" in message


def test_development_allows_no_password(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, broker_password=None, development=True))

    assert settings.broker_password is None


def test_unknown_setting_rejected(tmp_path: Path) -> None:
    message = load_error(write_config(tmp_path, heartbeat_interval=5))

    assert "heartbeat_interval" in message
    assert "unknown setting" in message


def test_tls_files_need_tls_enabled(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a real certificate")

    message = load_error(write_config(tmp_path, broker_tls_ca_file=ca_file))

    assert "broker_tls = true" in message


def test_client_certificate_needs_key(tmp_path: Path) -> None:
    cert_file = tmp_path / "kiosk.pem"
    cert_file.write_text("not a real certificate")

    message = load_error(write_config(tmp_path, broker_tls=True, broker_tls_cert_file=cert_file))

    assert "must be set together" in message


def test_missing_config_file_rejected(tmp_path: Path) -> None:
    assert "not found" in load_error(tmp_path / "absent.toml")


def test_invalid_toml_rejected(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('kiosk_id = "unterminated\n')

    assert "cannot read configuration file" in load_error(path)


def test_link_options_from_settings(tmp_path: Path) -> None:
    settings: AgentSettings = load_settings(write_config(tmp_path, broker_keepalive_s=20))

    options = LinkOptions.from_settings(settings, agent_version="1.2.3")

    assert options.kiosk_id == "AH-10359-0301"
    assert options.username == "AH-10359-0301"
    assert options.password == PASSWORD
    assert options.keepalive_s == 20
    assert options.tls is None
    assert PASSWORD not in repr(options)


@pytest.mark.parametrize(
    "kiosk_id",
    ["hfut-dorm3-01", "AH-1035-0001", "AH-10357-001", "ah-10357-0001", "AH-10357-0001-x"],
)
def test_kiosk_id_server_rejects_rejected(tmp_path: Path, kiosk_id: str) -> None:
    with pytest.raises(ValidationError, match="kiosk_id"):
        CabinetCreate(kiosk_id=kiosk_id, placement_id=1)

    message = load_error(write_config(tmp_path, kiosk_id=kiosk_id))

    assert "kiosk_id" in message


def test_registered_kiosk_id_accepted(tmp_path: Path) -> None:
    registered = CabinetCreate(kiosk_id="AH-10357-0001", placement_id=1)

    settings = load_settings(write_config(tmp_path, kiosk_id=registered.kiosk_id))

    assert settings.kiosk_id == "AH-10357-0001"


def test_simulation_clock_runs_on_from_the_written_time(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2026-11-18T12:30:00+08:00\n", encoding="utf-8")
    written = clock.stat().st_mtime

    assert simulation_time(clock, written + 90.0) == datetime(2026, 11, 18, 4, 31, 30, tzinfo=UTC)
    clock.write_text("2026-11-18T12:30:00\n", encoding="utf-8")
    with pytest.raises(ValueError, match="UTC offset"):
        simulation_time(clock, written)


def test_clock_file_needs_development_mode(tmp_path: Path) -> None:
    clock = tmp_path / "clock"

    refused = load_error(write_config(tmp_path, clock_file=clock))
    allowed = load_settings(write_config(tmp_path, clock_file=clock, development=True))

    assert "clock_file is for simulations" in refused
    assert allowed.clock_file == clock
