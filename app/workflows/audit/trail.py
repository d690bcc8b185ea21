"""Writing audit events (DESIGN §6).

An event is queued on the caller's session and inserted by its commit, so it commits
(or rolls back) with the change it records. Events never carry record content: only ids, rules and decisions.
Nothing here (or anywhere in the service) updates or deletes an event; the sealer in
app/workflows/audit/seal.py chains them after they commit. Events that go with no change of
their own (an allowed read) are written by the group-committing ``AuditWriter`` (app/core).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select

from app.core.audit_writer import AuditWriter
from app.core.context import client_ip_var, request_id_var
from app.core.encrypted import IntegrityFailure
from app.core.pagination import CursorCodec, Page, page_of
from app.models.audit import AuditEvent, AuditEventFilter, AuditEventPublic, AuditSeal
from app.policy.actor import Actor

_PENDING = "kmm_audit_pending"
_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]


__all__ = ["INTEGRITY_ACTION", "INTEGRITY_RESOURCES", "AuditWriter", "EventFields", "add_event", "event_row",
           "integrity_event", "integrity_fields", "list_events"]

INTEGRITY_ACTION = "integrity.failure"

# The resource an encrypted value belongs to, by its table: its integrity failure is an event
# about that resource (the first column of the row's key is the resource's id), so whoever may
# not know of the resource finds no trace of it either (a breach report's, §1.8, §7.1).
INTEGRITY_RESOURCES: dict[str, str] = {
    "records": "record",
    "record_contents": "record",
    "record_shares": "record",
    "disclosures": "disclosure",
    "emergency_grants": "emergency_grant",
    "breach_reports": "breach_report",
    "webhook_subscriptions": "webhook",
}


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


def integrity_fields(failure: IntegrityFailure, actor: Actor | None) -> EventFields:
    """What the event of a stored value that failed its integrity check says (§6.6): who
    asked (None for the service's own work), the resource and column, never content."""
    return {"actor": actor, "resource_type": INTEGRITY_RESOURCES.get(failure.table, failure.table),
            "resource_id": failure.key[0] if failure.key else None, "decision": "deny", "rule": "integrity-check",
            "clause": "§6.6", "detail": {"column": f"{failure.table}.{failure.column}"}}


def integrity_event(failure: IntegrityFailure, *, now: datetime, actor: Actor | None) -> dict[str, Any]:
    """The row of that event, as the caller's (for the group-commit writer)."""
    return event_row(now=now, action=INTEGRITY_ACTION, **integrity_fields(failure, actor))


def add_event(session: AsyncSession, *, now: datetime, action: str, **fields: Unpack[EventFields]) -> None:
    """Queue an event on the session; it is inserted when (and only if) the session commits.

    A plain row (no ORM object) inserted by one Core statement at commit: the audit
    write is on every request's path, and this is its cheapest form.
    """
    session.sync_session.info.setdefault(_PENDING, []).append(event_row(now=now, action=action, **fields))


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
    session: AsyncSession, *, actor: Actor, now: datetime, filters: AuditEventFilter, cursors: CursorCodec,
    cursor: str | None, limit: int,
) -> Page[AuditEventPublic]:
    """Events newest first (by id), each with its seal where the sealer has chained it.

    Never an event about a breach report the actor may not know of (§1.8, §7.1): the
    colleague concerned finds no trace of a report about them here, whatever the filter.
    Nor one about the actor's own personnel file (§3.6), or a list that showed it: who read
    it is the access log's answer, which the employee it is about never gets.
    """
    from app.workflows.audit.access import events_about_own_personnel_file
    from app.workflows.breach_reports.visibility import events_known_to

    query = (
        select(AuditEvent, AuditSeal.seq, AuditSeal.prev_hash, AuditSeal.hash)
        .outerjoin(AuditSeal, col(AuditSeal.event_id) == AuditEvent.id)
        .where(events_known_to(actor), ~events_about_own_personnel_file(actor, now))
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
