"""Alembic environment: reads the app's settings; async engine; batch mode on SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table)
from app.core.config import Settings
from app.core.db import make_engine

config = context.config
settings: Settings = config.attributes.get("settings") or Settings()
target_metadata = SQLModel.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )


def _pragma(connection: Connection, pragma: str) -> list[Any]:
    """A pragma on the driver's connection, outside any transaction (the engine begins
    every transaction with BEGIN IMMEDIATE, inside which foreign_keys cannot change)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA {pragma}")
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by copy, drop and rename; with foreign keys enforced,
        # dropping a table that other rows point at fails. Off for the migration (the pragma
        # only takes effect outside a transaction), then every key is checked.
        _pragma(connection, "foreign_keys=OFF")
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = _pragma(connection, "foreign_key_check")
        _pragma(connection, "foreign_keys=ON")
        if broken:
            raise RuntimeError(f"the migration left {len(broken)} rows whose foreign keys point nowhere")


async def _run_async() -> None:
    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(url=settings.database_url, target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=settings.is_sqlite)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
