"""Who a breach-report or record event may reach: the subscriptions it is posted to, and the
directors who read it in a delivery log.

The colleague concerned never sees a report, not even a trace (§1.8, §7.1), and a director may
be that colleague. So a breach-report event goes only to a subscription whose creator may know
of the report (the URL is the creator's choice), and a delivery log leaves out every delivery of
an event about a report the reader may not know of. Both ask ``breach_reports.visibility.visible``,
the one predicate behind every path that could show a report or a trace of one.

Nobody reads their own personnel file, a director included (§3.6), nor learns what becomes of
it. So a record event (destroyed, due for review) about a record an exclusion keeps a
subscription's creator from goes nowhere by that subscription, and a delivery log leaves it out
for the director it is about. Both ask ``policy.decide.exclusions_sql``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Uuid, and_, exists, literal, or_, true, union_all
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.models.breach_reports import BreachReport
from app.models.records import Record
from app.models.users import User
from app.models.webhooks import BREACH_REPORT_EVENTS, RECORD_EVENTS, WebhookEvent
from app.policy.actor import Actor
from app.policy.decide import exclusions_sql
from app.workflows.breach_reports.visibility import visible


async def known_to_creators(session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
                            ) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Of ``(creator, report)`` pairs, those whose subscription's creator may know of the report.

    The creator is judged as they are now, and must still be an active director: directors
    alone subscribe (§4.5), and a former colleague can do nothing (§7.2). A subscription whose
    creator is no longer one carries no breach-report event until another director makes it
    again. Two statements however many creators: the creators, then one select per creator,
    each filtered by ``visible``, in a UNION ALL.
    """
    wanted = set(pairs)
    if not wanted:
        return set()
    creators = {creator for creator, _ in wanted}
    reports = {report for _, report in wanted}
    users = (await session.execute(
        select(User).where(col(User.id).in_(creators), col(User.active).is_(True), col(User.role) == "director")
    )).scalars().all()
    per_creator: list[Any] = [
        sa_select(literal(user.id, Uuid()).label("creator_id"), col(BreachReport.id).label("report_id"))
        .where(col(BreachReport.id).in_(reports), visible(Actor.for_user(user)))
        for user in users
    ]
    if not per_creator:
        return set()
    statement: Any = per_creator[0] if len(per_creator) == 1 else union_all(*per_creator)
    found = {(creator, report) for creator, report in (await session.execute(statement)).all()}
    return found & wanted


async def own_records_of_creators(session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]],
                                  now: datetime) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Of ``(creator, record)`` pairs, those whose record an exclusion keeps the subscription's
    creator from (their own personnel file, §3.6), whatever the creator is now. Two statements
    however many creators: the creators, then one select per creator in a UNION ALL."""
    wanted = set(pairs)
    if not wanted:
        return set()
    creators = {creator for creator, _ in wanted}
    records = {record for _, record in wanted}
    users = (await session.execute(select(User).where(col(User.id).in_(creators)))).scalars().all()
    per_creator: list[Any] = [
        sa_select(literal(user.id, Uuid()).label("creator_id"), col(Record.id).label("record_id"))
        .where(col(Record.id).in_(records), excluded)
        for user in users
        if (excluded := exclusions_sql(Actor.for_user(user), now)) is not None
    ]
    if not per_creator:
        return set()
    statement: Any = per_creator[0] if len(per_creator) == 1 else union_all(*per_creator)
    found = {(creator, record) for creator, record in (await session.execute(statement)).all()}
    return found & wanted


def events_known_to(actor: Actor, now: datetime) -> ColumnElement[bool]:
    """Webhook events the actor may see in a delivery log: every one except those about a breach
    report it may not know of (§1.8, §7.1), and those about a record an exclusion keeps it from
    (its own personnel file, §3.6). An event about a report that cannot be found is left out too.
    Correlated on the event's ``resource_id`` (UUID columns, compared alike on SQLite and
    PostgreSQL), so a page of the log is filtered in SQL before it is cut."""
    about_a_known_report = (
        exists().where(col(BreachReport.id) == col(WebhookEvent.resource_id), visible(actor))
        .correlate(WebhookEvent)
    )
    excluded = exclusions_sql(actor, now)
    about_an_excluded_record = (
        exists().where(col(Record.id) == col(WebhookEvent.resource_id), excluded).correlate(WebhookEvent)
        if excluded is not None else None
    )
    return and_(
        or_(col(WebhookEvent.kind).not_in(sorted(BREACH_REPORT_EVENTS)), about_a_known_report),
        ~and_(col(WebhookEvent.kind).in_(sorted(RECORD_EVENTS)), about_an_excluded_record)
        if about_an_excluded_record is not None else true(),
    )
