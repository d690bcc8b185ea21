"""Running Alembic from the service and checking the schema is at head.

The migration scripts ship inside the package (``app/migrations``), so an installed wheel
migrates as well as a checkout does. ``upgrade`` holds a lock for its whole run: replicas
that start together migrate one after the other, and the later ones find the schema at head.
On PostgreSQL the lock is a session advisory lock (per database and schema); on SQLite an
exclusive ``flock`` on the database file's directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from app.core.config import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    with migration_lock(settings):
        command.upgrade(alembic_config(settings), revision)


@contextlib.contextmanager
def migration_lock(settings: Settings) -> Iterator[None]:
    """Held while migrating: one migration at a time per database (and Postgres schema)."""
    if settings.is_sqlite:
        database = make_url(settings.database_url).database
        if not database or database == ":memory:":
            yield
            return
        fd = os.open(Path(database).resolve().parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
        return
    connect_args = {"connect_timeout": max(1, int(settings.database_timeout_seconds)),
                    "application_name": settings.database_application_name}
    engine = create_engine(settings.database_url, poolclass=NullPool, connect_args=connect_args)
    key = f"kmm-records migrate {settings.database_schema or ''}"
    try:
        with engine.connect() as conn:
            # Waits for a replica that is migrating; the session's end releases it too.
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": key})
                conn.commit()
    finally:
        engine.dispose()


@lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config(Settings()))
    return frozenset(script.get_heads())


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The revisions the database is at; empty when it was never migrated."""
    async with engine.connect() as conn:
        if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return frozenset()
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(r[0] for r in rows)
