"""Running the service: workers from WEB_CONCURRENCY, a plain message when the port is
taken, /metrics summed across workers and behind a token, secrets from *_FILE variables,
and logs that read as lines in development and as JSON in production."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import ConfigurationError, Settings
from app.main import create_app
from tests.conftest import PROJECT_ROOT
from tests.databases import FAST_ARGON2, env_for, fresh_database, migrated_database
from tests.live_server import free_port

METRICS_TOKEN = "a-metrics-token-of-some-length-0123456789"
JWT_SECRET = "jwt-secret-from-a-file-Xq7Lw2Zr9Pk4Vb8Nc3Md6Ft1Hy5Js0Ga"
MASTER_KEY = "3q2-7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs="
AUDIT_KEY = "9Xk2-pQ1AwUHCQsNDxETFRcZGx0fISMlJykrLS8xMzU="


@pytest.fixture
def db(tmp_path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    with fresh_database(tmp_path) as settings:
        yield settings


@pytest.fixture
def migrated_db(tmp_path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """A database at head: `kmm serve` migrates first (tests/test_cli.py), and has nothing to do here."""
    with migrated_database(tmp_path) as settings:
        yield settings


@pytest.fixture
def served(monkeypatch) -> list[dict]:  # type: ignore[type-arg]
    """What `kmm serve` would hand to uvicorn (nothing is started), with the environment then."""
    from app import serving

    calls: list[dict] = []  # type: ignore[type-arg]
    monkeypatch.setattr(serving, "serve", lambda **kw: calls.append(
        {**kw, "multiproc_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR")}))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    return calls


def kmm(settings: Settings, *args: str, **env: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env={**env_for(settings), **env})


# -- workers ---------------------------------------------------------------------------

def test_workers_default_to_web_concurrency(migrated_db, served):
    r = kmm(migrated_db, "serve", "--port", str(free_port()), WEB_CONCURRENCY="3")
    assert r.exit_code == 0, r.output
    assert served[-1]["workers"] == 3
    r = kmm(migrated_db, "serve", "--port", str(free_port()), "--workers", "2", WEB_CONCURRENCY="3")
    assert served[-1]["workers"] == 2  # the flag wins


def test_workers_default_to_one_without_web_concurrency(migrated_db, served):
    r = kmm(migrated_db, "serve", "--port", str(free_port()))
    assert r.exit_code == 0, r.output
    assert served[-1]["workers"] == 1


# -- the port --------------------------------------------------------------------------

@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_taken_port_is_said_plainly_and_nothing_starts(db, served, reuse_port):
    with socket.socket() as taken:
        if reuse_port:  # another `kmm serve --workers 2` listens like this
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            r = kmm(db, "serve", "--port", str(port), "--workers", workers)
            assert r.exit_code == 1, r.output
            assert f"port {port} on 127.0.0.1 is already in use" in r.stderr
            assert "PORT=" in r.stderr
            assert "Traceback" not in r.output
    assert served == []
    assert not db.secrets_file.exists()  # refused before anything else happened


@pytest.mark.slow  # `kmm serve` in a process of its own
def test_make_run_with_a_taken_port_exits_non_zero_with_the_message(tmp_path):
    """The real command in a process of its own, as `make run` runs it."""
    with fresh_database(tmp_path) as settings, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=PROJECT_ROOT,
                           env={**os.environ, **env_for(settings)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


# -- metrics ---------------------------------------------------------------------------

def test_serve_gives_its_workers_a_clean_metrics_directory(migrated_db, served, tmp_path, monkeypatch):
    r = kmm(migrated_db, "serve", "--port", str(free_port()), "--workers", "2")
    assert r.exit_code == 0, r.output
    made = served[-1]["multiproc_dir"]
    assert made and not Path(made).exists()  # a fresh directory, removed when serving ends

    chosen = tmp_path / "metrics"
    chosen.mkdir()
    (chosen / "counter_4242.db").write_bytes(b"stale")
    (chosen / "unrelated.txt").write_text("kept")
    r = kmm(migrated_db, "serve", "--port", str(free_port()), "--workers", "2",
            PROMETHEUS_MULTIPROC_DIR=str(chosen))
    assert r.exit_code == 0, r.output
    assert served[-1]["multiproc_dir"] == str(chosen)
    assert not (chosen / "counter_4242.db").exists()  # a previous run's counts are not carried on
    assert (chosen / "unrelated.txt").exists()


def _count_in_a_worker(directory: Path, route: str) -> None:
    code = ("from app.core.middleware import REQUESTS; "
            f"REQUESTS.labels('GET', {route!r}, '200').inc()")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, check=True, timeout=120)


@pytest.mark.slow  # two worker processes counting
async def test_metrics_sum_every_worker(settings, tmp_path, monkeypatch):
    directory = tmp_path / "metrics"
    directory.mkdir()
    for _ in range(2):  # two workers, each counting one request
        _count_in_a_worker(directory, "/workers-test")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    app = create_app(settings, configure_logs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.get("/metrics")
    assert r.status_code == 200
    assert 'kmm_http_requests_total{method="GET",route="/workers-test",status="200"} 2.0' in r.text


async def _get_metrics(settings: Settings, **headers: str) -> httpx.Response:
    app = create_app(settings, configure_logs=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        return await c.get("/metrics", headers=headers)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {METRICS_TOKEN}", METRICS_TOKEN,
                                    f"Bearer {METRICS_TOKEN}x"])
async def test_metrics_with_a_token_refuse_any_other_caller(settings, header):
    s = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    r = await _get_metrics(s, **({"Authorization": header} if header else {}))
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["type"].endswith("/not-authenticated")
    assert "kmm_http_requests_total" not in r.text and METRICS_TOKEN not in r.text


async def test_metrics_with_the_token(settings):
    s = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    r = await _get_metrics(s, Authorization=f"Bearer {METRICS_TOKEN}")
    assert r.status_code == 200
    assert "kmm_http_requests_total" in r.text


async def test_metrics_in_production_without_a_token_are_not_served(settings):
    s = settings.model_copy(update={"env": "production", "jwt_secret": SecretStr(JWT_SECRET),
                                    "master_keys": [SecretStr(MASTER_KEY)], "audit_keys": [SecretStr(AUDIT_KEY)]})
    r = await _get_metrics(s)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "kmm_http_requests_total" not in r.text


async def test_metrics_in_development_without_a_token_are_open(settings):
    r = await _get_metrics(settings)
    assert r.status_code == 200 and "kmm_http_requests_total" in r.text


# -- secrets from files (Docker secrets) -----------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("KMM_") or name.startswith("DATABASE_URL"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_secrets_come_from_files(clean_env, tmp_path):
    (tmp_path / "jwt").write_text(JWT_SECRET + "\n")
    (tmp_path / "keys").write_text(MASTER_KEY + "\n")
    (tmp_path / "url").write_text("postgresql://kmm:pw@db:5432/kmm\n")
    (tmp_path / "metrics").write_text(METRICS_TOKEN)
    (tmp_path / "audit").write_text(AUDIT_KEY + "\n")
    clean_env.setenv("KMM_AUDIT_KEYS_FILE", str(tmp_path / "audit"))
    clean_env.setenv("KMM_JWT_SECRET_FILE", str(tmp_path / "jwt"))
    clean_env.setenv("KMM_MASTER_KEYS_FILE", str(tmp_path / "keys"))
    clean_env.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
    clean_env.setenv("KMM_METRICS_TOKEN_FILE", str(tmp_path / "metrics"))
    s = Settings(env="production", **FAST_ARGON2 | {"argon2_time_cost": 3, "argon2_memory_kib": 65536})
    assert s.jwt_secret is not None and s.jwt_secret.get_secret_value() == JWT_SECRET
    assert [k.get_secret_value() for k in s.master_keys] == [MASTER_KEY]
    assert s.database_url == "postgresql+psycopg://kmm:pw@db:5432/kmm"
    assert s.metrics_token is not None and s.metrics_token.get_secret_value() == METRICS_TOKEN
    assert [k.get_secret_value() for k in s.audit_keys] == [AUDIT_KEY]
    s.require_secrets()  # production has what it needs


def test_a_production_cli_run_with_secrets_in_files(db, tmp_path):
    (tmp_path / "jwt").write_text(JWT_SECRET + "\n")
    (tmp_path / "keys").write_text(MASTER_KEY + "\n")
    (tmp_path / "audit").write_text(AUDIT_KEY + "\n")
    r = kmm(db, "migrate", KMM_ENV="production", KMM_ALLOW_SQLITE_IN_PRODUCTION="true",
            KMM_ARGON2_TIME_COST="3", KMM_ARGON2_MEMORY_KIB="65536",
            KMM_JWT_SECRET_FILE=str(tmp_path / "jwt"), KMM_MASTER_KEYS_FILE=str(tmp_path / "keys"),
            KMM_AUDIT_KEYS_FILE=str(tmp_path / "audit"))
    assert r.exit_code == 0, r.output
    assert not db.secrets_file.exists()  # nothing generated: the files were read


def test_a_missing_secret_file_is_named_without_contents(clean_env, tmp_path):
    clean_env.setenv("KMM_JWT_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match=r"KMM_JWT_SECRET_FILE: cannot read .*absent"):
        Settings()


def test_a_secret_and_its_file_together_are_refused(clean_env, tmp_path):
    (tmp_path / "jwt").write_text(JWT_SECRET)
    clean_env.setenv("KMM_JWT_SECRET_FILE", str(tmp_path / "jwt"))
    clean_env.setenv("KMM_JWT_SECRET", "another-secret-value-that-is-long-enough-0123")
    with pytest.raises(ConfigurationError) as info:
        Settings()
    assert "KMM_JWT_SECRET and KMM_JWT_SECRET_FILE" in str(info.value)
    assert JWT_SECRET not in str(info.value) and "another-secret" not in str(info.value)


def test_the_cli_says_which_secret_file_it_cannot_read(db, tmp_path):
    r = kmm(db, "migrate", KMM_MASTER_KEYS_FILE=str(tmp_path / "absent"))
    assert r.exit_code == 2
    assert "KMM_MASTER_KEYS_FILE: cannot read" in r.stderr
    assert "Traceback" not in r.output


# -- logs ------------------------------------------------------------------------------

@pytest.fixture
def log_capture(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield capsys
    root.handlers, root.level = saved[0], saved[1]


def _one_line(settings: Settings, capture) -> str:  # type: ignore[no-untyped-def]
    from app.core.logging import configure_logging

    configure_logging(settings.log_level, json_lines=settings.logs_as_json)
    logging.getLogger("kmm.test").warning("sweep stopped", extra={"sweep_id": "s-1", "destroyed": 3})
    err = capture.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_development_logs_read_as_lines(log_capture):
    line = _one_line(Settings(env="development"), log_capture)
    assert not line.startswith("{")
    assert "WARNING" in line and "kmm.test" in line and "sweep stopped" in line
    assert "sweep_id=s-1" in line and "destroyed=3" in line


def test_production_logs_are_json(log_capture):
    line = _one_line(Settings(env="production"), log_capture)
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["msg"] == "sweep stopped"
    assert entry["sweep_id"] == "s-1" and entry["destroyed"] == 3


@pytest.mark.parametrize(("env", "flag", "as_json"), [("development", "true", True), ("production", "false", False)])
def test_kmm_log_json_overrides_the_default(log_capture, monkeypatch, env, flag, as_json):
    monkeypatch.setenv("KMM_LOG_JSON", flag)
    line = _one_line(Settings(env=env), log_capture)
    assert line.startswith("{") is as_json


