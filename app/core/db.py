"""Async engine and sessions (SQLAlchemy 2 async; psycopg 3 or aiosqlite)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from app.core.config import Settings


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(settings: Settings) -> AsyncEngine:
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if settings.is_sqlite:
        kwargs["connect_args"] = {"timeout": settings.database_timeout_seconds}
    else:
        options = f"-c statement_timeout={int(settings.database_timeout_seconds * 1000 * 6)}"
        if settings.database_schema:
            options += f" -c search_path={settings.database_schema}"
        kwargs["connect_args"] = {
            "connect_timeout": max(1, int(settings.database_timeout_seconds)),
            "options": options,
            "application_name": settings.database_application_name,
        }
        kwargs["pool_size"] = settings.database_pool_size
        kwargs["max_overflow"] = settings.database_pool_size
        kwargs["pool_timeout"] = settings.database_timeout_seconds
        kwargs["pool_recycle"] = 1800
    engine = create_async_engine(settings.database_url, **kwargs)
    if settings.is_sqlite:
        _tune_sqlite(engine)
    return engine


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, for work that is one statement: on PostgreSQL in autocommit mode.

    A single SELECT or INSERT is atomic on its own, so the hot path saves the BEGIN and
    COMMIT round trips (DESIGN §11). SQLite keeps its explicit BEGIN IMMEDIATE (below),
    so there it is the engine itself, and writers must still use ``begin()``.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()
        # Postgres has sha256() built in; the audit chain's verify query needs it here too.
        dbapi_conn.create_function("kmm_sha256_hex", 1, _sql_sha256_hex, deterministic=True)
        # We open transactions ourselves (below), so the driver must not.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every request writes (at least its audit event): take the write lock up front,
        # so two transactions never deadlock upgrading from read to write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of UTF-8 text (the audit chain's hash)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _sql_sha256_hex(text: str | None) -> str | None:
    return None if text is None else sha256_hex(text)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with maker() as session:
        yield session
