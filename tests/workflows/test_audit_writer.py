"""The group-commit audit writer (AuditWriter): one bad row fails only its own request."""

from __future__ import annotations

import asyncio

from sqlmodel import col, select

from app.models.audit import AuditEvent
from app.workflows.audit.trail import AuditWriter, event_row


async def _actions(state) -> list[str]:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as session:
        return list((await session.execute(select(AuditEvent.action).order_by(col(AuditEvent.id)))).scalars())


async def test_a_bad_row_fails_only_its_own_write(client, state):
    writer = AuditWriter(state.rows)
    now = state.clock.now()
    good = [event_row(now=now, action=f"test.good{i}") for i in range(3)]
    bad = {**event_row(now=now, action="test.bad"), "action": None}  # NOT NULL: refused on every database
    # All four are queued before the writer runs, so they share one batch.
    results = await asyncio.gather(writer.write(good[0]), writer.write(bad), writer.write(good[1]),
                                   writer.write(good[2]), return_exceptions=True)
    assert results[0] is None and results[2] is None and results[3] is None, results
    assert isinstance(results[1], Exception)
    assert await _actions(state) == ["test.good0", "test.good1", "test.good2"]


async def test_a_batch_of_good_rows_is_one_statement(client, state, monkeypatch):
    writer = AuditWriter(state.rows)
    calls: list[int] = []
    insert_many = state.rows.insert_many

    async def counting(stmt, rows):  # type: ignore[no-untyped-def]
        calls.append(len(rows))
        await insert_many(stmt, rows)

    monkeypatch.setattr(state.rows, "insert_many", counting)
    now = state.clock.now()
    await asyncio.gather(*(writer.write(event_row(now=now, action=f"test.ok{i}")) for i in range(5)))
    assert calls == [5]
    assert len(await _actions(state)) == 5


async def test_when_the_database_is_down_the_batch_is_not_retried_row_by_row(client, state, monkeypatch):
    from sqlalchemy.exc import OperationalError

    writer = AuditWriter(state.rows)
    calls: list[int] = []

    async def down(stmt, rows):  # type: ignore[no-untyped-def]
        calls.append(len(rows))
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(state.rows, "insert_many", down)
    now = state.clock.now()
    results = await asyncio.gather(*(writer.write(event_row(now=now, action=f"test.x{i}")) for i in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, OperationalError) for r in results)
    assert calls == [4]
