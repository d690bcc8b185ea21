"""Who accessed these records, read from the audit trail: the one answer behind a record's
access log (GET /records/{id}/access-log) and an access package's history (DESIGN §5, §6).

An access is an allowed read of the record (``record.read``), an export of it in a fulfilled
access request (``record.export``), or a list that showed it (``record.list``). Reads and
exports are events about the record itself, found by the events' resource index; a list
event names every record it showed in its detail, and ``audit_event_records`` indexes those
ids (written by the database with the event), so neither question scans events' JSON.
Only ids, actors, rules and times come back: never anything a record says. Each caller
asks in the shape it shows (app/models/audit.py, ``RecordAccess``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, false, func, or_, union_all
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.db import id_text, uuid_text
from app.core.errors import PolicyDenied
from app.core.pagination import CursorCodec, page_of
from app.models.audit import AuditEvent, AuditEventRecord, RecordAccess
from app.models.emergency_grants import EmergencyGrant
from app.models.records import AccessLog, AccessLogEntry, Record
from app.models.users import User
from app.policy.actor import Actor
from app.policy.decide import decide, exclusion, exclusions_sql
from app.policy.rules import Action
from app.workflows.audit.trail import add_event
from app.workflows.emergency_grants import over_own_personnel_file
from app.workflows.records.queries import load_record

# Events about one record that show it to someone.
SHOWING = ("record.read", "record.export")

A = TypeVar("A", bound=RecordAccess)


def _branches(ids: list[str], *, before: int | None, limit: int | None) -> list[Select[Any]]:
    direct: Any = sa_select(col(AuditEvent.id).label("event_id"), col(AuditEvent.resource_id).label("record_id")).where(
        col(AuditEvent.resource_type) == "record", col(AuditEvent.resource_id).in_(ids),
        col(AuditEvent.action).in_(SHOWING), col(AuditEvent.decision) == "allow")
    listed = sa_select(col(AuditEventRecord.event_id), col(AuditEventRecord.record_id)).where(
        col(AuditEventRecord.record_id).in_(ids))
    out: list[Select[Any]] = []
    sides: tuple[tuple[Any, Any], ...] = ((direct, col(AuditEvent.id)), (listed, col(AuditEventRecord.event_id)))
    for branch, event_id in sides:
        if before is not None:
            branch = branch.where(event_id < before)
        if limit is not None:  # each side stops at the page too, walking its index from the newest
            sub = branch.order_by(event_id.desc()).limit(limit).subquery()
            branch = sa_select(sub.c.event_id, sub.c.record_id)
        out.append(branch)
    return out


async def record_accesses(
    session: AsyncSession, record_ids: Sequence[uuid.UUID], shape: type[A], *, newest_first: bool,
    limit: int | None = None, before: int | None = None,
) -> list[A]:
    """Every access to any of ``record_ids``, one entry per record and event, in ``shape``
    (which takes what it shows of event_id, record_id, actor_name and the access).

    Newest first (by event id; ``before`` and ``limit`` page it), or oldest first by time.
    """
    if not record_ids:
        return []
    ids = [str(i) for i in record_ids]
    accessed = union_all(*_branches(ids, before=before, limit=limit)).subquery("accessed")
    query = (
        sa_select(accessed.c.event_id, accessed.c.record_id, col(AuditEvent.at), col(AuditEvent.action),
                  col(AuditEvent.actor_id), col(User.full_name).label("actor_name"), col(AuditEvent.actor_role),
                  col(AuditEvent.rule), col(AuditEvent.clause), col(AuditEvent.emergency))
        .join(AuditEvent, col(AuditEvent.id) == accessed.c.event_id)
        .outerjoin(User, col(User.id) == AuditEvent.actor_id)
    )
    if newest_first:
        query = query.order_by(accessed.c.event_id.desc())
    else:
        query = query.order_by(col(AuditEvent.at), accessed.c.event_id, accessed.c.record_id)
    if limit is not None:
        query = query.limit(limit)
    return [shape.model_validate(row, from_attributes=True) for row in (await session.execute(query)).all()]


def events_about_own_personnel_file(actor: Actor, now: datetime) -> ColumnElement[bool]:
    """Audit events about a record the actor is kept from whatever else they are: their own
    personnel file (§3.6). The trail's answer to who read it, listed it or exported it, when
    and by which rule, is the access log's, which the employee it is about never sees, a
    director included: every event about such a record (``resource_type`` record), every
    list event that showed one (by ``audit_event_records``; the whole event, since its other
    ids and count say what the list was), and every event about an emergency grant over one
    (§4.5: issued or revoked; a grant over such a record, or over a subject linked to the actor,
    whose grant covers their personnel file whether it holds one yet or not, so that nothing
    changes when one is made). False for an actor no exclusion holds for.

    Two uncorrelated subqueries over the few excluded records, which the planner runs once
    each: the list of the trail still filters in SQL before it is cut, by key on both sides.
    """
    excluded = exclusions_sql(actor, now)
    if excluded is None:
        return false()
    about = sa_select(id_text(col(Record.id))).where(excluded).scalar_subquery()
    named = sa_select(uuid_text(col(Record.id))).where(excluded).scalar_subquery()
    listed = sa_select(col(AuditEventRecord.event_id)).where(col(AuditEventRecord.record_id).in_(named))
    own_file_grants = over_own_personnel_file(actor, now)
    assert own_file_grants is not None  # the same exclusions hold
    grants = sa_select(id_text(col(EmergencyGrant.id))).where(own_file_grants).scalar_subquery()
    resource_type = func.coalesce(col(AuditEvent.resource_type), "")
    resource_id = id_text(func.coalesce(col(AuditEvent.resource_id), ""))
    return or_(
        (resource_type == "record") & resource_id.in_(about),
        col(AuditEvent.id).in_(listed),
        (resource_type == "emergency_grant") & resource_id.in_(grants),
    )


async def access_log(
    session: AsyncSession, *, record_id: uuid.UUID, actor: Actor, now: datetime, cursors: CursorCodec,
    limit: int, cursor: str | None,
) -> AccessLog:
    """Who accessed the record (read it, saw it in a list, or exported it), when and by which
    rule, newest first, emergency reads flagged (DESIGN §6).

    For those answerable for it: whoever may update it (its custodian, their line manager,
    for personnel the employee's line manager), and directors, who oversee the policy.
    """
    before = int(cursors.decode("access-log", cursor)[0]) if cursor else None  # bad input first
    loaded = await load_record(session, record_id, actor=actor)
    excluded = exclusion(actor, loaded.facts, now)  # one's own personnel file, even for a director (§3.6)
    decision = excluded or decide(actor, Action.update, loaded.facts, now)
    if not (decision.allowed or (actor.is_director and excluded is None)):
        add_event(session, now=now, actor=actor, action="record.access_log", resource_type="record",
                  resource_id=record_id, decision="deny", rule=decision.rule, clause=decision.clause)
        await session.commit()
        raise PolicyDenied("only those answerable for a record, and directors, see who read it",
                           rule=decision.rule, clause=decision.clause)
    rows = await record_accesses(session, [record_id], AccessLogEntry, newest_first=True, limit=limit + 1,
                                 before=before)
    page = page_of(rows, lambda r: r, cursors=cursors, scope="access-log", limit=limit,
                   key=lambda last: [last.event_id])
    add_event(session, now=now, actor=actor, action="record.access_log", resource_type="record",
              resource_id=record_id, decision="allow", rule="director" if not decision.allowed else decision.rule,
              clause="§3.1, §3.4" if not decision.allowed else decision.clause)
    await session.commit()
    return AccessLog(record_id=record_id, custodian_id=loaded.record.custodian_id,
                     custodian_line_manager_id=loaded.facts.custodian_line_manager_id, items=page.items,
                     next_cursor=page.next_cursor)
