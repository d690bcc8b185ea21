"""Deciding and withdrawing a request, and the one conditional status change every
transition (fulfilment's too) goes through."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import Conflict
from app.models.access_requests import (
    AccessDecision,
    AccessRequest,
    AccessRequestPublic,
    AccessRequestStatus,
    AccessWithdrawal,
)
from app.policy.actor import Actor
from app.workflows.access_requests.read import load, to_public
from app.workflows.access_requests.rules import DIRECTOR_ONLY, RESOURCE, clause_for, not_about_themself
from app.workflows.audit.trail import add_event

S = AccessRequestStatus


def conflict(request: AccessRequest, to: S) -> Conflict:
    return Conflict(f"a {request.status} request cannot become {to}", type="invalid-transition",
                   current_status=request.status)


async def transition(
    session: AsyncSession, *, request: AccessRequest, to: S, allowed_from: tuple[S, ...], values: dict[str, Any],
    actor: Actor, now: datetime, action: str, rule: str, clause: str,
) -> None:
    """Move ``request`` to ``to`` only if it is still in the status it was read in; audit it.

    The caller commits. A concurrent transition makes the UPDATE match no row: 409.
    """
    if request.status not in allowed_from:
        raise conflict(request, to)
    result = await session.execute(
        update(AccessRequest)
        .where(col(AccessRequest.id) == request.id, col(AccessRequest.status) == request.status)
        .values(status=to, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise Conflict("the request changed meanwhile; fetch it again", type="invalid-transition")
    add_event(session, now=now, actor=actor, action=action, resource_type=RESOURCE, resource_id=request.id,
              decision="allow", rule=rule, clause=clause, detail={"from": request.status, "status": to})


async def finish(session: AsyncSession, request: AccessRequest, now: datetime) -> AccessRequestPublic:
    await session.commit()
    await session.refresh(request)
    return to_public(request, now)


async def decide_request(
    session: AsyncSession, *, request_id: uuid.UUID, data: AccessDecision, actor: Actor, now: datetime
) -> AccessRequestPublic:
    """A director (app.deps.director_only) approves or refuses a received request, with a reason (§3.4)."""
    request, subject_user_id = await load(session, request_id, actor)
    not_about_themself(actor, subject_user_id)
    return await apply_decision(session, request=request, data=data, actor=actor, now=now)


async def apply_decision(
    session: AsyncSession, *, request: AccessRequest, data: AccessDecision, actor: Actor, now: datetime
) -> AccessRequestPublic:
    to = S.approved if data.approve else S.refused
    await transition(session, request=request, to=to, allowed_from=(S.received,), actor=actor, now=now,
                     values={"decided_by": actor.id, "decided_at": now, "decision_reason": data.reason},
                     action="access_request.decide", rule=DIRECTOR_ONLY[0], clause=clause_for(request.kind))
    return await finish(session, request, now)


async def withdraw_request(
    session: AsyncSession, *, request_id: uuid.UUID, data: AccessWithdrawal, actor: Actor, now: datetime
) -> AccessRequestPublic:
    """Whoever may see the request may withdraw it while it is open: directors, the account that
    logged it, and the employee a personnel request is about (their own letter)."""
    request, _ = await load(session, request_id, actor)
    await transition(session, request=request, to=S.withdrawn, allowed_from=(S.received, S.approved),
                     values={"withdrawn_by": actor.id, "withdrawn_at": now, "withdrawal_reason": data.reason},
                     actor=actor, now=now, action="access_request.withdraw", rule="filer-or-director",
                     clause=clause_for(request.kind))
    return await finish(session, request, now)
