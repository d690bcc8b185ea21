"""Housekeeping (§6.5 "not kept longer than necessary"): deleting what the service keeps only
for a while. The scheduled job ``housekeeping`` and ``kmm prune`` run it.

What goes, and when:

- **webhook deliveries** that are finished (``delivered``, ``failed``, ``cancelled``) and were
  last tried (never tried: made) more than ``KMM_WEBHOOK_LOG_DAYS`` ago, with their attempts;
  then **webhook events** made more than that ago with no delivery left, except scheduled
  notices (``occurrence_at`` set): the scheduler's once-only rule reads them (a notice is
  made once per thing and date), and they grow with records, not with traffic. A pending
  delivery, new or retrying, is never touched, nor is its event.
- **idempotency keys** past ``expires_at``: a retry no longer replays from them (the replay
  path ignores them, and drops the actor's own as it looks).
- **login attempts** older than ``KMM_LOGIN_ATTEMPTS_DAYS``, which the settings refuse to set
  below what the lockout and the address throttle read (``Settings.lockout_horizon``).
- **sessions** that ended (revoked, or past ``KMM_SESSION_MAX_DAYS``) more than
  ``KMM_LOGIN_ATTEMPTS_DAYS`` ago, with their refresh tokens, once none of those is still
  unexpired (a token of a deleted session gets the same 401 as one of an ended session).
  Nothing else has a foreign key to a session; audit events name sessions by id and are
  never touched (they are append-only and chained).

These rows hold ids, hashes and timestamps, never record content. Each table is deleted in
batches of ``batch_size`` rows, one transaction each, children first, so a run over a large
backlog holds no long transaction and one cut off leaves every earlier batch done. A run
ends with one audit event, ``housekeeping.run``, whose detail is the count per table; a dry
run counts the same rows and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core import progress
from app.core.config import Settings
from app.models.auth import AuthSession, LoginAttempt, RefreshToken
from app.models.idempotency import IdempotencyKey
from app.models.webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent
from app.workflows.audit.trail import add_event

log = logging.getLogger("kmm.housekeeping")

BATCH = 1000  # rows per delete statement, and per transaction
CLAUSE = "§6.5"
# The rule an event names: the scheduled job's, or an operator's `kmm prune`.
SCHEDULED, COMMAND = "scheduler", "housekeeping"
FINISHED = (DeliveryStatus.delivered, DeliveryStatus.failed, DeliveryStatus.cancelled)
# In the order they are deleted: children before the rows their foreign keys name.
TABLES = ("webhook_attempts", "webhook_deliveries", "webhook_events", "idempotency_keys", "login_attempts",
          "refresh_tokens", "auth_sessions")


@dataclass(frozen=True)
class Cutoffs:
    """The times that decide, for a run at ``now``, what has been kept long enough."""

    now: datetime
    webhook_log: datetime  # a finished delivery last tried before this goes; an event made before it
    login_attempts: datetime  # an attempt before this goes
    session_ended: datetime  # a session revoked before this goes
    session_created: datetime  # a session made before this has ended (its absolute lifetime) before the above

    @classmethod
    def at(cls, now: datetime, settings: Settings) -> Cutoffs:
        ended = now - timedelta(days=settings.login_attempts_days)
        return cls(now=now, webhook_log=now - timedelta(days=settings.webhook_log_days),
                   login_attempts=ended, session_ended=ended, session_created=ended - settings.session_max_age)


# -- what has been kept long enough -----------------------------------------------------------


def finished_delivery(c: Cutoffs) -> ColumnElement[bool]:
    """Delivered, given up or cancelled, and last tried before the cutoff (ix_webhook_deliveries_due)."""
    return and_(col(WebhookDelivery.status).in_(FINISHED), col(WebhookDelivery.next_attempt_at) < c.webhook_log)


def _old_event(c: Cutoffs) -> ColumnElement[bool]:
    # Scheduled notices stay: the once-only rule (scheduler._not_noticed) reads them.
    return and_(col(WebhookEvent.occurrence_at).is_(None), col(WebhookEvent.created_at) < c.webhook_log)


def unreferenced_event(c: Cutoffs) -> ColumnElement[bool]:
    return and_(_old_event(c),
                ~exists().where(col(WebhookDelivery.event_id) == col(WebhookEvent.id)).correlate(WebhookEvent))


def _event_left_without_deliveries(c: Cutoffs) -> ColumnElement[bool]:
    """For a dry run: an event every delivery of which would go first."""
    stays = and_(col(WebhookDelivery.event_id) == col(WebhookEvent.id), ~finished_delivery(c))
    return and_(_old_event(c), ~exists().where(stays).correlate(WebhookEvent))


def expired_key(c: Cutoffs) -> ColumnElement[bool]:
    return col(IdempotencyKey.expires_at) <= c.now  # as the replay path reads it (idempotency._find)


def old_login_attempt(c: Cutoffs) -> ColumnElement[bool]:
    return col(LoginAttempt.at) < c.login_attempts


def ended_session(c: Cutoffs) -> ColumnElement[bool]:
    live_token = and_(col(RefreshToken.session_id) == col(AuthSession.id), col(RefreshToken.expires_at) > c.now)
    return and_(or_(col(AuthSession.revoked_at) < c.session_ended, col(AuthSession.created_at) < c.session_created),
                ~exists().where(live_token).correlate(AuthSession))


@dataclass(frozen=True)
class _Child:
    name: str
    model: Any
    parent: Any  # the column naming the parent row


@dataclass(frozen=True)
class _Target:
    name: str
    model: Any
    key: Any
    where: Callable[[Cutoffs], ColumnElement[bool]]
    children: tuple[_Child, ...] = ()
    # What a dry run counts, when it differs: what would go once the tables before it are pruned.
    would_go: Callable[[Cutoffs], ColumnElement[bool]] | None = None


TARGETS = (
    _Target("webhook_deliveries", WebhookDelivery, col(WebhookDelivery.id), finished_delivery,
            children=(_Child("webhook_attempts", WebhookAttempt, col(WebhookAttempt.delivery_id)),)),
    _Target("webhook_events", WebhookEvent, col(WebhookEvent.id), unreferenced_event,
            would_go=_event_left_without_deliveries),
    _Target("idempotency_keys", IdempotencyKey, col(IdempotencyKey.id), expired_key),
    _Target("login_attempts", LoginAttempt, col(LoginAttempt.id), old_login_attempt),
    _Target("auth_sessions", AuthSession, col(AuthSession.id), ended_session,
            children=(_Child("refresh_tokens", RefreshToken, col(RefreshToken.session_id)),)),
)


# -- the run -------------------------------------------------------------------------------------


async def count(session: AsyncSession, c: Cutoffs) -> dict[str, int]:
    """How many rows of each table a run at ``c.now`` would delete (reads only)."""
    counts = dict.fromkeys(TABLES, 0)
    for target in TARGETS:
        going = (target.would_go or target.where)(c)
        counts[target.name] = (await session.execute(
            select(func.count()).select_from(target.model).where(going))).scalar_one()
        for child in target.children:
            counts[child.name] = (await session.execute(
                select(func.count()).select_from(child.model).where(
                    child.parent.in_(select(target.key).where(going))))).scalar_one()
    return counts


async def _prune(session: AsyncSession, target: _Target, c: Cutoffs, batch_size: int, counts: dict[str, int]) -> None:
    """Delete ``target``'s rows that have been kept long enough: ``batch_size`` a transaction."""
    while True:
        try:
            ids = list((await session.execute(
                select(target.key).where(target.where(c)).limit(batch_size))).scalars())
            if not ids:
                await session.rollback()
                return
            # Each delete asks again: a row that stopped qualifying meanwhile stays, with its children.
            still = select(target.key).where(target.key.in_(ids), target.where(c))
            done = 0
            for child in target.children:
                gone = await session.execute(delete(child.model).where(child.parent.in_(still))
                                             .execution_options(synchronize_session=False))
                counts[child.name] += gone.rowcount  # type: ignore[attr-defined]
                done += gone.rowcount  # type: ignore[attr-defined]
            gone = await session.execute(delete(target.model).where(target.key.in_(ids), target.where(c))
                                         .execution_options(synchronize_session=False))
            counts[target.name] += gone.rowcount  # type: ignore[attr-defined]
            await session.commit()
        except BaseException:
            await session.rollback()  # this batch only: the ones before it are committed
            log.error("housekeeping stopped", extra={"table": target.name})
            raise
        progress.advance(done + gone.rowcount)  # type: ignore[attr-defined]
        if len(ids) < batch_size or not gone.rowcount:  # type: ignore[attr-defined]
            return


async def prune(
    session: AsyncSession, *, now: datetime, settings: Settings, dry_run: bool = False, batch_size: int = BATCH,
    rule: str = SCHEDULED,
) -> dict[str, int]:
    """Delete (or, with ``dry_run``, count) what has been kept long enough; the count per table.

    A run ends with one ``housekeeping.run`` audit event holding the counts and nothing else;
    a dry run writes nothing. The session commits once per batch and ends each batch empty.
    """
    c = Cutoffs.at(now, settings)
    await session.commit()  # whatever the caller read, its transaction ends here
    if dry_run:
        counts = await count(session, c)
        await session.rollback()
        return counts
    if progress.active():  # `kmm prune` shows how far it is
        progress.set_total(sum((await count(session, c)).values()))
        await session.rollback()
    counts = dict.fromkeys(TABLES, 0)
    for target in TARGETS:
        await _prune(session, target, c, batch_size, counts)
    add_event(session, now=now, actor=None, action="housekeeping.run", resource_type="job",
              resource_id="housekeeping", decision="allow", rule=rule, clause=CLAUSE, detail=dict(counts))
    await session.commit()
    log.info("housekeeping", extra={"counts": counts})
    return counts
