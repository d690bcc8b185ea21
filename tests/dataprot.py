"""Helpers for the data-protection tests: raw rows, audit events, settings and keyrings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import SQLModel, col, select

from app.core.config import Settings
from app.core.state import AppState
from app.models.audit import AuditEvent


async def raw_rows(state: AppState, table: str, where: str = "", **params: Any) -> list[dict[str, Any]]:
    """Rows exactly as stored (no type decoding beyond the driver's)."""
    async with state.engine.connect() as conn:
        result = await conn.execute(text(f"SELECT * FROM {table} {where}"), params)
        return [dict(r._mapping) for r in result]


async def all_raw_values(state: AppState) -> Iterator[tuple[str, str, Any]]:
    """(table, column, value) for every value in every table of the metadata."""
    import app.models  # noqa: F401

    found = []
    for table in SQLModel.metadata.sorted_tables:
        for row in await raw_rows(state, table.name):
            found.extend((table.name, k, v) for k, v in row.items())
    return iter(found)


def contains(value: Any, marker: str) -> bool:
    if value is None:
        return False
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return marker.encode() in value
    if isinstance(value, (dict, list)):
        return marker in json.dumps(value)
    return marker in str(value)


async def events(state: AppState, action: str, resource_id: Any = None) -> list[AuditEvent]:
    async with state.sessionmaker() as session:
        query = select(AuditEvent).where(col(AuditEvent.action) == action).order_by(col(AuditEvent.id))
        if resource_id is not None:
            query = query.where(col(AuditEvent.resource_id) == str(resource_id))
        rows = list((await session.execute(query)).scalars())
        session.expunge_all()
        return rows


def settings_with(base: Settings, **overrides: Any) -> Settings:
    """A fresh Settings on the same database (own cached keyring), with overrides."""
    values: dict[str, Any] = {
        "env": "test", "database_url": base.database_url, "database_schema": base.database_schema,
        "secrets_file": base.secrets_file, "argon2_time_cost": base.argon2_time_cost,
        "argon2_memory_kib": base.argon2_memory_kib,
        "database_timeout_seconds": base.database_timeout_seconds,
    }
    values.update(overrides)
    return Settings(**values)


def copy_secrets(base: Settings, directory: Path) -> Path:
    path = directory / "secrets.json"
    path.write_text(base.secrets_file.read_text())
    path.chmod(0o600)
    return path


@contextmanager
def restore_keyring(state: AppState) -> Iterator[None]:
    """Other AppStates built in a test replace the process-wide keyring; put it back."""
    try:
        yield
    finally:
        state.install_keys()


def key_rotation_decode(text_key: str) -> bytes:
    from app.workflows.key_rotation import decode_key

    return decode_key(text_key)
