"""Server settings, read from ZHIGUI_* environment variables and an optional settings file.

Precedence, highest first: keyword arguments, environment variables, the settings file.
The settings file uses dotenv syntax, one ``ZHIGUI_NAME=value`` per line. Its path comes
from ``--settings-file`` on the command line or from the ZHIGUI_SETTINGS_FILE variable.

In development mode the database defaults to SQLite in the working directory and the
secret key to a fixed development value. In production mode both must be given, and a
placeholder or short secret key is rejected at startup.
"""

import os
from datetime import date
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ZHIGUI_"
SETTINGS_FILE_ENV = "ZHIGUI_SETTINGS_FILE"

DEVELOPMENT_DATABASE_URL = "sqlite:///./zhigui.db"
# Used only in development mode. Production mode rejects it like any other placeholder.
DEVELOPMENT_SECRET_KEY = "changethis-development-only-secret-key"
# Minimum length in characters. The key generator that the error message suggests,
# secrets.token_urlsafe(48), gives 64 characters.
MIN_SECRET_KEY_LENGTH = 32
PLACEHOLDER_SECRET_MARKERS = ("changethis", "change-me", "changeme", "secret", "example")


class SettingsError(ValueError):
    """Raised when the settings are missing or unsafe for the selected mode."""


class ServerSettings(BaseSettings):
    """Settings of one fleet-server deployment (API server and, later, ingest workers)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    mode: Literal["development", "production"] = "development"
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL, e.g. postgresql+psycopg://user:password@host/zhigui; "
            f"defaults to {DEVELOPMENT_DATABASE_URL} in development mode"
        ),
    )
    database_echo: bool = Field(default=False, description="log every SQL statement")
    sqlite_busy_timeout_ms: int = Field(
        default=5000,
        ge=0,
        description="time in ms that SQLite waits for a lock held by another connection",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            f"key that signs access tokens, at least {MIN_SECRET_KEY_LENGTH} characters; "
            "required in production mode"
        ),
    )
    access_token_ttl_s: int = Field(
        default=8 * 3600, gt=0, description="lifetime of an access token in seconds"
    )
    http_host: str = Field(default="127.0.0.1", description="address that `serve` binds")
    http_port: int = Field(default=8000, ge=1, le=65535, description="TCP port of `serve`")

    # --- MQTT broker, cabinet provisioning ---
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        min_length=1,
        description="address of this server that phones open from a cabinet's QR code",
    )
    mqtt_host: str = Field(default="127.0.0.1", min_length=1, description="broker host")
    mqtt_port: int = Field(default=1883, ge=1, le=65535, description="broker TCP port")
    mqtt_username: str = Field(
        default="fleet-server",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="the server's own broker account, which may read and write every topic",
    )
    mqtt_password: SecretStr | None = Field(
        default=None,
        description="password of the server's broker account; `broker-config` requires it",
    )
    cabinet_broker_host: str | None = Field(
        default=None,
        description="broker host written into cabinet configs (default: mqtt_host)",
    )
    cabinet_broker_port: int | None = Field(
        default=None, ge=1, le=65535, description="broker port for cabinets (default: mqtt_port)"
    )
    cabinet_broker_tls: bool = Field(
        default=False, description="whether cabinets connect to the broker with TLS"
    )
    cabinet_serial_port: str = Field(
        default="/dev/ttyS3",
        min_length=1,
        description="tty of the cabinet board written into new cabinet configs",
    )

    # --- Fleet monitoring and alerts ---
    ingest_monitoring: bool = Field(
        default=True,
        description=(
            "run the status and telemetry subscriber in `fleet-server ingest`; "
            "turn it off on all but one worker of a fleet"
        ),
    )
    heartbeat_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="telemetry interval of the agents (their heartbeat_interval_s), in seconds",
    )
    offline_after_heartbeats: int = Field(
        default=3,
        ge=1,
        description="missed heartbeats after which a cabinet counts as offline",
    )
    monitor_sweep_interval_s: float = Field(
        default=10.0, gt=0, description="seconds between two offline and alert sweeps"
    )
    offline_alert_after_s: float = Field(
        default=120.0, ge=0, description="seconds a cabinet must be offline before an alert"
    )
    alert_raise_after_s: float = Field(
        default=60.0,
        ge=0,
        description="seconds a reported condition (link down, backlog, low stock, ...) must "
        "persist before it raises an alert",
    )
    alert_raise_after_count: int = Field(
        default=2,
        ge=1,
        description="consecutive reports of a condition needed before it raises an alert",
    )
    alert_clear_after_s: float = Field(
        default=120.0,
        ge=0,
        description="seconds a condition must stay clear before its alert resolves itself",
    )
    low_stock_fraction: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="stock below this fraction of a product's share of the shelf is low",
    )
    backlog_alert_messages: int = Field(
        default=100, ge=1, description="unacknowledged outbox messages that raise an alert"
    )
    backlog_alert_age_s: float = Field(
        default=900.0, gt=0, description="age in seconds of the oldest outbox message that alerts"
    )
    disk_free_alert_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0, description="free disk space below which a cabinet alerts"
    )
    planogram_resend_interval_s: float = Field(
        default=600.0,
        gt=0,
        description="minimum seconds between two resends of a planogram that a cabinet lacks",
    )

    # --- Purchases, payments and ingest ---
    purchase_min_balance_fen: int = Field(
        default=100,
        ge=1,
        description="smallest wallet balance in fen that may start a purchase",
    )
    purchase_hold_max_fen: int = Field(
        default=10_000,
        ge=1,
        le=2**31 - 1,
        description="largest payment hold in fen for one purchase session; the hold is the "
        "smaller of this and the available balance",
    )
    purchase_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="seconds after which a purchase session without a sale is marked expired "
        "(its hold stays until the sale arrives or an operator releases it)",
    )
    unlock_lifetime_s: float = Field(
        default=15.0,
        gt=0,
        le=60,
        description="seconds an unlock command stays valid after it is issued",
    )
    ingest_group: str = Field(
        default="fleet-ingest",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="MQTT shared-subscription group of the ingest workers",
    )
    ingest_shared_subscription: bool = Field(
        default=True,
        description="subscribe ingest through the shared-subscription group; false subscribes "
        "directly, for brokers without shared subscriptions (such as amqtt 0.12), and then "
        "only one ingest worker may run",
    )
    ingest_batch_size: int = Field(
        default=2000, ge=1, le=10_000, description="messages that ingest commits in one transaction"
    )
    ingest_batch_latency_ms: int = Field(
        default=50,
        ge=1,
        le=60_000,
        description="longest time in ms a message waits for its batch to fill before commit",
    )

    # --- Procurement reports ---
    report_year_start: str = Field(
        default="01-01",
        pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
        description="first day (MM-DD) of the reporting year over which 累计 is summed",
    )

    @field_validator("report_year_start")
    @classmethod
    def _check_year_start(cls, value: str) -> str:
        month, day = value.split("-")
        try:
            # A year without 29 February, so that every year has the day.
            date(2001, int(month), int(day))
        except ValueError as error:
            raise ValueError(f"{value} is not a day that every year has") from error
        return value

    @model_validator(mode="after")
    def _check_mode_requirements(self) -> Self:
        if self.mode == "development":
            return self
        if not self.database_url:
            raise ValueError(
                f"{ENV_PREFIX}DATABASE_URL is required when {ENV_PREFIX}MODE=production"
            )
        if self.secret_key is None:
            raise ValueError(f"{ENV_PREFIX}SECRET_KEY is required when {ENV_PREFIX}MODE=production")
        problem = describe_weak_secret(self.secret_key.get_secret_value())
        if problem is not None:
            raise ValueError(
                f"{ENV_PREFIX}SECRET_KEY is rejected in production mode: {problem}; generate one "
                'with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if self.mqtt_password is not None:
            problem = describe_weak_secret(self.mqtt_password.get_secret_value())
            if problem is not None:
                raise ValueError(
                    f"{ENV_PREFIX}MQTT_PASSWORD is rejected in production mode: {problem}"
                )
        return self

    @property
    def report_year_start_month_day(self) -> tuple[int, int]:
        month, day = self.report_year_start.split("-")
        return int(month), int(day)

    @property
    def broker_configured(self) -> bool:
        """Return whether ZHIGUI_MQTT_HOST was given, so `serve` should connect to a broker."""
        return "mqtt_host" in self.model_fields_set

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, with the development default filled in."""
        return self.database_url or DEVELOPMENT_DATABASE_URL

    @property
    def resolved_cabinet_broker_host(self) -> str:
        return self.cabinet_broker_host or self.mqtt_host

    @property
    def resolved_cabinet_broker_port(self) -> int:
        return self.cabinet_broker_port or self.mqtt_port

    @property
    def offline_after_s(self) -> float:
        """Return the telemetry silence in seconds after which a cabinet counts as offline."""
        return self.heartbeat_interval_s * self.offline_after_heartbeats

    @property
    def resolved_secret_key(self) -> bytes:
        """Return the token-signing key, with the development default filled in."""
        if self.secret_key is None:
            return DEVELOPMENT_SECRET_KEY.encode()
        return self.secret_key.get_secret_value().encode()


