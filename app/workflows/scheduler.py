"""Scheduled work inside ``kmm serve``: the retention sweep, access-request flags, review reminders,
housekeeping.

Every service process (each worker of each replica) runs ``run_scheduler``; for each job
they race for one row of ``scheduled_jobs`` with a compare-and-set UPDATE (a lease): the
job is due when its last start is an interval ago, and free when no lease is current. The
winner runs it, renewing the lease while it works, and clears it after; the others skip
it. So at most one process runs a job at a time, on SQLite and PostgreSQL alike, and the
cadence holds however many replicas there are. A process that dies mid-job leaves its
lease to expire (``KMM_SCHEDULER_LEASE_SECONDS``), after which another takes the job up.

The jobs:

- ``retention_sweep``: the retention sweep (§6.5), as ``kmm retention-sweep`` runs it.
- ``access_request_flags``: an open access request due within 3 days, or overdue (§3.4,
  §3.6), is flagged once each: an audit event and a webhook notice
  (``access_request.due_soon`` / ``access_request.overdue``).
- ``review_reminders``: a record past its review date (§6.4) gets one ``record.review_due``
  notice per review date; the run's audit event does not count them (the count would take in a
  director's own personnel file, §3.6). The service sends no mail:
  other KMM systems remind people, from the webhook.
- ``housekeeping``: what the service keeps only for a while is deleted once it has been
  kept long enough (§6.5), as ``kmm prune`` does (app/workflows/housekeeping.py): finished
  webhook deliveries and their events (never a scheduled notice, which the once-only rule
  above reads), expired idempotency keys, old login attempts, sessions long ended. Its
  ``housekeeping.run`` audit event holds the count per table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.config import Settings
from app.core.state import AppState
from app.models.access_requests import OPEN_STATUSES, AccessRequest
from app.models.records import Record
from app.models.webhooks import ScheduledJob, WebhookEvent, WebhookEventKind
from app.workflows import housekeeping, retention
from app.workflows.audit.trail import add_event
from app.workflows.webhooks import outbox

log = logging.getLogger("kmm.scheduler")

DUE_SOON = timedelta(days=3)
# Notices made in one run at most; the next run carries on (a first run over a large backlog
# stays a bounded transaction).
NOTICE_BATCH = 1000

Job = Callable[[AsyncSession, datetime, Settings], Awaitable[dict[str, Any]]]


# -- the jobs -----------------------------------------------------------------------------------


async def sweep_retention(session: AsyncSession, now: datetime, settings: Settings) -> dict[str, Any]:
    """The sweep's id and package count; no record count, as in the sweep's own audit event: a
    director the true count is not shown to (their own personnel file destroyed, §3.6) could set
    it against the ``record.destroy`` events they see."""
    result = await retention.sweep(session, now=now, actor=None, dry_run=False)
    return {"sweep_id": str(result.sweep_id), "packages": result.package_count}


def _not_noticed(kind: WebhookEventKind, resource: Any, occurrence: Any) -> Any:
    return ~exists().where(col(WebhookEvent.kind) == kind, col(WebhookEvent.resource_id) == resource,
                           col(WebhookEvent.occurrence_at) == occurrence)


async def flag_access_requests(session: AsyncSession, now: datetime, settings: Settings) -> dict[str, Any]:
    """Flag each open request once when it is due within 3 days, and once when it is overdue (§3.4)."""
    open_ = col(AccessRequest.status).in_(OPEN_STATUSES)
    due = col(AccessRequest.due_at)
    counts: dict[str, Any] = {}
    for kind, window, flag in (
        (WebhookEventKind.access_request_overdue, due < now, "overdue"),
        (WebhookEventKind.access_request_due_soon, and_(due >= now, due <= now + DUE_SOON), "due_soon"),
    ):
        rows = (await session.execute(
            select(AccessRequest.id, AccessRequest.kind, AccessRequest.due_at)
            .where(open_, window, _not_noticed(kind, col(AccessRequest.id), due))
            .order_by(due, col(AccessRequest.id)).limit(NOTICE_BATCH)
        )).all()
        await outbox.enqueue(session, kind=kind, now=now, keep=True, notices=[
            outbox.Notice(resource_id=r.id, occurrence_at=r.due_at,
                          data={"access_request_id": str(r.id), "kind": r.kind, "due_at": outbox.iso(r.due_at)})
            for r in rows])
        for r in rows:
            add_event(session, now=now, actor=None, action=f"access_request.{flag}", resource_type="access_request",
                      resource_id=r.id, decision="allow", rule="scheduler", clause="§3.4",
                      detail={"kind": r.kind, "due_at": outbox.iso(r.due_at)})
        counts[flag] = len(rows)
    await session.commit()
    return counts


async def remind_reviews(session: AsyncSession, now: datetime, settings: Settings) -> dict[str, Any]:
    """One ``record.review_due`` notice per record and review date once the date has passed (§6.4)."""
    kind = WebhookEventKind.record_review_due
    review_due = col(Record.review_due)
    rows = (await session.execute(
        select(Record.id, Record.classification, Record.review_due)
        .where(col(Record.destroyed_at).is_(None), review_due.is_not(None), review_due < now,
               _not_noticed(kind, col(Record.id), review_due))
        .order_by(review_due, col(Record.id)).limit(NOTICE_BATCH)
    )).all()
    await outbox.enqueue(session, kind=kind, now=now, keep=True, notices=[
        outbox.Notice(resource_id=r.id, occurrence_at=r.review_due,
                      data={"record_id": str(r.id), "classification": r.classification,
                            "review_due": outbox.iso(r.review_due)})
        for r in rows])
    await session.commit()
    return {"count": len(rows)}


async def keep_house(session: AsyncSession, now: datetime, settings: Settings) -> dict[str, Any]:
    """Delete what has been kept long enough (§6.5); the count per table."""
    return dict(await housekeeping.prune(session, now=now, settings=settings))


@dataclass(frozen=True)
class ScheduledWork:
    name: str
    run: Job
    interval: float | None  # seconds; None is off
    # What the job returns but its audit event leaves out: a count that takes in records kept
    # from some readers of the trail (their own personnel file, §3.6).
    unaudited: frozenset[str] = frozenset()


def jobs(settings: Settings) -> list[ScheduledWork]:
    return [
        ScheduledWork("retention_sweep", sweep_retention, settings.schedule_retention_sweep),
        ScheduledWork("access_request_flags", flag_access_requests, settings.schedule_access_request_flags),
        ScheduledWork("review_reminders", remind_reviews, settings.schedule_review_reminders,
                      unaudited=frozenset({"count"})),
        ScheduledWork("housekeeping", keep_house, settings.schedule_housekeeping),
    ]


# -- the lease ---------------------------------------------------------------------------------


def holder_name() -> str:
    """This process, as named in the lease: host, pid and a random part (pids repeat across hosts)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def _ensure_row(session: AsyncSession, name: str) -> None:
    if await session.get(ScheduledJob, name) is None:
        try:
            async with session.begin_nested():
                await session.execute(insert(ScheduledJob).values(name=name))
        except IntegrityError:
            pass  # another process made it first


