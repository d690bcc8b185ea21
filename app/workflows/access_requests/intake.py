"""Logging a letter the Director received (§3.4, §3.6): refused letters are audited, never stored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import Conflict, Invalid, field_error
from app.models.access_requests import AccessRequest, AccessRequestCreate, AccessRequestPublic, AccessRequestStatus
from app.models.subjects import Subject
from app.policy.actor import Actor
from app.workflows.access_requests.deadlines import due_for
from app.workflows.access_requests.read import to_public, visible_sql
from app.workflows.access_requests.rules import RESOURCE, clause_for, require_staff, who_may_ask
from app.workflows.audit.trail import add_event
from app.workflows.webhooks import outbox

S = AccessRequestStatus


async def log_request(
    session: AsyncSession, *, data: AccessRequestCreate, actor: Actor, now: datetime
) -> AccessRequestPublic:
    """Log a letter received by the Director; refused letters are audited, never stored."""
    require_staff(actor)
    if data.received_at > now:
        raise field_error("received_at", "the Director cannot have received it in the future")
    subject = await session.get(Subject, data.subject_id)
    if subject is None:
        raise field_error("subject_id", "no such subject")
    if data.requester_subject_id != subject.id and await session.get(Subject, data.requester_subject_id) is None:
        raise field_error("requester_subject_id", "no such subject")
    refusal = who_may_ask(data, subject)
    if refusal is not None:
        add_event(session, now=now, actor=actor, action="access_request.create", resource_type=RESOURCE,
                  decision="deny", rule=refusal.rule, clause=refusal.clause,
                  detail={"kind": data.kind, "subject_id": str(subject.id)})
        await session.commit()
        raise Invalid(refusal.reason, type="policy-denied", rule=refusal.rule, clause=refusal.clause)
    await _refuse_duplicate(session, subject_id=subject.id, letter_reference=data.letter_reference, actor=actor)
    request = AccessRequest(
        kind=data.kind,
        subject_id=subject.id,
        requester_subject_id=data.requester_subject_id,
        signed_by=data.signed_by,
        signatory_capacity=data.signatory_capacity,
        in_writing=True,
        letter_reference=data.letter_reference,
        received_at=data.received_at,
        due_at=due_for(data.received_at),
        status=S.received,
        logged_by=actor.id,
        created_at=now,
    )
    session.add(request)
    await session.flush()
    add_event(session, now=now, actor=actor, action="access_request.create", resource_type=RESOURCE,
              resource_id=request.id, decision="allow", rule="signatory", clause=clause_for(request.kind),
              detail={"kind": request.kind, "subject_id": str(subject.id), "status": request.status})
    await outbox.access_request_received(session, request=request, now=now)
    await session.commit()
    return to_public(request, now)


async def _refuse_duplicate(session: AsyncSession, *, subject_id: uuid.UUID, letter_reference: str,
                            actor: Actor) -> None:
    """One letter is one request (§3.4): the same reference (case and surrounding spaces aside)
    for the same subject, unless that request was withdrawn, is a duplicate (409). The refusal
    names the request only to whoever may see it; anyone else, holding the same letter, learns
    only that it is logged.
    On PostgreSQL the check holds a lock per subject until the transaction ends, so two
    loggings of one letter at once cannot both pass it (SQLite writes one at a time)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                              {"name": f"kmm-access-letter:{subject_id}"})
    existing = (await session.execute(
        select(AccessRequest.id, visible_sql(actor)).where(
            col(AccessRequest.subject_id) == subject_id,
            func.lower(func.trim(col(AccessRequest.letter_reference))) == letter_reference.strip().lower(),
            col(AccessRequest.status) != S.withdrawn.value,
        ).limit(1)
    )).first()
    if existing is not None:
        named: dict[str, Any] = {"existing_id": str(existing[0])} if existing[1] else {}
        raise Conflict("this letter is already logged for this subject", type="duplicate-request",
                       rule="one-letter-one-request", clause="§3.4", **named)