def describe_weak_secret(secret: str) -> str | None:
    """Return why a secret key is unsafe for production, or None when it is acceptable."""
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        return f"it has {len(secret)} characters, fewer than {MIN_SECRET_KEY_LENGTH}"
    lowered = secret.lower()
    for marker in PLACEHOLDER_SECRET_MARKERS:
        if marker in lowered:
            return f"it contains the placeholder word {marker!r}"
    if len(set(secret)) < 8:
        return "it has fewer than 8 distinct characters"
    return None


def load_settings(settings_file: Path | None = None) -> ServerSettings:
    """Read the settings from the environment and the optional settings file.

    Raises SettingsError with the validation messages when a value is invalid or when
    production mode lacks a required setting.
    """
    if settings_file is None:
        from_env = os.environ.get(SETTINGS_FILE_ENV)
        settings_file = Path(from_env) if from_env else None
    if settings_file is not None and not settings_file.exists():
        raise SettingsError(f"settings file {settings_file} not found")
    if settings_file is not None and not settings_file.is_file():
        raise SettingsError(f"settings file {settings_file} is not a regular file")
    try:
        # _env_file is pydantic-settings' per-call override of the dotenv path.
        return ServerSettings(_env_file=settings_file)  # type: ignore[call-arg]
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise SettingsError(
            f"cannot read settings file {settings_file}: {reason}; it must be a UTF-8 "
            "text file of ZHIGUI_NAME=value lines"
        ) from None
    except ValidationError as error:
        # Built from the messages only: pydantic's own text repeats the input values,
        # which include the secret key.
        problems = [
            f"{ENV_PREFIX}{'_'.join(str(part) for part in problem['loc']).upper()}: "
            f"{problem['msg']}"
            if problem["loc"]
            else problem["msg"]
            for problem in error.errors(include_url=False, include_input=False)
        ]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
