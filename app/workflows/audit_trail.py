"""Writing audit events (DESIGN §6).

An event is queued on the caller's session and inserted by its commit, so it commits
(or rolls back) with the change it records. Events never carry record content: only ids, rules and decisions.
Nothing here (or anywhere in the service) updates or deletes an event; the sealer in
app/workflows/audit_chain.py chains them after they commit.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any, TypedDict, Unpack

import psycopg
from sqlalchemy import bindparam, event, insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select

from app.core.context import client_ip_var, request_id_var
from app.core.db import RowSource
from app.core.pagination import CursorCodec, Page, page_of
from app.models.audit import AuditEvent, AuditEventFilter, AuditEventPublic, AuditSeal
from app.policy.actor import Actor

_PENDING = "kmm_audit_pending"
_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]
# Every column an event row (event_row) gives, as named parameters.
_INSERT = insert(_EVENTS).values({name: bindparam(name) for name in (
    "at", "actor_id", "actor_kind", "actor_role", "action", "resource_type", "resource_id", "decision", "rule",
    "clause", "emergency", "request_id", "client_ip", "detail")})


class EventFields(TypedDict, total=False):
    actor: Actor | None
    resource_type: str | None
    resource_id: uuid.UUID | str | None
    decision: str | None
    rule: str | None
    clause: str | None
    emergency: bool
    detail: dict[str, Any] | None


def event_row(*, now: datetime, action: str, **fields: Unpack[EventFields]) -> dict[str, Any]:
    """One audit_events row, with the request id and client address of the current request."""
    actor = fields.get("actor")
    resource_id = fields.get("resource_id")
    return {
        "at": now,
        "actor_id": actor.id if actor else None,
        "actor_kind": actor.kind if actor else None,
        "actor_role": actor.audit_role if actor else None,
        "action": action,
        "resource_type": fields.get("resource_type"),
        "resource_id": str(resource_id) if resource_id is not None else None,
        "decision": fields.get("decision"),
        "rule": fields.get("rule"),
        "clause": fields.get("clause"),
        "emergency": fields.get("emergency", False),
        "request_id": request_id_var.get(),
        "client_ip": client_ip_var.get(),
        "detail": fields.get("detail") or {},
    }


def add_event(session: AsyncSession, *, now: datetime, action: str, **fields: Unpack[EventFields]) -> None:
    """Queue an event on the session; it is inserted when (and only if) the session commits.

    A plain row (no ORM object) inserted by one Core statement at commit: the audit
    write is on every request's path, and this is its cheapest form.
    """
    session.sync_session.info.setdefault(_PENDING, []).append(event_row(now=now, action=action, **fields))


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


@event.listens_for(Session, "before_commit")
def _insert_pending_events(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(insert(_EVENTS), rows)


@event.listens_for(Session, "after_transaction_end")
def _forget_rolled_back_events(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended without a commit
        session.info.pop(_PENDING, None)


async def list_events(
    session: AsyncSession, *, actor: Actor, filters: AuditEventFilter, cursors: CursorCodec, cursor: str | None,
    limit: int,
) -> Page[AuditEventPublic]:
    """Events newest first (by id), each with its seal where the sealer has chained it.

    Never an event about a breach report the actor may not know of (§1.8, §7.1): the
    colleague concerned finds no trace of a report about them here, whatever the filter.
    """
    from app.workflows.breach_reports import events_known_to

    query = (
        select(AuditEvent, AuditSeal.seq, AuditSeal.prev_hash, AuditSeal.hash)
        .outerjoin(AuditSeal, col(AuditSeal.event_id) == AuditEvent.id)
        .where(events_known_to(actor))
        .order_by(col(AuditEvent.id).desc())
        .limit(limit + 1)
    )
    if cursor:
        (before_id,) = cursors.decode("audit-events", cursor)
        query = query.where(col(AuditEvent.id) < before_id)
    if filters.since is not None:
        query = query.where(col(AuditEvent.at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(AuditEvent.at) < filters.until)
    for name in ("actor_id", "resource_type", "resource_id", "action", "decision"):
        value = getattr(filters, name)
        if value is not None:
            query = query.where(getattr(AuditEvent, name) == value)
    rows = (await session.execute(query)).all()
    return page_of(rows, lambda row: AuditEventPublic.model_validate(
        row[0], update={"seq": row[1], "prev_hash": row[2], "hash": row[3]}),
        cursors=cursors, scope="audit-events", limit=limit, key=lambda last: [last[0].id])
