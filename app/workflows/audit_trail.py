"""Writing audit events (DESIGN §6).

An event is queued on the caller's session and inserted by its commit, so it commits
(or rolls back) with the change it records. Events never carry record content: only ids, rules and decisions.
Nothing here (or anywhere in the service) updates or deletes an event; the sealer in
app/workflows/audit_chain.py chains them after they commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select

from app.core.context import client_ip_var, request_id_var
from app.models.audit import AuditEvent, AuditEventFilter, AuditEventPublic, AuditSeal
from app.policy.actor import Actor

_PENDING = "kmm_audit_pending"
_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]


def add_event(
    session: AsyncSession,
    *,
    now: datetime,
    action: str,
    actor: Actor | None = None,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    decision: str | None = None,
    rule: str | None = None,
    clause: str | None = None,
    emergency: bool = False,
    detail: dict[str, Any] | None = None,
) -> None:
    """Queue an event on the session; it is inserted when (and only if) the session commits.

    A plain row (no ORM object) inserted by one Core statement at commit: the audit
    write is on every request's path, and this is its cheapest form.
    """
    session.sync_session.info.setdefault(_PENDING, []).append({
        "at": now,
        "actor_id": actor.id if actor else None,
        "actor_kind": actor.kind if actor else None,
        "actor_role": actor.audit_role if actor else None,
        "action": action,
        "resource_type": resource_type,
        "resource_id": str(resource_id) if resource_id is not None else None,
        "decision": decision,
        "rule": rule,
        "clause": clause,
        "emergency": emergency,
        "request_id": request_id_var.get(),
        "client_ip": client_ip_var.get(),
        "detail": detail or {},
    })


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
    session: AsyncSession, *, filters: AuditEventFilter, limit: int, before_id: int | None = None
) -> list[AuditEventPublic]:
    """Events newest first (by id), each with its seal where the sealer has chained it."""
    query = (
        select(AuditEvent, AuditSeal.seq, AuditSeal.prev_hash, AuditSeal.hash)
        .outerjoin(AuditSeal, col(AuditSeal.event_id) == AuditEvent.id)
        .order_by(col(AuditEvent.id).desc())
        .limit(limit)
    )
    if before_id is not None:
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
    return [
        AuditEventPublic.model_validate(event, update={"seq": seq, "prev_hash": prev_hash, "hash": digest})
        for event, seq, prev_hash, digest in rows
    ]
