"""Retention (§6.5): the sweep that destroys what is past its date.

Candidates are chosen in SQL (``past_retention``). The sweep works in batches, one
transaction each: a batch's records are locked, shredded and audited together, so a
failure leaves every record either whole or destroyed, never half. A record under a
director's legal hold (app/workflows/records/lifecycle.py) is never a candidate.

The director who asks is answered with the ids of what was (or would be) destroyed, less the
records an exclusion keeps them from (their own personnel file, §3.6): the sweep destroys
those too, but neither the ids nor the count it shows them say so. The sweep's audit event
holds no record count, which another director's answer or the trail's per-record events could
be set against; each destroyed record has its own ``record.destroy`` event, which the
director it is about does not see.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, not_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core import progress
from app.core.db import scrub_after_shred
from app.models.records import Record
from app.models.retention import SweepResult
from app.policy.actor import Actor
from app.policy.decide import exclusions_sql
from app.workflows.access_requests import package_retention
from app.workflows.audit.trail import add_event
from app.workflows.records.commands import shred
from app.workflows.webhooks import outbox

log = logging.getLogger("kmm.retention")

RULE, CLAUSE = "retention", "§6.5"


def past_retention(now: datetime) -> ColumnElement[bool]:
    """Records past their retention date that may be destroyed: not yet destroyed, not held."""
    return and_(
        col(Record.destroyed_at).is_(None),
        col(Record.legal_hold).is_(False),
        col(Record.retention_until).is_not(None),
        col(Record.retention_until) < now,
    )


async def _hidden(session: AsyncSession, actor: Actor | None, now: datetime,
                  ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Of ``ids``, the records the asking director is kept from (§3.6); none for the service."""
    excluded = exclusions_sql(actor, now) if actor is not None else None
    if excluded is None or not ids:
        return set()
    return set((await session.execute(
        select(Record.id).where(col(Record.id).in_(list(ids)), excluded))).scalars())


async def sweep(
    session: AsyncSession, *, now: datetime, actor: Actor | None, dry_run: bool, batch_size: int = 200,
) -> SweepResult:
    """Destroy (or, with ``dry_run``, list) every record past its retention date, and every
    access-request package past its own.

    ``actor`` is the director who asked, or None for ``kmm retention-sweep``; the answer leaves
    out what the director is kept from (§3.6). A dry run writes nothing at all. The session
    commits once per batch and ends each batch empty.
    """
    sweep_id = uuid.uuid4()
    await session.commit()  # whatever the caller read, its transaction ends here
    if dry_run:
        listed = select(Record.id).where(past_retention(now)).order_by(col(Record.id))
        excluded = exclusions_sql(actor, now) if actor is not None else None
        if excluded is not None:
            listed = listed.where(not_(excluded))
        ids = list((await session.execute(listed)).scalars())
        expired = await package_retention.expired_ids(session, now)
        await session.rollback()
        return SweepResult(sweep_id=sweep_id, dry_run=True, as_of=now, count=len(ids), ids=ids,
                           package_count=len(expired), package_ids=expired)

    by = actor.id if actor is not None else None
    reason = f"retention period ended (sweep {sweep_id})"
    destroyed: list[uuid.UUID] = []
    hidden: set[uuid.UUID] = set()  # destroyed, but not shown to the director who asked (§3.6)
    last: uuid.UUID | None = None
    if progress.active():  # `kmm retention-sweep` shows how far it is
        due = select(func.count()).select_from(Record).where(past_retention(now))
        progress.set_total((await session.execute(due)).scalar_one())
        await session.rollback()
    while True:
        query = (
            select(Record).where(past_retention(now)).order_by(col(Record.id)).limit(batch_size)
            .with_for_update()
        )
        if last is not None:
            query = query.where(col(Record.id) > last)
        try:
            batch = list((await session.execute(query)).scalars())
            # Detached, the rows cost no identity-map bookkeeping; the batch is shredded in
            # a few set-based statements and its audit events are inserted together at commit.
            session.expunge_all()
            batch_hidden = await _hidden(session, actor, now, [r.id for r in batch])
            with session.no_autoflush:
                await shred(session, record_ids=[r.id for r in batch], by=by, reason=reason, now=now)
                for record in batch:
                    add_event(session, now=now, actor=actor, action="record.destroy", resource_type="record",
                              resource_id=record.id, decision="allow", rule=RULE, clause=CLAUSE,
                              detail={"classification": record.classification, "sweep": True,
                                      "sweep_id": str(sweep_id)})
                await outbox.records_destroyed(session, records=batch, sweep=True, now=now)
            await session.commit()
        except BaseException:
            await session.rollback()  # this batch only: earlier batches are whole and committed
            log.error("retention sweep stopped", extra={"sweep_id": str(sweep_id), "destroyed": len(destroyed)})
            raise
        if not batch:
            break
        destroyed.extend(r.id for r in batch)
        hidden |= batch_hidden
        progress.advance(len(batch))
        last = batch[-1].id
    # Access-request packages past their own date (§6.5): one transaction.
    gone_packages = await package_retention.destroy_expired(session, now=now, actor=actor, sweep_id=sweep_id)
    add_event(session, now=now, actor=actor, action="retention.sweep", resource_type="sweep",
              resource_id=sweep_id, decision="allow", rule=RULE, clause=CLAUSE,
              detail={"packages": len(gone_packages),
                      "by": "director" if actor else "kmm retention-sweep"})
    await session.commit()
    if destroyed or gone_packages:
        await scrub_after_shred(session)
    log.info("retention sweep", extra={"sweep_id": str(sweep_id), "count": len(destroyed),
                                       "packages": len(gone_packages)})
    shown = [i for i in destroyed if i not in hidden]
    return SweepResult(sweep_id=sweep_id, dry_run=False, as_of=now, count=len(shown), ids=shown,
                       package_count=len(gone_packages), package_ids=gone_packages)
