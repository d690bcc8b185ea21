"""Fresh, empty databases on the backend under test, for tests that need their own
(migrations, readiness, the CLI): a SQLite file, or a new Postgres schema.

SQLAlchemy and the settings are imported where used: tests/conftest.py imports this
module in pytest-xdist's controller too, which runs no test."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.core.config import Settings

# The backend the whole suite runs on; every test module imports these two from here.
BACKEND = os.environ.get("KMM_TEST_BACKEND", "sqlite")
IS_POSTGRES = BACKEND == "postgres"

# Still argon2, at the least cost it allows: one pass over 8 KiB (one lane).
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8}


def sync_url(settings: Settings) -> str:
    return settings.database_url.replace("+aiosqlite", "")


def sync_engine(settings: Settings) -> Engine:
    from sqlalchemy import create_engine

    args: dict[str, Any] = {}
    if settings.database_schema:
        args["options"] = f"-c search_path={settings.database_schema}"
    return create_engine(sync_url(settings), connect_args=args)


@contextmanager
def fresh_database(tmp: Path, **overrides: Any) -> Iterator[Settings]:
    """Settings for an empty database of its own; dropped afterwards on Postgres."""
    from sqlalchemy import create_engine, text

    from app.core.config import Settings

    schema = None
    if IS_POSTGRES:
        url = os.environ["TEST_DATABASE_URL"]
        schema = f"kmm_fresh_{uuid.uuid4().hex[:10]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    else:
        url = f"sqlite:///{tmp / 'fresh.db'}"
    settings = Settings(env="test", database_url=url, database_schema=schema,
                        secrets_file=tmp / "secrets.json", **{**FAST_ARGON2, **overrides})
    try:
        yield settings
    finally:
        if IS_POSTGRES:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


@contextmanager
def migrated_database(tmp: Path, **overrides: Any) -> Iterator[Settings]:
    """Settings for a database of its own at the latest migration, for tests of what runs on
    one (the CLI's commands, serving): on SQLite a copy of one this process migrated once,
    on Postgres a new schema, migrated. Tests of migrating itself start from fresh_database."""
    from sqlalchemy.engine import make_url

    from app.core.files import create_private
    from app.core.migrations import upgrade

    with fresh_database(tmp, **overrides) as settings:
        if IS_POSTGRES:
            upgrade(settings)
        else:
            target = Path(str(make_url(settings.database_url).database))
            create_private(target)  # owner-only, as the service makes a new database file
            with closing(sqlite3.connect(_migrated_sqlite())) as source, closing(sqlite3.connect(target)) as copy:
                source.backup(copy)
        yield settings


@functools.cache
def _migrated_sqlite() -> Path:
    """An empty SQLite database at the latest migration, made once a process (secrets play
    no part: the migrations of an empty database write no encrypted value)."""
    from app.core.migrations import upgrade

    where = Path(tempfile.mkdtemp(prefix="kmm-migrated-"))
    atexit.register(shutil.rmtree, where, True)
    with fresh_database(where) as settings:
        upgrade(settings)
    return where / "fresh.db"


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that makes the `kmm` command use these settings."""
    env = {
        "DATABASE_URL": settings.database_url,
        "KMM_SECRETS_FILE": str(settings.secrets_file),
        "KMM_ENV": settings.env,
        "KMM_ARGON2_TIME_COST": str(settings.argon2_time_cost),
        "KMM_ARGON2_MEMORY_KIB": str(settings.argon2_memory_kib),
    }
    if settings.database_schema:
        env["KMM_DATABASE_SCHEMA"] = settings.database_schema
    return env
