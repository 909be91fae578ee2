"""Settings: the only reader of the process environment (and an optional `.env` file)."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    AnyUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"  # refuses what only development may do (`computebill reset`)


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON when stderr is not a terminal, coloured text when it is
    JSON = "json"
    CONSOLE = "console"


class JwtAlgorithm(StrEnum):
    HS256 = "HS256"  # shared secret (JWT_SECRET)
    EDDSA = "EdDSA"  # Ed25519 key pair (JWT_PRIVATE_KEY), public key published as a JWKS
    RS256 = "RS256"  # RSA key pair (JWT_PRIVATE_KEY), public key published as a JWKS


class MailBackend(StrEnum):
    OUTBOX = "outbox"  # into the outbox_emails table, listed for admins
    LOG = "log"  # a log line per e-mail
    SMTP = "smtp"  # through the SMTP server of SMTP_URL, by the worker's deliver_email job


class DatabasePooler(StrEnum):
    """What sits between the processes and PostgreSQL (README, "Connection pooling")."""

    NONE = "none"  # PostgreSQL itself, or a pooler in session mode
    # PgBouncer in transaction mode: a server connection is lent for one transaction only, so no
    # prepared statement outlives its transaction, and none may be named twice.
    PGBOUNCER_TRANSACTION = "pgbouncer-transaction"


class ConfigurationError(Exception):
    """A setting is missing or has a bad value; the message names it."""


POSTGRES_SCHEMES = ("postgresql", "postgresql+asyncpg", "postgres")


class StartTls(StrEnum):
    """STARTTLS on an smtp:// URL, from its `starttls` query parameter (docs/architecture.md §8)."""

    OPPORTUNISTIC = "opportunistic"  # when the server offers it (the default)
    REQUIRED = "required"  # refuse to send when the server does not offer it
    OFF = "off"  # never (a catcher on loopback)


SMTP_SCHEMES = ("smtp", "smtps")


