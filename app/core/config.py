"""Settings, read from the environment (and `.env`) with pydantic-settings.

Secrets (the JWT signing key, the master encryption keys and the audit chain's keys) are
never hard-coded.
In development they are generated once into a git-ignored local file, with a warning;
with ``KMM_ENV=production`` a missing secret stops the service at start.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Default retention per purpose, in days (§6.5). Overridable with KMM_RETENTION_DAYS.
DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "service_delivery": 6 * 365,
    "equal_opportunities_monitoring": 3 * 365,
    "funder_reporting": 6 * 365,
    "personnel_administration": 6 * 365,
}


class ConfigurationError(RuntimeError):
    """The settings cannot run a service; the message says what to set."""


# What production accepts at least (the library's defaults for argon2id), and the lockout
# settings that still mean something: a handful of tries, minutes to a day.
PRODUCTION_ARGON2_TIME_COST = 3
PRODUCTION_ARGON2_MEMORY_KIB = 65536
LOCKOUT_THRESHOLD_RANGE = (3, 100)
LOCKOUT_MINUTES_RANGE = (1, 24 * 60)
# A random 32-byte key has about 30 distinct byte values; one with fewer than this was made by hand.
_MIN_DISTINCT = 8


# Settings that may come from a file named by ``<variable>_FILE`` (Docker secrets): field, variable.
SECRET_FILES = {
    "jwt_secret": "KMM_JWT_SECRET",
    "master_keys": "KMM_MASTER_KEYS",
    "audit_keys": "KMM_AUDIT_KEYS",
    "database_url": "DATABASE_URL",
    "metrics_token": "KMM_METRICS_TOKEN",
}


def _weak_key(text: str) -> bool:
    """A master key of one repeated byte (all zero, say) or a short repeated pattern."""
    try:
        key = base64.urlsafe_b64decode(text.encode())
    except ValueError:
        return False  # not base64: decode_master_keys says so
    return len(set(key)) < _MIN_DISTINCT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KMM_", env_file=".env", extra="ignore", populate_by_name=True
    )

    env: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default="sqlite+aiosqlite:///./kmm.db",
        validation_alias=AliasChoices("DATABASE_URL", "KMM_DATABASE_URL"),
    )
    # Postgres only: run in this schema (tests and the benchmark use their own).
    database_schema: str | None = None
    database_pool_size: int = 10
    database_timeout_seconds: float = 5.0
    # Postgres only: shown in pg_stat_activity, so operators (and the fault tests) can find
    # this service's connections.
    database_application_name: str = Field(default="kmm-records", max_length=63)

    secrets_file: Path = Path(".kmm-secrets.json")
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "kmm-records"
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=90)
    # How long a POST's Idempotency-Key is remembered: a retry within it gets the first result.
    idempotency_key_hours: int = Field(default=24, ge=1, le=7 * 24)
    # base64 (urlsafe) 32-byte keys; the first is current, later ones still decrypt.
    master_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # base64 (urlsafe) 32-byte keys of the audit chain's HMAC (docs/audit.md); the first
    # seals, later ones still verify the seals made with them. Never stored in the database.
    audit_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Seals made before the chain was keyed that verify (their number after the upgrade;
    # docs/audit.md). None on a trail that was keyed from its start.
    audit_unkeyed_seals: int = Field(default=0, ge=0)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Proxies (addresses or networks) whose X-Forwarded-For / -Proto `kmm serve` believes; none by default.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Failed logins within the window: from one client address (any email) throttle that
    # address; on one email (from anywhere) lock it. The address limit is the lower, so no
    # single address can lock an account out.
    login_address_threshold: int = Field(default=10, ge=1)
    lockout_threshold: int = Field(default=20, ge=2)
    lockout_window_minutes: int = Field(default=15, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    # A refresh session ends this long after its login, however often it is refreshed.
    session_max_days: int = Field(default=30, ge=1, le=365)

    # argon2 cost; tests lower it, production keeps at least the library's defaults.
    argon2_time_cost: int = PRODUCTION_ARGON2_TIME_COST
    argon2_memory_kib: int = PRODUCTION_ARGON2_MEMORY_KIB

    retention_days: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_RETENTION_DAYS))
    review_interval_days: int = 365
    # How long a fulfilled access-request package is kept for the Director to send (§6.5).
    package_retention_days: int = Field(default=90, ge=1)
    breach_open_too_long_days: int = 30

    audit_seal_interval_seconds: float = 0.5

    # Scheduled work inside `kmm serve` (app/workflows/scheduler.py): each job's interval as
    # seconds or with a unit (``90s``, ``15m``, ``1h``, ``1d``), or ``off``. KMM_SCHEDULER=off
    # stops them all. One process across every worker and replica runs a job at a time.
    scheduler: bool = True
    # Off until an operator turns it on: shredding is for good (§4.6); try `--dry-run` first.
    schedule_retention_sweep: Annotated[float | None, NoDecode] = None
    schedule_access_request_flags: Annotated[float | None, NoDecode] = 3600.0
    schedule_review_reminders: Annotated[float | None, NoDecode] = 24 * 3600.0
    schedule_housekeeping: Annotated[float | None, NoDecode] = 24 * 3600.0
    scheduler_tick_seconds: float = Field(default=30.0, gt=0)
    # A job's lease: renewed while it runs; a process that dies leaves it to expire.
    scheduler_lease_seconds: float = Field(default=300.0, ge=5)

    # Webhook deliveries (app/workflows/webhooks/).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_backoff_seconds: float = Field(default=30.0, gt=0)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)

    # Housekeeping (§6.5; app/workflows/housekeeping.py): how long what the service needs only
    # for a while is kept. A finished webhook delivery (and its attempts, and then its event)
    # this long after it was last tried, for GET /webhooks/{id}/deliveries:
    webhook_log_days: int = Field(default=30, ge=1)
    # Login attempts, and sessions after they end. At least what the lockout and the address
    # throttle read (``lockout_horizon``), in whole days.
    login_attempts_days: int = Field(default=30, ge=1)
    log_level: str = "INFO"
    # JSON lines, or readable lines; unset: JSON in production, readable lines elsewhere.
    log_json: bool | None = None
    # A bearer token /metrics asks for; unset: /metrics is open, except in production.
    metrics_token: SecretStr | None = None
    # Exposes /bench/baseline (only the benchmark sets it).
    bench_endpoints: bool = False
    # Production runs on PostgreSQL; a single-host deployment may choose SQLite knowingly.
    allow_sqlite_in_production: bool = False

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``NAME_FILE`` (Docker secrets, say) holds the value of ``NAME``; see SECRET_FILES."""
        if not isinstance(data, dict):
            return data
        for field, name in SECRET_FILES.items():
            path = os.environ.get(f"{name}_FILE")
            if not path:
                continue
            if os.environ.get(name) is not None:
                raise ConfigurationError(f"set {name} and {name}_FILE: set one of them")
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise ConfigurationError(f"{name}_FILE: cannot read {path} ({reason})") from None
            if not any(k.lower() in (field, name.lower()) for k in data):  # a value given here wins
                data[field] = value
        return data

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        """Accept plain URLs and pick the async driver the service runs on."""
        if v.startswith("postgres://"):
            v = "postgresql://" + v.removeprefix("postgres://")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        if v.startswith("sqlite://") and not v.startswith("sqlite+aiosqlite://"):
            v = "sqlite+aiosqlite://" + v.removeprefix("sqlite://")
        return v

    @field_validator("master_keys", "audit_keys", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _list_from_env(cls, v: Any) -> Any:
        """Lists from the environment: a JSON array, or comma-separated values."""
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return v

    @model_validator(mode="after")
    def _refuse_weak_production_settings(self) -> Settings:
        """With KMM_ENV=production, refuse settings that weaken the service, naming each.

        Missing secrets are ``require_secrets``' to report; this names what is set but weak.
        The message names settings, never their values.
        """
        if self.env != "production" or self.jwt_secret is None or not self.master_keys:
            return self
        problems: list[str] = []
        for name, keys in (("KMM_MASTER_KEYS", self.master_keys), ("KMM_AUDIT_KEYS", self.audit_keys)):
            weak = [str(n) for n, k in enumerate(keys, 1) if _weak_key(k.get_secret_value())]
            if weak:
                problems.append(f"{name}: key {', '.join(weak)} is weak (all one byte or few distinct "
                                "bytes); generate each with os.urandom(32)")
        jwt_secret = self.jwt_secret.get_secret_value()
        if len(jwt_secret) >= 32 and len(set(jwt_secret)) < _MIN_DISTINCT:  # shorter: require_secrets says so
            problems.append("KMM_JWT_SECRET is weak (few distinct characters); use a random one")
        if "*" in self.cors_origins:
            problems.append("KMM_CORS_ORIGINS must name the origins; '*' lets any web page call the API")
        if self.bench_endpoints:
            problems.append("KMM_BENCH_ENDPOINTS exposes the benchmark's unauthenticated endpoint; unset it")
        if self.argon2_time_cost < PRODUCTION_ARGON2_TIME_COST:
            problems.append(f"KMM_ARGON2_TIME_COST must be at least {PRODUCTION_ARGON2_TIME_COST}")
        if self.argon2_memory_kib < PRODUCTION_ARGON2_MEMORY_KIB:
            problems.append(f"KMM_ARGON2_MEMORY_KIB must be at least {PRODUCTION_ARGON2_MEMORY_KIB}")
        for name, value, (low, high) in (
            ("KMM_LOCKOUT_THRESHOLD", self.lockout_threshold, LOCKOUT_THRESHOLD_RANGE),
            ("KMM_LOCKOUT_WINDOW_MINUTES", self.lockout_window_minutes, LOCKOUT_MINUTES_RANGE),
            ("KMM_LOCKOUT_MINUTES", self.lockout_minutes, LOCKOUT_MINUTES_RANGE),
        ):
            if not low <= value <= high:
                problems.append(f"{name} must be between {low} and {high}")
        if self.is_sqlite and not self.allow_sqlite_in_production:
            problems.append("DATABASE_URL is SQLite: production runs on PostgreSQL "
                            "(set KMM_ALLOW_SQLITE_IN_PRODUCTION=true to run a single host on SQLite knowingly)")
        if problems:
            raise ConfigurationError("KMM_ENV=production refuses weak settings: " + "; ".join(problems))
        return self

    @field_validator("schedule_retention_sweep", "schedule_access_request_flags", "schedule_review_reminders",
                     "schedule_housekeeping", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> Any:
        """``off`` (or ``false``, ``0``) is None; a number is seconds; ``15m``, ``1h``, ``1d`` have units."""
        if v is None or isinstance(v, int | float):
            return None if v is None or v <= 0 else float(v)
        text = str(v).strip().lower()
        if text in {"off", "false", "no", "none", "0", ""}:
            return None
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        number, unit = (text[:-1], units[text[-1]]) if text[-1] in units else (text, 1)
        try:
            seconds = float(number) * unit
        except ValueError:
            raise ValueError(f"{text!r} is not an interval: seconds, 15m, 1h, 1d, or off") from None
        if seconds <= 0:
            return None
        return seconds

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        """Each an IP address or network, kept in normal form (uvicorn reads the same strings)."""
        out = []
        for item in v:
            try:
                network = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"KMM_TRUSTED_PROXIES: {item!r} is not an IP address or network") from None
            out.append(str(network.network_address) if network.num_addresses == 1 else str(network))
        return out

    @model_validator(mode="after")
    def _address_limit_below_account_limit(self) -> Settings:
        if self.login_address_threshold >= self.lockout_threshold:
            raise ValueError("KMM_LOGIN_ADDRESS_THRESHOLD must be below KMM_LOCKOUT_THRESHOLD, "
                             "or one client address could lock an account out")
        return self

    @model_validator(mode="after")
    def _login_attempts_outlive_the_lockout(self) -> Settings:
        """Housekeeping must not delete a failed login that a lock or throttle still counts (§6.6)."""
        if timedelta(days=self.login_attempts_days) < self.lockout_horizon:
            days = -(-self.lockout_horizon // timedelta(days=1))
            minutes = self.lockout_horizon // timedelta(minutes=1)
            raise ValueError(f"KMM_LOGIN_ATTEMPTS_DAYS must be at least {days}: the lockout reads login attempts "
                             f"KMM_LOCKOUT_WINDOW_MINUTES + KMM_LOCKOUT_MINUTES ({minutes} minutes) back")
        return self

    @property
    def lockout_horizon(self) -> timedelta:
        """How far back the lockout and the address throttle read login attempts: a lock
        counts failures within the window, and lasts the lock's length after the last one."""
        return timedelta(minutes=self.lockout_window_minutes + self.lockout_minutes)

    @property
    def logs_as_json(self) -> bool:
        return self.env == "production" if self.log_json is None else self.log_json

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def access_token_ttl(self) -> timedelta:
        return timedelta(minutes=self.access_token_minutes)

    @property
    def refresh_token_ttl(self) -> timedelta:
        return timedelta(days=self.refresh_token_days)

    @property
    def session_max_age(self) -> timedelta:
        return timedelta(days=self.session_max_days)

    # -- secrets -------------------------------------------------------------
    def _local_secrets(self) -> dict[str, object]:
        """The git-ignored local secrets file (development), created once."""
        from app.core import local_secrets  # local: it imports this module

        return local_secrets.load(self.secrets_file)

    def require_secrets(self) -> None:
        """Fail fast with a clear message when production lacks a secret."""
        if self.env != "production":
            return
        missing = [
            name
            for name, value in (("KMM_JWT_SECRET", self.jwt_secret), ("KMM_MASTER_KEYS", self.master_keys),
                                ("KMM_AUDIT_KEYS", self.audit_keys))
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"KMM_ENV=production needs {', '.join(missing)}; refusing to start without them"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ConfigurationError("KMM_JWT_SECRET must be at least 32 characters")

    @cached_property
    def signing_key(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        self.require_secrets()
        return str(self._local_secrets()["jwt_secret"])

    @property
    def keys_from_environment(self) -> bool:
        """True when KMM_MASTER_KEYS is set; otherwise the local secrets file holds the keys."""
        return bool(self.master_keys)

    def read_keyring(self) -> dict[str, bytes]:
        """Master keys by key id, read now from their source (the first is current).

        The environment is fixed for a process; the local secrets file is read afresh,
        so a running process learns a key that ``kmm rotate-key`` added to it.
        """
        raw: list[str]
        if self.master_keys:
            raw = [k.get_secret_value() for k in self.master_keys]
        else:
            self.require_secrets()
            raw = [str(k) for k in self._local_secrets()["master_keys"]]  # type: ignore[attr-defined]
        from app.core.local_secrets import decode_master_keys  # local: it imports this module

        return decode_master_keys(raw)

    @cached_property
    def keyring(self) -> dict[str, bytes]:
        """Master keys by key id as read at first use; the first listed wraps new data keys."""
        return self.read_keyring()

    @cached_property
    def audit_key_list(self) -> list[bytes]:
        """The audit chain's HMAC keys, in order (the first seals); from KMM_AUDIT_KEYS or the local file."""
        raw: list[str]
        if self.audit_keys:
            raw = [k.get_secret_value() for k in self.audit_keys]
        else:
            self.require_secrets()
            raw = [str(k) for k in self._local_secrets()["audit_keys"]]  # type: ignore[attr-defined]
        from app.core.local_secrets import decode_keys  # local: it imports this module

        return decode_keys(raw, what="an audit key")


def get_settings() -> Settings:
    return Settings()
