"""Helpers for the audit-trail tests: counting, and tampering as the database owner."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import func, select, text

from app.core.state import AppState
from app.models.audit import AuditEvent, AuditSeal
from tests.databases import IS_POSTGRES


async def count(state: AppState, model: type[AuditEvent] | type[AuditSeal]) -> int:
    async with state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def event_ids(state: AppState) -> list[int]:
    async with state.sessionmaker() as session:
        return list((await session.execute(select(AuditEvent.id).order_by(AuditEvent.id))).scalars())


async def tamper(state: AppState, sql: str, params: dict[str, Any] | None = None, *, table: str) -> None:
    """Run raw SQL the service never would, past the append-only guard.

    PostgreSQL: as the owner, disable the table's triggers (the append-only one and the
    foreign-key checks), run it, and enable them again in the same transaction.
    SQLite: a plain connection (no foreign-key enforcement, as sqlite3 defaults).
    """
    if IS_POSTGRES:
        async with state.engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER ALL"))
            await conn.execute(text(sql), params or {})
            await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER ALL"))
        return
    path = state.settings.database_url.split(":///", 1)[1]
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(sql, params or {})
    finally:
        db.close()
