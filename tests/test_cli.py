"""The `kmm` command: migrate, create-user (DESIGN §10), seed-demo, and refusing to
start without production secrets. Runs in-process with an environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import func, inspect, select, text
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings
from app.core.migrations import head_revisions
from app.demo import PEOPLE, email_for
from app.models.users import User
from tests.conftest import PROJECT_ROOT
from tests.databases import env_for, fresh_database, migrated_database, sync_engine

PASSWORD = "a long enough password"


@pytest.fixture
def db(tmp_path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    with fresh_database(tmp_path) as settings:
        yield settings


@pytest.fixture
def migrated_db(tmp_path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    with migrated_database(tmp_path) as settings:
        yield settings


def kmm(settings: Settings, *args: str, input: str | None = None, **env: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), input=input, env={**env_for(settings), **env})


def _users(settings: Settings) -> list[tuple[str, str, str | None, str | None]]:
    engine = sync_engine(settings)
    with engine.connect() as conn:
        rows = conn.execute(select(User.email, User.role, User.staff_type, User.line_manager_id)
                            .order_by(User.email)).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _count(settings: Settings) -> int:
    engine = sync_engine(settings)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(User)).scalar_one()
    engine.dispose()
    return n


def test_migrate_brings_a_fresh_database_to_head(db):
    r = kmm(db, "migrate")
    assert r.exit_code == 0, r.output
    assert "migrated" in r.stdout
    engine = sync_engine(db)
    with engine.connect() as conn:
        assert "users" in inspect(conn).get_table_names()
        assert {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))} == head_revisions()
    engine.dispose()
    assert kmm(db, "migrate").exit_code == 0  # again: nothing to do


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite:///{tmp}/missing/dir/x.db", "the directory of {tmp}/missing/dir/x.db does not exist"),
        ("postgresql://kmm@127.0.0.1:1/kmm", "connection failed"),  # nothing listens on port 1
    ],
    ids=["sqlite-missing-dir", "postgres-closed-port"],
)
@pytest.mark.slow  # the real `kmm` process: it waits out the database timeout
def test_migrate_an_unreachable_database_says_so(tmp_path, url, reason):
    # A process of its own, as an operator would run it, exit code and all.
    s = Settings(env="test", database_url=url.format(tmp=tmp_path), secrets_file=tmp_path / "s.json")
    r = subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                       env={**os.environ, **env_for(s)}, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "cannot migrate the database: " + reason.format(tmp=tmp_path) in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_create_user_from_stdin_with_a_line_manager(migrated_db):
    r = kmm(migrated_db, "create-user", "--email", "Boss@KMM.example.org", "--name", "The Boss", "--role", "director",
            "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "created director boss@kmm.example.org" in r.stdout
    assert PASSWORD not in r.output
    r = kmm(migrated_db, "create-user", "--email", "vol@kmm.example.org", "--name", "A Volunteer",
            "--role", "colleague", "--line-manager", "BOSS@kmm.example.org", "--staff-type", "volunteer",
            "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    users = _users(migrated_db)
    assert [(u[0], u[1], u[2]) for u in users] == [("boss@kmm.example.org", "director", None),
                                                   ("vol@kmm.example.org", "colleague", "volunteer")]
    assert users[1][3] is not None  # line-managed by the boss
    # The password read from stdin is the one that works.
    from app.core.security import Passwords

    engine = sync_engine(migrated_db)
    with engine.connect() as conn:
        hashed = conn.execute(select(User.password_hash).where(User.email == "vol@kmm.example.org")).scalar_one()
    engine.dispose()
    assert Passwords(migrated_db).verify(PASSWORD, hashed)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--role", "superuser"], PASSWORD, "role"),
        (["--role", "colleague", "--staff-type", "contractor"], PASSWORD, "staff_type"),
        (["--role", "colleague", "--line-manager", "nobody@kmm.example.org"], PASSWORD, "line_manager"),
        (["--role", "colleague"], "too short", "password"),
        (["--role", "colleague"], " " * 16, "password: must not be only spaces"),
        (["--role", "colleague"], "Password1234", "password: is one of the most common passwords"),
        (["--role", "colleague"], "", "a password is required"),
    ],
)
def test_create_user_refuses_bad_input_and_creates_nothing(migrated_db, args, stdin, message):
    r = kmm(migrated_db, "create-user", "--email", "x@kmm.example.org", "--name", "X", *args, "--password-stdin",
            input=stdin + "\n")
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert stdin not in r.output or not stdin
    assert _count(migrated_db) == 0


def test_create_user_refuses_a_duplicate_email(migrated_db):
    base = ["create-user", "--name", "X", "--role", "colleague", "--password-stdin"]
    assert kmm(migrated_db, *base, "--email", "x@kmm.example.org", input=PASSWORD).exit_code == 0
    r = kmm(migrated_db, *base, "--email", "X@KMM.example.org", input=PASSWORD)
    assert r.exit_code == 2 and "email" in r.stderr and "already exists" in r.stderr
    assert _count(migrated_db) == 1


@pytest.mark.slow  # seeds the whole demo organisation, twice
def test_seed_demo_is_idempotent_and_prints_the_logins(db):
    assert kmm(db, "migrate").exit_code == 0
    first = kmm(db, "seed-demo")
    assert first.exit_code == 0, first.output
    second = kmm(db, "seed-demo")
    assert second.exit_code == 0, second.output
    assert first.stdout == second.stdout
    for key, *_ in PEOPLE:
        assert email_for(key) in first.stdout
    users = _users(db)
    assert len(users) == len(PEOPLE)
    roles = [u[1] for u in users]
    assert roles.count("director") == 1 and roles.count("trustee") == 1
    assert {u[2] for u in users if u[1] == "colleague"} == {"employee", "volunteer", "intern"}
    # The printed password logs in.
    line = next(x for x in first.stdout.splitlines() if email_for("director") in x)
    password = line.split()[2]
    from app.core.security import Passwords

    engine = sync_engine(db)
    with engine.connect() as conn:
        hashed = conn.execute(select(User.password_hash).where(User.email == email_for("director"))).scalar_one()
    engine.dispose()
    assert Passwords(db).verify(password, hashed)


@pytest.mark.parametrize("command", [["migrate"], ["serve"], ["seed-demo"],
                                     ["create-user", "--email", "a@b.org", "--name", "A", "--role", "director",
                                      "--password", PASSWORD]])
def test_production_without_secrets_exits_2_with_the_reason(db, command):
    r = kmm(db, *command, KMM_ENV="production")
    assert r.exit_code == 2, r.output
    assert "KMM_ENV=production needs KMM_JWT_SECRET, KMM_MASTER_KEYS" in r.stderr
    assert not db.secrets_file.exists()


def test_serve_trusts_forwarded_headers_only_from_the_configured_proxies(db, monkeypatch):
    from app import serving

    calls: list[dict] = []  # type: ignore[type-arg]
    monkeypatch.setattr(serving, "serve", lambda **kw: calls.append(kw))
    r = kmm(db, "serve", "--port", "0", KMM_TRUSTED_PROXIES="10.0.0.5,10.1.0.0/16")
    assert r.exit_code == 0, r.output
    assert calls[-1]["trusted_proxies"] == ["10.0.0.5", "10.1.0.0/16"]


def test_serve_migrates_first_then_runs_uvicorn(db, monkeypatch):
    from app import serving

    calls: list[dict] = []  # type: ignore[type-arg]
    monkeypatch.setattr(serving, "serve", lambda **kw: calls.append(kw))
    r = kmm(db, "serve", "--host", "0.0.0.0", "--port", "8123", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert calls == [{"host": "0.0.0.0", "port": 8123, "workers": 2, "trusted_proxies": []}]
    engine = sync_engine(db)
    with engine.connect() as conn:
        assert {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))} == head_revisions()
    engine.dispose()
    assert db.secrets_file.exists()  # generated before the workers start, so they share it


def test_create_client_prints_the_secret_once(migrated_db):
    from app.models.service_clients import ServiceClient

    r = kmm(migrated_db, "create-client", "--name", "Funder reports", "--scope", "reports:read",
            "--scope", "subjects:read")
    assert r.exit_code == 0, r.output
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    assert lines["client_id"].startswith("kmm-") and len(lines["client_secret"]) >= 40
    assert r.stdout.count(lines["client_secret"]) == 1
    engine = sync_engine(migrated_db)
    with engine.connect() as conn:
        row = conn.execute(select(ServiceClient.name, ServiceClient.scopes, ServiceClient.secret_hash)).one()
    engine.dispose()
    assert row.name == "Funder reports" and sorted(row.scopes) == ["reports:read", "subjects:read"]
    assert lines["client_secret"] not in row.secret_hash


def test_create_client_refuses_an_unknown_scope(migrated_db):
    from app.models.service_clients import ServiceClient

    r = kmm(migrated_db, "create-client", "--name", "X", "--scope", "records:destroy")
    assert r.exit_code == 2 and "records:destroy" in r.stderr
    assert "reports:read" in r.stderr  # says which scopes exist
    engine = sync_engine(migrated_db)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ServiceClient)).scalar_one() == 0
    engine.dispose()