async def claim(state: AppState, *, name: str, interval: float, holder: str, now: datetime) -> bool:
    """Take the job's lease if the job is due and nobody holds it; True when this process runs it."""
    lease = timedelta(seconds=state.settings.scheduler_lease_seconds)
    async with state.sessionmaker() as session:
        await _ensure_row(session, name)
        result = await session.execute(
            update(ScheduledJob)
            .where(col(ScheduledJob.name) == name,
                   or_(col(ScheduledJob.last_started_at).is_(None),
                       col(ScheduledJob.last_started_at) <= now - timedelta(seconds=interval)),
                   or_(col(ScheduledJob.lease_until).is_(None), col(ScheduledJob.lease_until) < now))
            .values(lease_holder=holder, lease_until=now + lease, last_started_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _renew(state: AppState, *, name: str, holder: str) -> None:
    lease = timedelta(seconds=state.settings.scheduler_lease_seconds)
    while True:
        await asyncio.sleep(state.settings.scheduler_lease_seconds / 3)
        with contextlib.suppress(Exception):
            async with state.sessionmaker() as session:
                await session.execute(
                    update(ScheduledJob)
                    .where(col(ScheduledJob.name) == name, col(ScheduledJob.lease_holder) == holder)
                    .values(lease_until=state.clock.now() + lease)
                )
                await session.commit()


async def release(state: AppState, *, name: str, holder: str, outcome: str) -> None:
    async with state.sessionmaker() as session:
        await session.execute(
            update(ScheduledJob)
            .where(col(ScheduledJob.name) == name, col(ScheduledJob.lease_holder) == holder)
            .values(lease_holder=None, lease_until=None, last_finished_at=state.clock.now(), last_outcome=outcome)
        )
        await session.commit()


async def run_job(state: AppState, work: ScheduledWork, *, holder: str) -> dict[str, Any] | None:
    """Run ``work`` here if it is due and free; its result, or None when it was not this process's turn."""
    if work.interval is None:
        return None
    now = state.clock.now()
    if not await claim(state, name=work.name, interval=work.interval, holder=holder, now=now):
        return None
    renewing = asyncio.create_task(_renew(state, name=work.name, holder=holder))
    outcome, result = "ok", None
    try:
        async with state.sessionmaker() as session:
            result = await work.run(session, now, state.settings)
            add_event(session, now=now, actor=None, action="scheduler.run", resource_type="job",
                      resource_id=work.name, decision="allow", rule="scheduler", clause=CLAUSES[work.name],
                      detail={k: v for k, v in result.items() if k not in work.unaudited})
            await session.commit()
    except Exception as exc:
        outcome = f"error: {type(exc).__name__}"[:64]
        log.warning("scheduled job failed", extra={"job": work.name, "error": type(exc).__name__})
    finally:
        renewing.cancel()
        with contextlib.suppress(BaseException):
            await renewing
        with contextlib.suppress(Exception):
            await release(state, name=work.name, holder=holder, outcome=outcome)
    log.info("scheduled job ran", extra={"job": work.name, "outcome": outcome})
    return result


CLAUSES = {"retention_sweep": "§6.5", "access_request_flags": "§3.4", "review_reminders": "§6.4",
           "housekeeping": "§6.5"}


# On cancellation (the process stopping), how long the pass under way may go on to end its
# transaction; past that it is cut, and its lease lets another process take the job up.
STOP_GRACE_SECONDS = 5.0


async def _one_pass(state: AppState, holder: str) -> None:
    for work in jobs(state.settings):
        try:
            await run_job(state, work, holder=holder)
        except Exception as exc:  # the lease table unreachable: try again next tick
            log.warning("scheduler pass failed", extra={"job": work.name, "error": type(exc).__name__})


async def run_scheduler(state: AppState) -> None:
    """Every KMM_SCHEDULER_TICK_SECONDS, run each job that is due and free; until cancelled.

    The first pass is a tick after start, so starting (and a process that starts only to stop)
    does no scheduled work. Cancelled during a pass, the pass may first end what it is doing
    (up to STOP_GRACE_SECONDS): a statement cut short can leave its connection, and on SQLite
    the database's one write lock, held.
    """
    if not state.settings.scheduler:
        return
    holder = holder_name()
    while True:
        await asyncio.sleep(state.settings.scheduler_tick_seconds)
        under_way = asyncio.ensure_future(_one_pass(state, holder))
        try:
            await asyncio.shield(under_way)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(under_way, STOP_GRACE_SECONDS)
            raise
