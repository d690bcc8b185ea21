"""Settings: production refuses to start without its secrets; development generates
them once into an owner-only file and reuses it."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest

from app.core.config import ConfigurationError, Settings
from app.core.state import AppState
from app.main import create_app

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
SECRET = "s3cr3t-" + "kmm-signing-key-" * 3


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("KMM_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


def _production(tmp_path, **kw) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(env="production", database_url=f"sqlite:///{tmp_path}/p.db",
                    secrets_file=tmp_path / "secrets.json", allow_sqlite_in_production=True, **kw)


@pytest.mark.parametrize(
    ("kw", "missing"),
    [
        ({}, ["KMM_JWT_SECRET", "KMM_MASTER_KEYS", "KMM_AUDIT_KEYS"]),
        ({"jwt_secret": SECRET, "audit_keys": [KEY]}, ["KMM_MASTER_KEYS"]),
        ({"master_keys": [KEY], "audit_keys": [KEY]}, ["KMM_JWT_SECRET"]),
        ({"jwt_secret": SECRET, "master_keys": [KEY]}, ["KMM_AUDIT_KEYS"]),
    ],
)
def test_production_without_secrets_fails_at_start(tmp_path, kw, missing):
    settings = _production(tmp_path, **kw)
    for build in (lambda: AppState.build(settings), lambda: create_app(settings, configure_logs=False)):
        with pytest.raises(ConfigurationError) as err:
            build()
        message = str(err.value)
        assert "KMM_ENV=production" in message
        assert all(name in message for name in missing)
    assert not settings.secrets_file.exists()  # never falls back to a generated file


def test_production_refuses_a_short_signing_key(tmp_path):
    with pytest.raises(ConfigurationError, match="at least 32"):
        AppState.build(_production(tmp_path, jwt_secret="short", master_keys=[KEY], audit_keys=[KEY]))


@pytest.mark.parametrize("key", ["not base64!!", base64.urlsafe_b64encode(b"16 bytes only...").decode()])
def test_a_bad_master_key_is_refused(tmp_path, key):
    with pytest.raises(ConfigurationError, match="master key"):
        AppState.build(_production(tmp_path, jwt_secret=SECRET, master_keys=[key], audit_keys=[KEY]))


def test_production_with_secrets_starts_and_writes_no_file(tmp_path):
    state = AppState.build(_production(tmp_path, jwt_secret=SECRET, master_keys=[KEY], audit_keys=[KEY]))
    assert state.settings.signing_key == SECRET
    assert not state.settings.secrets_file.exists()


def test_production_secrets_from_the_environment(tmp_path, monkeypatch):
    other = base64.urlsafe_b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("KMM_ENV", "production")
    monkeypatch.setenv("KMM_JWT_SECRET", SECRET)
    monkeypatch.setenv("KMM_MASTER_KEYS", f"{KEY}, {other}")  # comma-separated, or a JSON list
    monkeypatch.setenv("KMM_AUDIT_KEYS", KEY)
    monkeypatch.setenv("DATABASE_URL", "postgres://kmm:pw@db:5432/kmm")
    monkeypatch.setenv("KMM_CORS_ORIGINS", '["https://app.kmm.example"]')
    s = Settings(secrets_file=tmp_path / "none.json")
    s.require_secrets()
    assert len(s.keyring) == 2 and list(s.keyring.values())[0] == base64.urlsafe_b64decode(KEY)
    assert s.database_url == "postgresql+psycopg://kmm:pw@db:5432/kmm"
    assert s.cors_origins == ["https://app.kmm.example"]
    assert SECRET not in repr(s)  # secrets never show in reprs or logs


def test_development_generates_secrets_once_owner_only(tmp_path, caplog):
    path = tmp_path / "secrets.json"
    caplog.set_level(logging.WARNING, logger="kmm.config")
    first = Settings(env="development", secrets_file=path)
    key, ring = first.signing_key, first.keyring
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r.getMessage() for r in caplog.records] == [
        f"generated local secrets in {path} (development only; production sets KMM_JWT_SECRET, KMM_MASTER_KEYS "
        "and KMM_AUDIT_KEYS)"
    ]
    caplog.clear()
    second = Settings(env="development", secrets_file=path)
    assert second.signing_key == key and second.keyring == ring
    assert caplog.records == []
    assert set(json.loads(path.read_text())) == {"jwt_secret", "master_keys", "audit_keys"}
    assert second.audit_key_list == first.audit_key_list and len(first.audit_key_list[0]) == 32


def test_a_secrets_file_without_an_audit_key_gains_one_once(tmp_path):
    path = tmp_path / "secrets.json"
    older = {"jwt_secret": SECRET, "master_keys": [KEY]}
    path.write_text(json.dumps(older))
    os.chmod(path, 0o600)
    first = Settings(env="development", secrets_file=path)
    (key,) = first.audit_key_list
    assert len(key) == 32
    stored = json.loads(path.read_text())
    assert {k: stored[k] for k in older} == older  # the other secrets untouched
    assert base64.urlsafe_b64decode(stored["audit_keys"][0]) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(env="development", secrets_file=path).audit_key_list == [key]


def test_audit_keys_from_the_environment_and_a_bad_one_refused(tmp_path, monkeypatch):
    other = base64.urlsafe_b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("KMM_AUDIT_KEYS", f"{KEY},{other}")
    s = Settings(secrets_file=tmp_path / "none.json")
    assert s.audit_key_list == [base64.urlsafe_b64decode(KEY), base64.urlsafe_b64decode(other)]
    assert KEY not in repr(s)
    assert not s.secrets_file.exists()
    for bad in ("not base64!!", base64.urlsafe_b64encode(b"16 bytes only...").decode()):
        with pytest.raises(ConfigurationError, match="audit key"):
            _ = Settings(audit_keys=[bad], secrets_file=tmp_path / "none.json").audit_key_list


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_database_urls_get_the_async_driver(tmp_path, given, used):
    assert Settings(database_url=given, secrets_file=tmp_path / "s.json").database_url == used


def test_the_secrets_file_is_git_ignored():
    from tests.conftest import PROJECT_ROOT

    ignored = (PROJECT_ROOT / ".gitignore").read_text().split()
    assert ".kmm-secrets.json" in ignored and ".kmm-demo-logins.json" in ignored


def test_no_proxy_is_trusted_by_default(tmp_path):
    assert Settings(secrets_file=tmp_path / "s.json").trusted_proxies == []


def test_trusted_proxies_from_the_environment_are_addresses_or_networks(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16,  2001:DB8::1 ")
    assert Settings(secrets_file=tmp_path / "s.json").trusted_proxies == ["10.0.0.5", "10.1.0.0/16", "2001:db8::1"]
    for bad in ("*", "proxy.internal", "10.0.0.5, nonsense", "10.0.0.0/33"):
        monkeypatch.setenv("KMM_TRUSTED_PROXIES", bad)
        with pytest.raises(ValueError, match="KMM_TRUSTED_PROXIES"):
            Settings(secrets_file=tmp_path / "s.json")


@pytest.mark.parametrize(("address", "account"), [(20, 20), (25, 20)])
def test_the_address_throttle_must_be_below_the_account_lock(monkeypatch, address, account):
    """Otherwise one client address could lock an account out on its own."""
    monkeypatch.setenv("KMM_LOGIN_ADDRESS_THRESHOLD", str(address))
    monkeypatch.setenv("KMM_LOCKOUT_THRESHOLD", str(account))
    with pytest.raises(ValueError, match="KMM_LOGIN_ADDRESS_THRESHOLD must be below KMM_LOCKOUT_THRESHOLD"):
        Settings()
    monkeypatch.setenv("KMM_LOGIN_ADDRESS_THRESHOLD", str(account - 1))
    assert Settings().login_address_threshold == account - 1