def _with_asyncpg(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    environment: Environment = Environment.DEVELOPMENT
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host:port/db). "
        "`computebill up` starts an embedded server when unset.",
    )
    database_read_url: str | None = Field(
        default=None,
        description="A read replica's PostgreSQL URL, for the operators' lists and reports "
        "only; unset: DATABASE_URL.",
    )
    database_pool_size: Annotated[int, Field(ge=1, le=200)] = 20
    database_pooler: DatabasePooler = DatabasePooler.NONE
    redis_url: str | None = Field(
        default=None,
        description="Redis/Valkey URL (redis://host:port/db). "
        "`computebill up` starts an embedded Valkey when unset.",
    )
    redis_namespace: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")] = "computebill"
    max_request_body_bytes: Annotated[int, Field(ge=1024, le=100 * 1024 * 1024)] = 1024 * 1024
    public_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: comma-separated IPs
    # or networks, `*` for any. Empty: no proxy is trusted, the client is the TCP peer.
    forwarded_allow_ips: str = ""
    # /metrics on the app port: with a token, only `Authorization: Bearer <token>` reads it;
    # without one, only loopback peers do (everyone else gets 404).
    metrics_token: SecretStr | None = None
    # The OpenAPI schema and Swagger UI at /api/openapi.json and /api/docs.
    api_docs_enabled: bool = True
    log_level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error|critical)$")] = "info"
    log_format: LogFormat = LogFormat.AUTO
    # Traces (docs/architecture.md §1, observability): sent over OTLP/HTTP to this collector's
    # /v1/traces when set; unset, no tracing is installed at all. The service's name defaults to
    # computebill-app or computebill-worker, by process.
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = None
    otel_service_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    worker_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    # Where a worker serves its own /metrics (job counts and durations); unset: not served.
    worker_metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    worker_metrics_host: str = "127.0.0.1"
    worker_heartbeat_seconds: Annotated[int, Field(ge=1, le=59)] = 5
    worker_heartbeat_max_age_seconds: Annotated[int, Field(ge=2, le=3600)] = 30
    job_idle_timeout_seconds: Annotated[int, Field(ge=5, le=3600)] = 20
    # After SIGTERM, how long a worker lets its running jobs finish before it gives them back.
    worker_shutdown_grace_seconds: Annotated[int, Field(ge=0, le=3600)] = 10
    event_sweep_seconds: Annotated[int, Field(ge=1, le=59)] = 30
    # An event still unprocessed this long after it arrived is sent to the queue again.
    event_sweep_after_seconds: Annotated[int, Field(ge=1, le=3600)] = 30

    simulated_boot_min_seconds: Annotated[float, Field(ge=0, le=3600)] = 5
    simulated_boot_max_seconds: Annotated[float, Field(ge=0, le=3600)] = 15
    # Comma-separated GPU slugs whose launches the simulated provider fails (for tests).
    simulated_failing_gpus: str = ""
    provision_deadline_seconds: Annotated[int, Field(ge=1, le=86400)] = 600
    instance_sweep_seconds: Annotated[int, Field(ge=1, le=59)] = 10
    # Pay as you go (docs/architecture.md §4): a launch needs credit for this long at the new
    # burn rate; settlement runs this often; instances stop when the live balance is down to
    # this many seconds of the burn rate; the cap's sweep looks this often.
    min_runway_seconds: Annotated[int, Field(ge=0, le=86400)] = 600
    metering_interval_seconds: Annotated[int, Field(ge=1, le=59)] = 30
    stop_margin_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    credit_cap_sweep_seconds: Annotated[int, Field(ge=1, le=59)] = 5
    # Runway alerts: hours of runway (live balance ÷ burn rate) below which the customer is
    # e-mailed, once per crossing; comma-separated, empty for none.
    runway_alert_hours: Annotated[str, Field(pattern=r"^\s*(\d{1,4}(\s*,\s*\d{1,4})*)?\s*$")] = (
        "24,1"
    )

    mail_backend: MailBackend = MailBackend.OUTBOX
    # The sender of every e-mail, an RFC 5322 address with an optional display name.
    mail_from: Annotated[str, Field(min_length=3, max_length=320)] = (
        "Compute Billing <billing@localhost>"
    )
    # The SMTP server of the smtp backend: smtp://[user:password@]host[:port][?starttls=…]
    # (port 587 by default; STARTTLS opportunistic, required or off) or smtps://…[:465] (TLS from
    # the first byte). The user and password, when present, log in.
    smtp_url: SecretStr | None = None
    # A PEM file of certificates trusted for the SMTP server's, instead of the system's.
    smtp_ca_file: str | None = None
    smtp_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30
    # Tries of an e-mail over SMTP before it is marked failed; the waits between them double
    # from the first.
    mail_max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    mail_retry_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    # Development only (`computebill up` sets it): the directory of the e-mail its SMTP catcher
    # caught, shown at /_dev/mail. Unset, that page does not exist.
    dev_mail_dir: str | None = None

    # Who issues the invoices and statements (docs/architecture.md §4, paperwork): copied into
    # each when it is issued. The address's lines are separated by commas or newlines.
    seller_name: Annotated[str, Field(min_length=1, max_length=200)] = "Compute Billing Platform"
    seller_address: Annotated[str, Field(min_length=1, max_length=500)] = (
        "1 Example Street, San Francisco, CA 94105, United States"
    )
    seller_tax_id: Annotated[str, Field(max_length=40)] = ""

    # What one credit top-up may buy, in cents (docs/architecture.md §4, top-ups).
    top_up_min_cents: Annotated[int, Field(ge=50, le=100_000_000)] = 1000
    top_up_max_cents: Annotated[int, Field(ge=50, le=100_000_000)] = 500_000
    # Auto-recharge (docs/architecture.md §4, auto-recharge): how often the check looks for
    # balances below their thresholds; the waits before retrying a failed charge, one per
    # failure in a row (comma-separated seconds, the last repeated); how long a charge may stay
    # unfinished before reconciliation drives it again.
    auto_recharge_check_seconds: Annotated[int, Field(ge=1, le=59)] = 10
    auto_recharge_retry_seconds: Annotated[
        str, Field(pattern=r"^\s*\d{1,6}(\s*,\s*\d{1,6})*\s*$")
    ] = "300,1800,7200"
    auto_recharge_reconcile_after_seconds: Annotated[int, Field(ge=1, le=86400)] = 300

    stripe_secret_key: SecretStr | None = None
    # Comma-separated: two secrets are accepted at once while one is being rotated.
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: AnyHttpUrl | None = None  # None: Stripe's own API

    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.HS256
    jwt_secret: SecretStr | None = None
    jwt_private_key: SecretStr | None = None
    jwt_issuer: str = "computebill"
    jwt_audience: str = "computebill-api"
    access_token_ttl_seconds: Annotated[int, Field(ge=30, le=3600)] = 600
    token_pepper: SecretStr | None = None
    refresh_grace_seconds: Annotated[int, Field(ge=0, le=120)] = 20
    session_idle_days: Annotated[int, Field(ge=1, le=365)] = 14
    # The console's destructive actions, turning 2FA on and making an API key need the password
    # proved this recently in the session.
    reauthenticate_after_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900
    session_absolute_days: Annotated[int, Field(ge=1, le=365)] = 60
    bcrypt_rounds: Annotated[int, Field(ge=4, le=16)] = 12
    rate_limit_login_per_ip: str = "30/minute"
    # Failed logins per account; wrong passwords typed in a signed-in session count with them.
    rate_limit_login_failures_per_account: str = "10/15minutes"
    rate_limit_signup_per_ip: str = "10/hour"
    rate_limit_refresh_per_session: str = "60/minute"
    # Wrong second-step codes (TOTP or recovery) an account may send before it waits.
    rate_limit_mfa_failures_per_account: str = "10/15minutes"
    # Admin routes and pages answer 403 `two_factor_required` to an admin without 2FA.
    require_admin_2fa: bool = True
    api_key_rate_limit_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600
    rate_limit_verification_resend_per_account: str = "3/hour"
    rate_limit_password_reset_per_ip: str = "10/hour"  # noqa: S105 - a limit, not a secret
    rate_limit_password_reset_per_address: str = "3/hour"  # noqa: S105 - a limit, not a secret

    @model_validator(mode="after")
    def _top_up_bounds_ordered(self) -> Settings:
        if self.top_up_min_cents > self.top_up_max_cents:
            raise ValueError("TOP_UP_MIN_CENTS must not be above TOP_UP_MAX_CENTS")
        return self

    @field_validator("runway_alert_hours")
    @classmethod
    def _runway_alert_hours_positive(cls, value: str) -> str:
        if any(int(hours) == 0 for hours in value.split(",") if hours.strip()):
            raise ValueError("hours must be positive whole numbers, e.g. 24,1")
        return value

    @property
    def auto_recharge_retry_delays(self) -> tuple[int, ...]:
        """The waits before retrying a failed auto-recharge, by failures in a row (1st, 2nd, …)."""
        return tuple(int(part) for part in self.auto_recharge_retry_seconds.split(","))

    @property
    def runway_alert_seconds(self) -> tuple[int, ...]:
        """The runway alerts' thresholds in seconds, the longest first, without repeats."""
        hours = {int(part) for part in self.runway_alert_hours.split(",") if part.strip()}
        return tuple(sorted((h * 3600 for h in hours), reverse=True))

    @model_validator(mode="after")
    def _smtp_configured(self) -> Settings:
        if self.smtp_url is not None:
            smtp_url_parts(self.smtp_url.get_secret_value())
        elif self.mail_backend is MailBackend.SMTP:
            raise ValueError("MAIL_BACKEND=smtp needs SMTP_URL (smtp://host:587 or smtps://host)")
        return self

    @model_validator(mode="after")
    def _keys_are_strong(self) -> Settings:
        for name in ("jwt_secret", "token_pepper"):
            value = getattr(self, name)
            if value is not None and len(value.get_secret_value().encode()) < 32:
                raise ValueError(f"{name.upper()} must be at least 32 bytes")
        return self

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in POSTGRES_SCHEMES:
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("otel_exporter_otlp_endpoint", "otel_service_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`OTEL_EXPORTER_OTLP_ENDPOINT=` (set but empty) turns tracing off, as in the SDK."""
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def async_database_url(self) -> str:
        """The database URL with the asyncpg driver, for SQLAlchemy."""
        return _with_asyncpg(self.required_database_url)

    @property
    def async_database_read_url(self) -> str | None:
        """The read replica's URL with the asyncpg driver; None when there is none."""
        return None if self.database_read_url is None else _with_asyncpg(self.database_read_url)

    @property
    def required_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigurationError(
                "DATABASE_URL is not set (use `computebill up` to run with an embedded PostgreSQL)"
            )
        return self.database_url

    @property
    def required_redis_url(self) -> str:
        if self.redis_url is None:
            raise ConfigurationError(
                "REDIS_URL is not set (use `computebill up` to run with an embedded Valkey)"
            )
        return self.redis_url

    def check_services_configured(self) -> None:
        """Fail fast, before serving anything, when a service URL is missing."""
        _ = self.required_database_url, self.required_redis_url

    def check_keys_configured(self) -> None:
        """Fail fast when a key the app signs or digests tokens with is missing."""
        _ = self.required_token_pepper
        if self.jwt_algorithm is JwtAlgorithm.HS256 and self.jwt_secret is None:
            raise ConfigurationError("JWT_SECRET is not set (at least 32 random bytes)")
        if self.jwt_algorithm is not JwtAlgorithm.HS256 and self.jwt_private_key is None:
            raise ConfigurationError(
                f"JWT_PRIVATE_KEY is not set (needed for {self.jwt_algorithm})"
            )

    @property
    def required_token_pepper(self) -> bytes:
        if self.token_pepper is None:
            raise ConfigurationError("TOKEN_PEPPER is not set (at least 32 random bytes)")
        return self.token_pepper.get_secret_value().encode()

    @property
    def queue_name(self) -> str:
        return self.redis_namespace

    @property
    def log_as_json(self) -> bool:
        if self.log_format is LogFormat.AUTO:
            return not sys.stderr.isatty()
        return self.log_format is LogFormat.JSON


def smtp_url_parts(url: str) -> tuple[AnyUrl, StartTls]:
    """SMTP_URL checked: its scheme, a host, and the STARTTLS rule of an smtp:// URL."""
    parsed = AnyUrl(url)
    if parsed.scheme not in SMTP_SCHEMES:
        raise ValueError("SMTP_URL must be an smtp:// or smtps:// URL")
    if not parsed.host:
        raise ValueError("SMTP_URL names no host")
    rule = dict(parsed.query_params()).get("starttls", StartTls.OPPORTUNISTIC.value)
    if rule not in set(StartTls):
        raise ValueError("SMTP_URL's starttls must be opportunistic, required or off")
    if parsed.scheme == "smtps" and "starttls" in dict(parsed.query_params()):
        raise ValueError("SMTP_URL: smtps:// is TLS from the start; starttls applies to smtp://")
    return parsed, StartTls(rule)


def describe_validation_error(error: ValidationError) -> str:
    lines = ["Configuration error:"]
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]).upper() or "settings"
        lines.append(f"  {field}: {problem['msg']}")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings, raising ConfigurationError with a readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from error


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """The environment for a child process: ours plus the given overrides."""
    return {**os.environ, **overrides}
