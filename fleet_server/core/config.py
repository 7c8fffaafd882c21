"""Server settings, read from ZHIGUI_* environment variables and an optional settings file.

Precedence, highest first: keyword arguments, environment variables, the settings file.
The settings file uses dotenv syntax, one ``ZHIGUI_NAME=value`` per line. Its path comes
from ``--settings-file`` on the command line or from the ZHIGUI_SETTINGS_FILE variable.

In development mode the database defaults to SQLite in the working directory and the
secret key to a fixed development value. In production mode both must be given, and a
placeholder or short secret key is rejected at startup.
"""

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
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
        return self

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, with the development default filled in."""
        return self.database_url or DEVELOPMENT_DATABASE_URL

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
    if settings_file is not None and not settings_file.is_file():
        raise SettingsError(f"settings file {settings_file} not found")
    try:
        # _env_file is pydantic-settings' per-call override of the dotenv path.
        return ServerSettings(_env_file=settings_file)  # type: ignore[call-arg]
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
