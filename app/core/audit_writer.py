"""The group commit of audit events that go with no change of their own (DESIGN §11).

``AppState`` holds one writer per process; app/workflows/audit/trail.py builds the rows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from sqlalchemy import bindparam, insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.core.db import RowSource
from app.models.audit import AuditEvent

_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]
# Every column an event row (event_row) gives, as named parameters.
_INSERT = insert(_EVENTS).values({name: bindparam(name) for name in (
    "at", "actor_id", "actor_kind", "actor_role", "action", "resource_type", "resource_id", "decision", "rule",
    "clause", "emergency", "request_id", "client_ip", "detail")})


class AuditWriter:
    """Group commit for events that go with no change of their own (an allowed read).

    ``await write(row)`` returns once the row is committed, so nothing is released before
    its event is durable. Rows that arrive while an INSERT is in flight wait for the next
    one: under load many requests share one statement and one commit (DESIGN §11),
    and a lone request waits for just its own. If a batch's INSERT fails, its rows are
    tried again one by one, so a row the database refuses fails only its own request;
    when the database itself is unavailable nothing is retried and every request in the
    batch gets the error (503). A request whose event is not committed never gets its content.
    """

    MAX_BATCH = 500

    def __init__(self, rows: RowSource) -> None:
        self._rows = rows
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, row: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH:]
                try:
                    await self._rows.insert_many(_INSERT, [row for row, _ in batch])
                except Exception as exc:
                    if len(batch) == 1 or _unavailable(exc):
                        _settle(batch, exc)
                    else:
                        await self._one_by_one(batch)
                else:
                    _settle(batch, None)
        finally:
            self._flusher = None

    async def _one_by_one(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        for i, (row, future) in enumerate(batch):
            try:
                await self._rows.insert_many(_INSERT, [row])
            except Exception as exc:
                if _unavailable(exc):  # the database went away: the rest fail with it
                    _settle(batch[i:], exc)
                    return
                _settle([(row, future)], exc)
            else:
                _settle([(row, future)], None)


def _unavailable(exc: Exception) -> bool:
    """The database (or a connection to it) failed, rather than refusing a row."""
    return isinstance(exc, OperationalError | PoolTimeoutError | psycopg.OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _settle(batch: list[tuple[dict[str, Any], asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():  # its request went away; the event stands regardless
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
