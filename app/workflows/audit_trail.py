"""Writing audit events (DESIGN §6).

An event is added to the caller's session, so it commits (or rolls back) with the
change it records. Events never carry record content: only ids, rules and decisions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import client_ip_var, request_id_var
from app.models.audit import AuditEvent
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
