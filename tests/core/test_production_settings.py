"""Production refuses weak settings at start, each with a message that says what to change:
weak keys, CORS `*`, the benchmark's endpoints, argon2 below its production cost, absurd
lockout settings, and SQLite unless KMM_ALLOW_SQLITE_IN_PRODUCTION is set."""

from __future__ import annotations

import base64
import os
import secrets
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import ConfigurationError, Settings
from app.core.state import AppState

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
AUDIT_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
SECRET = secrets.token_urlsafe(48)
POSTGRES = "postgresql://kmm:pw@db.invalid:5432/kmm"  # never connected to here


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("KMM_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


def production(tmp_path, **kw: Any) -> Settings:  # type: ignore[no-untyped-def]
    given: dict[str, Any] = {"env": "production", "database_url": POSTGRES, "jwt_secret": SECRET,
                             "master_keys": [KEY], "audit_keys": [AUDIT_KEY], "secrets_file": tmp_path / "s.json", **kw}
    return Settings(**given)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def test_sound_production_settings_start(tmp_path):
    settings = production(tmp_path)
    settings.require_secrets()
    assert settings.is_sqlite is False


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"master_keys": [b64(bytes(32))]}, "KMM_MASTER_KEYS: key 1 is weak"),
        ({"master_keys": [KEY, b64(b"\x41" * 32)]}, "KMM_MASTER_KEYS: key 2 is weak"),
        ({"master_keys": [b64(b"\x01\x02" * 16)]}, "KMM_MASTER_KEYS: key 1 is weak"),
        ({"audit_keys": [b64(bytes(32))]}, "KMM_AUDIT_KEYS: key 1 is weak"),
        ({"audit_keys": [AUDIT_KEY, b64(b"\x07" * 32)]}, "KMM_AUDIT_KEYS: key 2 is weak"),
        ({"jwt_secret": "s" * 48}, "KMM_JWT_SECRET is weak"),
        ({"cors_origins": ["*"]}, "KMM_CORS_ORIGINS must name the origins"),
        ({"cors_origins": ["https://app.kmm.example", "*"]}, "KMM_CORS_ORIGINS must name the origins"),
        ({"bench_endpoints": True}, "KMM_BENCH_ENDPOINTS"),
        ({"argon2_time_cost": 1}, "KMM_ARGON2_TIME_COST must be at least 3"),
        ({"argon2_memory_kib": 1024}, "KMM_ARGON2_MEMORY_KIB must be at least 65536"),
        ({"lockout_threshold": 100000}, "KMM_LOCKOUT_THRESHOLD must be between 3 and 100"),
        ({"lockout_window_minutes": 10 ** 6}, "KMM_LOCKOUT_WINDOW_MINUTES must be between 1 and 1440"),
        ({"lockout_minutes": 10 ** 6}, "KMM_LOCKOUT_MINUTES must be between 1 and 1440"),
        ({"database_url": "sqlite:///./kmm.db"}, "KMM_ALLOW_SQLITE_IN_PRODUCTION"),
    ],
)
def test_production_refuses_a_weak_setting(tmp_path, kw, says):
    with pytest.raises(ConfigurationError) as err:
        AppState.build(production(tmp_path, **kw))
    message = str(err.value)
    assert message.startswith("KMM_ENV=production refuses weak settings: ")
    assert says in message
    # names the setting, never its value
    assert SECRET not in message and KEY not in message and AUDIT_KEY not in message
    assert not (tmp_path / "s.json").exists()


def test_every_weak_setting_is_named_at_once(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        production(tmp_path, cors_origins=["*"], bench_endpoints=True, argon2_time_cost=1)
    message = str(err.value)
    assert all(name in message for name in ("KMM_CORS_ORIGINS", "KMM_BENCH_ENDPOINTS", "KMM_ARGON2_TIME_COST"))


def test_sqlite_in_production_when_explicitly_allowed(tmp_path):
    settings = production(tmp_path, database_url=f"sqlite:///{tmp_path}/p.db", allow_sqlite_in_production=True)
    assert settings.is_sqlite


@pytest.mark.parametrize("kw", [{"lockout_threshold": 0}, {"lockout_window_minutes": 0}, {"lockout_minutes": 0}])
def test_a_lockout_of_nothing_is_refused_everywhere(tmp_path, kw):
    with pytest.raises(ValueError, match="greater than or equal"):
        Settings(env="development", secrets_file=tmp_path / "s.json", **kw)


def test_development_and_tests_keep_their_cheap_settings(tmp_path):
    for env in ("development", "test"):
        Settings(env=env, cors_origins=["*"], bench_endpoints=True, argon2_time_cost=1, lockout_threshold=100000,
                 secrets_file=tmp_path / "s.json")


def test_the_command_exits_2_with_the_reason(tmp_path):
    env = {"KMM_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/p.db", "KMM_JWT_SECRET": SECRET,
           "KMM_MASTER_KEYS": KEY, "KMM_AUDIT_KEYS": AUDIT_KEY, "KMM_SECRETS_FILE": str(tmp_path / "s.json"),
           "KMM_CORS_ORIGINS": "*"}
    r = CliRunner().invoke(cli, ["migrate"], env=env)
    assert r.exit_code == 2, r.output
    assert "KMM_CORS_ORIGINS must name the origins" in r.stderr
    assert "KMM_ALLOW_SQLITE_IN_PRODUCTION" in r.stderr
    assert SECRET not in r.output and KEY not in r.output
    assert not (tmp_path / "p.db").exists()
    r = CliRunner().invoke(cli, ["migrate"], env={**env, "KMM_CORS_ORIGINS": "https://app.kmm.example",
                                                  "KMM_ALLOW_SQLITE_IN_PRODUCTION": "true"})
    assert r.exit_code == 0, r.output
