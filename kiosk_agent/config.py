"""Settings of the kiosk agent, read from a TOML file and from ``ZHIGUI_AGENT_*`` variables.

``load_settings(path)`` reads the file given by ``kiosk-agent --config PATH``. Each key
is a field name of ``AgentSettings``, and an environment variable named
``ZHIGUI_AGENT_`` plus the upper-case field name overrides it::

    # /etc/zhigui/agent.toml
    kiosk_id = "AH-10359-0301"
    hmac_key = "..."            # or ZHIGUI_AGENT_HMAC_KEY
    broker_host = "mqtt.example.edu.cn"
    broker_port = 8883
    broker_tls = true
    broker_password = "..."     # or ZHIGUI_AGENT_BROKER_PASSWORD
    serial_port = "/dev/ttyS3"

Secrets have no defaults. Placeholders such as ``changeme`` or an all-zero key are
rejected, and error messages never include a secret's value.
"""

import contextvars
import importlib.metadata
import os
from pathlib import Path
from typing import Final, Literal, Self

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kiosk_agent.contract import RegisteredKioskId

ENV_PREFIX: Final = "ZHIGUI_AGENT_"
DISTRIBUTION_NAME: Final = "zhigui"
# Keys at least as long as the SHA-256 output.
MIN_HMAC_KEY_BYTES: Final = 32
# A random 32-byte key has about 30 distinct byte values. Fewer than this means a pattern
# such as 00 00 .. or 01 23 45 67 repeated, not a generated key.
MIN_DISTINCT_KEY_BYTES: Final = 16
MIN_BROKER_PASSWORD_CHARS: Final = 12
PLACEHOLDER_SECRETS: Final = frozenset(
    {
        "admin",
        "change-me",
        "change_me",
        "changeit",
        "changeme",
        "changethis",
        "default",
        "example",
        "password",
        "placeholder",
        "secret",
        "test",
        "todo",
        "xxx",
    }
)
KEY_HINT: Final = "generate one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"

# Path of the TOML file that load_settings() passes to the settings sources.
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "zhigui_agent_config_file", default=None
)


class ConfigError(Exception):
    """The agent's settings are missing or invalid; the message names each field and its fix."""


