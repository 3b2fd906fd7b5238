"""Settings: one typed object, read from `SMSGW_*` environment variables and validated at start.

Every field here is documented in docs/configuration.md with its default.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from smsgw.forwarded import DEFAULT_TRUSTED, parse_trusted

SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}
POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}
#: SMSGW_ONLINE_WINDOW_SECONDS's default: a phone heard from within it is online.
ONLINE_WINDOW_SECONDS = 300


class SqliteSynchronous(StrEnum):
    """SQLite `synchronous` pragma: FULL syncs the WAL on every commit (survives power loss)."""

    FULL = "FULL"
    NORMAL = "NORMAL"


class WebhooksMode(StrEnum):
    """`hub`: phones post their events to smsgw, which delivers them; `direct`: upstream's
    behaviour, phones post straight to the users' URLs."""

    HUB = "hub"
    DIRECT = "direct"


class Mode(StrEnum):
    """`production` (the default): features for development stay off unless turned on one by
    one; `development`: they are on unless turned off (virtual phones, docs/phones.md)."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"


class Settings(BaseSettings):
    """All of smsgw's settings. Build it once (`load_settings()`) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="SMSGW_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 3000
    data_dir: Path = Path("data")
    database_url: str | None = None
    default_region: str | None = None
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    phone_post_max_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 16 * 1024 * 1024
    bootstrap_account: bool = True
    auto_migrate: bool = True
    sqlite_synchronous: SqliteSynchronous = SqliteSynchronous.FULL
    #: PostgreSQL: connections each server process keeps, for each of its two pools.
    db_pool_size: Annotated[int, Field(ge=1, le=1000)] = 5
    credential_cache_size: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000
    log_level: str = "info"
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    mode: Mode = Mode.PRODUCTION

    # Phones (the mobile API)
    private_token: SecretStr | None = None
    anonymous_registration: bool = False
    registration_rate_limit: Annotated[int, Field(ge=0, le=10_000)] = 10
    claim_cap: Annotated[int, Field(ge=1, le=100)] = 10
    #: SMS parts a phone is handed per minute and per UTC day, unless the phone has its own
    #: limits (routing/budgets.py); 0: no limit.
    phone_parts_per_minute: Annotated[int, Field(ge=0, le=1_000_000)] = 30
    phone_parts_per_day: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    release_after_seconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 600
    online_window_seconds: Annotated[int, Field(ge=1, le=86400)] = ONLINE_WINDOW_SECONDS
    sse_keepalive_seconds: Annotated[float, Field(gt=0, le=3600)] = 15
    presence_flush_seconds: Annotated[float, Field(gt=0, le=3600)] = 30
    worker_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5
    code_ttl_seconds: Annotated[int, Field(ge=30, le=900)] = 120
    #: Virtual phones for development (None: on in development mode, off in production).
    virtual_phones: bool | None = None
    #: Stop words beside the built-in ones, comma-separated (domain/keywords.py).
    opt_out_words: str = ""

    # Carrier links (docs/links.md)
    #: Whether this server process runs carrier links (one process per link at a time).
    links: bool = True
    link_connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10
    link_reconnect_max_seconds: Annotated[float, Field(ge=1, le=3600)] = 60

    # Operations: health probes, metrics, the event log (docs/operations.md)
    metrics_token: SecretStr | None = None
    worker_stall_seconds: Annotated[float, Field(gt=0, le=86400)] = 60
    health_min_free_mb: Annotated[int, Field(ge=0, le=10**9)] = 100
    event_log_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    #: Sent messages and received ones older than this are deleted (None: kept for ever).
    retention_days: Annotated[int | None, Field(ge=1, le=36500)] = None

    # Web dashboard
    web_login_rate_limit: Annotated[int, Field(ge=0, le=10_000)] = 10
    web_session_hours: Annotated[int, Field(ge=1, le=24 * 365)] = 168
    web_live_keepalive_seconds: Annotated[float, Field(gt=0, le=3600)] = 15

    # Tokens (JWT) and authentication throttling: see docs/auth.md
    jwt_secret: SecretStr | None = None
    # The secret before a rotation: phones' hook URLs made under it keep working for a while
    jwt_previous_secret: SecretStr | None = None
    hook_url_grace_seconds: Annotated[int, Field(ge=0, le=365 * 86400)] = 3 * 86400
    jwt_access_ttl_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 900
    jwt_refresh_ttl_seconds: Annotated[int, Field(ge=120, le=365 * 86400)] = 30 * 86400
    auth_failure_window_seconds: Annotated[int, Field(ge=1, le=86400)] = 300
    auth_failures_per_address: Annotated[int, Field(ge=0, le=100_000)] = 30
    auth_failures_per_login: Annotated[int, Field(ge=0, le=100_000)] = 10
    code_failures_per_window: Annotated[int, Field(ge=0, le=100_000)] = 100

    # Webhooks and inbox (docs/webhooks.md)
    webhooks_allow_private_urls: bool = False
    public_url: str | None = None
    forwarded_allow_ips: str = DEFAULT_TRUSTED
    webhooks_mode: WebhooksMode = WebhooksMode.HUB
    webhooks_max_attempts: Annotated[int, Field(ge=1, le=100)] = 15
    webhooks_max_age_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 2 * 86400
    webhooks_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10
    webhooks_retry_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 10
    webhooks_retry_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 3600
    webhooks_max_response_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] = 64 * 1024
    webhooks_concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    webhooks_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 1
    webhooks_phone_post_wait_seconds: Annotated[float, Field(ge=0, le=3600)] = 30
    inbox_export_settle_seconds: Annotated[float, Field(gt=0, le=86400)] = 60
    inbox_export_max_age_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 86400

    @field_validator("default_region", mode="before")
    @classmethod
    def _region_is_known(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError("must be a two-letter region code such as US or DE")
        import phonenumbers  # here, not at the top: only a set region pays for loading it

        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region code {value!r}; use a two-letter code such as US")
        return region

    @field_validator("virtual_phones", mode="before")
    @classmethod
    def _unset_follows_the_mode(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def virtual_phones_enabled(self) -> bool:
        """Whether virtual phones may be added and are driven: SMSGW_VIRTUAL_PHONES when
        set, else whether this is development mode."""
        if self.virtual_phones is not None:
            return self.virtual_phones
        return self.mode == Mode.DEVELOPMENT

    @field_validator("opt_out_words")
    @classmethod
    def _opt_out_words_are_words(cls, value: str) -> str:
        from smsgw.domain.keywords import parse_extra

        return ",".join(parse_extra(value))

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url_is_absolute(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute URL such as https://sms.example.org")
        return value.rstrip("/")

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _trusted_proxies_are_addresses(cls, value: str) -> str:
        parse_trusted(value)
        return value

    @property
    def trusted_proxies(self) -> list[str]:
        """Peers whose X-Forwarded-* headers are believed (forwarded.py)."""
        return parse_trusted(self.forwarded_allow_ips)

    @field_validator("database_url", mode="before")
    @classmethod
    def _url_is_supported(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or "://" not in value:
            raise ValueError("must be a URL such as sqlite:///path/to/smsgw.db")
        scheme = value.split("://", 1)[0].lower()
        if scheme not in SQLITE_SCHEMES | POSTGRES_SCHEMES:
            raise ValueError(f"unsupported database scheme {scheme!r}; use sqlite or postgresql")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_is_known(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return level

    @model_validator(mode="after")
    def _data_dir_is_usable(self) -> Settings:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ValueError(f"SMSGW_DATA_DIR {self.data_dir} exists and is not a directory")
        return self

    @model_validator(mode="after")
    def _workers_can_share(self) -> Settings:
        if self.workers > 1 and not sys.platform.startswith("linux"):
            raise ValueError(
                "SMSGW_WORKERS above 1 needs Linux (its processes talk over abstract sockets)"
            )
        return self

    @model_validator(mode="after")
    def _stall_outlasts_a_round(self) -> Settings:
        if self.worker_stall_seconds <= self.worker_interval_seconds:
            raise ValueError(
                "SMSGW_WORKER_STALL_SECONDS must be longer than SMSGW_WORKER_INTERVAL_SECONDS"
            )
        return self

    @field_validator("private_token", "metrics_token", mode="before")
    @classmethod
    def _token_is_long(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, str) and len(value) < 16:
            raise ValueError("must be at least 16 characters, or unset")
        return value

    @field_validator("jwt_secret", "jwt_previous_secret", mode="before")
    @classmethod
    def _jwt_secret_is_long(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, str) and len(value) < 32:
            raise ValueError("must be at least 32 characters, or unset (a secret is generated)")
        return value

    @model_validator(mode="after")
    def _refresh_outlives_access(self) -> Settings:
        if self.jwt_refresh_ttl_seconds <= self.jwt_access_ttl_seconds:
            raise ValueError(
                "SMSGW_JWT_REFRESH_TTL_SECONDS must be longer than SMSGW_JWT_ACCESS_TTL_SECONDS"
            )
        return self

    @property
    def database_scheme(self) -> str:
        """`sqlite` or `postgresql`: which dialect the database URL points at."""
        scheme = self.resolved_database_url.split("://", 1)[0].lower()
        return "sqlite" if scheme in SQLITE_SCHEMES else "postgresql"

    @property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL: the explicit one, or SQLite in the data directory."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'smsgw.db').resolve()}"
        scheme, rest = self.database_url.split("://", 1)
        scheme = scheme.lower()
        if scheme in SQLITE_SCHEMES:
            return f"sqlite+aiosqlite://{rest}"
        return f"postgresql+psycopg://{rest}"


class SettingsError(Exception):
    """Raised with a readable, multi-line explanation of every invalid setting."""


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides) and validate; raise SettingsError if bad."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            name = f"SMSGW_{field.upper()}" if error["loc"] else "settings"
            lines.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
