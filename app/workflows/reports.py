"""Monitoring and funder reports (§2.3): aggregates only, small counts suppressed.

Every count from 1 to 4 is shown as "<5" (0 is shown: it identifies nobody). No total
is published, and each population appears in exactly one table, so no suppressed count
can be worked out by subtraction:

* a published total minus the other cells would give a suppressed cell; and
* two tables over the same population (records by purpose, and records by
  classification) share a total implicitly: if every cell of one is shown, its sum is
  the total, and the other's one suppressed cell follows. So records are given as one
  purpose x classification table, subjects as one table by category.

All counting is done in SQL with GROUP BY; destroyed records are not counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import PolicyDenied
from app.models.records import Classification, Purpose, Record
from app.models.reports import SUPPRESSED, THRESHOLD, CategoryCount, Count, MonitoringReport, PurposeClassCount
from app.models.service_clients import ServiceClient
from app.models.subjects import Subject, SubjectCategory
from app.policy.actor import Actor
from app.policy.scopes import EXCLUSIVE_CLAUSE, EXCLUSIVE_RULE, clashes
from app.workflows.audit.trail import add_event

RULE, CLAUSE = "monitoring-report", "§2.3"


async def _refuse(session: AsyncSession, *, actor: Actor, now: datetime, denial: PolicyDenied) -> NoReturn:
    add_event(session, now=now, actor=actor, action="report.monitoring", resource_type="report", decision="deny",
              rule=denial.extra["rule"], clause=denial.extra["clause"])
    await session.commit()
    raise denial


def suppress(n: int) -> Count:
    return SUPPRESSED if 0 < n < THRESHOLD else n


def may_read_reports(actor: Actor) -> bool:
    if actor.kind == "client":
        return actor.has_scope("reports:read")
    return actor.active and actor.role in ("director", "trustee")


async def monitoring(session: AsyncSession, *, actor: Actor, now: datetime) -> MonitoringReport:
    if not may_read_reports(actor):
        await _refuse(session, actor=actor, now=now, denial=PolicyDenied(
            "monitoring reports are for directors, trustees and clients with reports:read", rule=RULE, clause=CLAUSE))
    if actor.kind == "client":
        # The scopes the client holds, not only its token's: two tokens must not split the
        # adding from the reading (app/policy/scopes.py, EXCLUSIVE).
        held = (await session.execute(select(ServiceClient.scopes).where(col(ServiceClient.id) == actor.id))
                ).scalar_one_or_none() or []
        if clashes(held):
            await _refuse(session, actor=actor, now=now, denial=PolicyDenied(
                "a client that adds subjects or records does not read the monitoring report",
                rule=EXCLUSIVE_RULE, clause=EXCLUSIVE_CLAUSE))
    by_category = await session.execute(
        select(Subject.category, func.count()).group_by(col(Subject.category))
    )
    subjects: dict[str, int] = {category: n for category, n in by_category}
    by_purpose_class = await session.execute(
        select(Record.purpose, Record.classification, func.count())
        .where(col(Record.destroyed_at).is_(None))
        .group_by(col(Record.purpose), col(Record.classification))
    )
    records: dict[tuple[str, str], int] = {(p, c): n for p, c, n in by_purpose_class}
    add_event(session, now=now, actor=actor, action="report.monitoring", resource_type="report",
              decision="allow", rule=RULE, clause=CLAUSE)
    await session.commit()
    return MonitoringReport(
        as_of=now,
        subjects_by_category=[CategoryCount(category=c, count=suppress(subjects.get(c, 0)))
                              for c in SubjectCategory],
        records_by_purpose_and_classification=[
            PurposeClassCount(purpose=p, classification=c, count=suppress(records.get((p, c), 0)))
            for p in Purpose for c in Classification
        ],
    )