def installed_agent_version() -> str:
    """Return the installed version of the zhigui distribution, or "0+unknown"."""
    try:
        return importlib.metadata.version(DISTRIBUTION_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _looks_like_placeholder(value: str) -> bool:
    normalized = value.strip().lower()
    return normalized in PLACEHOLDER_SECRETS or len(set(normalized)) <= 1


class AgentSettings(BaseSettings):
    """Settings of one cabinet's agent. Durations are in seconds, sizes in bytes."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    development: bool = Field(
        default=False,
        description="allow a broker without password, for the simulator and local tests",
    )
    kiosk_id: RegisteredKioskId = Field(
        description="the cabinet's id, also its MQTT client id and default broker username"
    )
    hmac_key: SecretStr = Field(
        description=(
            "the cabinet's own key for command signatures and QR codes, "
            f"at least {MIN_HMAC_KEY_BYTES} bytes as hex"
        )
    )

    broker_host: str = Field(default="127.0.0.1", min_length=1)
    broker_port: int = Field(default=1883, ge=1, le=65535)
    broker_username: str | None = Field(
        default=None, min_length=1, description="broker username (default: the kiosk id)"
    )
    broker_password: SecretStr | None = Field(
        default=None, description="the cabinet's broker password, required unless development"
    )
    broker_tls: bool = False
    broker_tls_ca_file: FilePath | None = Field(
        default=None, description="CA bundle for the broker's certificate (default: system CAs)"
    )
    broker_tls_cert_file: FilePath | None = None
    broker_tls_key_file: FilePath | None = None
    broker_keepalive_s: int = Field(default=30, ge=5, le=600)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=120.0, gt=0)

    serial_port: str = Field(min_length=1, description="tty of the cabinet board, e.g. /dev/ttyS3")
    serial_baud_rate: Literal[9600, 19200, 38400, 57600, 115200] = 115200

    data_dir: Path = Field(
        default=Path("/var/lib/zhigui-agent"),
        description="directory of the outbox and nonce databases",
    )
    min_free_disk_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="free space below which the agent starts no new session",
    )
    outbox_retry_base_s: float = Field(default=2.0, gt=0)
    outbox_retry_cap_s: float = Field(default=300.0, gt=0)

    server_url: str = Field(
        default="http://127.0.0.1:8000",
        min_length=1,
        description="fleet server address that the QR code on the screen points phones to",
    )
    screen_host: str = Field(default="127.0.0.1", description="address the screen server binds")
    screen_port: int = Field(default=8800, ge=1, le=65535)

    heartbeat_interval_s: float = Field(default=30.0, gt=0, le=3600)
    open_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="time the student has to open an unlocked door"
    )
    left_open_alarm_s: float = Field(
        default=120.0, gt=0, le=3600, description="door open time that raises door_left_open"
    )
    settle_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=120,
        description="maximum wait after the door closes for every shelf to report a stable weight",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    clock_file: Path | None = Field(
        default=None,
        description="simulation only: a file holding an ISO 8601 time; sales are stamped with "
        "that time plus the seconds since the file was written. A real cabinet leaves it unset",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: keyword arguments, then the environment, then the file.
        config_file = _config_file.get()
        if config_file is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file))

    @field_validator("hmac_key")
    @classmethod
    def _check_hmac_key(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"must be hex digits (0-9, a-f), two per byte; {KEY_HINT}") from None
        if len(key) < MIN_HMAC_KEY_BYTES:
            raise ValueError(
                f"is {len(key)} bytes, at least {MIN_HMAC_KEY_BYTES} are required; {KEY_HINT}"
            )
        if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
            raise ValueError(f"looks like a placeholder, not a random key; {KEY_HINT}")
        return SecretStr(text.lower())

    @field_validator("broker_password")
    @classmethod
    def _check_broker_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and _looks_like_placeholder(value.get_secret_value()):
            raise ValueError("is a placeholder; set the cabinet's own broker password")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        if not self.development:
            if self.broker_password is None:
                raise ValueError(
                    f"broker_password is missing: set {ENV_PREFIX}BROKER_PASSWORD to the "
                    "cabinet's broker password (only development = true allows none)"
                )
            if len(self.broker_password.get_secret_value()) < MIN_BROKER_PASSWORD_CHARS:
                raise ValueError(
                    f"broker_password is shorter than {MIN_BROKER_PASSWORD_CHARS} characters"
                )
        if (self.broker_tls_cert_file is None) != (self.broker_tls_key_file is None):
            raise ValueError("broker_tls_cert_file and broker_tls_key_file must be set together")
        tls_files = (self.broker_tls_ca_file, self.broker_tls_cert_file, self.broker_tls_key_file)
        if not self.broker_tls and any(path is not None for path in tls_files):
            raise ValueError("TLS files are set but broker_tls is false; set broker_tls = true")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be less than reconnect_min_s")
        if self.outbox_retry_cap_s < self.outbox_retry_base_s:
            raise ValueError("outbox_retry_cap_s must not be less than outbox_retry_base_s")
        if self.clock_file is not None and not self.development:
            raise ValueError("clock_file is for simulations; it needs development = true")
        return self

    @property
    def hmac_key_bytes(self) -> bytes:
        return bytes.fromhex(self.hmac_key.get_secret_value())

    @property
    def mqtt_username(self) -> str:
        return self.broker_username if self.broker_username is not None else self.kiosk_id

    @property
    def outbox_path(self) -> Path:
        """SQLite database of the outbox and the purchase session's state."""
        return self.data_dir / "outbox.db"

    @property
    def nonce_store_path(self) -> Path:
        return self.data_dir / "nonces.db"


def _describe(error: ValidationError) -> str:
    """List each invalid field with its environment variable, without input values."""
    lines = []
    for detail in error.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in detail["loc"])
        if detail["type"] == "missing":
            message = "missing; set it in the configuration file or the environment"
        elif detail["type"] == "extra_forbidden":
            message = "unknown setting; check its spelling"
        else:
            message = detail["msg"].removeprefix("Value error, ")
        if field:
            lines.append(f"  {field} ({ENV_PREFIX}{field.upper()}): {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def load_settings(config_file: str | os.PathLike[str] | None = None) -> AgentSettings:
    """Read the settings from ``config_file`` (TOML) and the environment.

    Environment variables override the file. Raises ConfigError, whose message lists
    every missing or invalid field, if the file cannot be read or a value is invalid.
    """
    path = Path(config_file) if config_file is not None else None
    if path is not None and not path.is_file():
        raise ConfigError(f"configuration file {path} not found")
    token = _config_file.set(path)
    try:
        # mypy cannot see that pydantic-settings fills the required fields from the sources.
        return AgentSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        source = f"{path} and the environment" if path is not None else "the environment"
        raise ConfigError(f"invalid agent settings in {source}:\n{_describe(exc)}") from None
    except (OSError, ValueError) as exc:
        # tomllib.TOMLDecodeError is a ValueError. Its message gives the line and column and
        # quotes at most one character, so it cannot reveal a secret.
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    finally:
        _config_file.reset(token)
