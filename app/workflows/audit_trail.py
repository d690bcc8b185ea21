"""Writing audit events (DESIGN §6).

An event is added to the caller's session, so it commits (or rolls back) with the
change it records. Events never carry record content: only ids, rules and decisions.
Nothing here (or anywhere in the service) updates or deletes an event; the sealer in
app/workflows/audit_chain.py chains them after they commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.context import client_ip_var, request_id_var
from app.models.audit import AuditEvent, AuditEventFilter, AuditEventPublic, AuditSeal
from app.policy.actor import Actor


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
) -> AuditEvent:
    event = AuditEvent(
        at=now,
        actor_id=actor.id if actor else None,
        actor_kind=actor.kind if actor else None,
        actor_role=actor.audit_role if actor else None,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        decision=decision,
        rule=rule,
        clause=clause,
        emergency=emergency,
        request_id=request_id_var.get(),
        client_ip=client_ip_var.get(),
        detail=detail or {},
    )
    session.add(event)
    return event


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
