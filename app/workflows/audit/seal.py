"""Sealing the audit trail (DESIGN §6): chaining committed events, and the background sealer.

Requests insert events unsealed, in their own transactions, and never wait for each
other. The sealer (a background task in every service process, and the first step of
verify) takes one exclusive lock, reads the last seal, and gives each committed, still
unsealed event the next ``seq`` with its link to the seal before (app/workflows/audit/
links.py) under the current key of ``KMM_AUDIT_KEYS``, so the chain runs in seal order.
``gap_from`` records ids found missing below the event as it is sealed (rolled back, or
still running), so that verify can tell them from deleted events (docs/audit.md, "Missing
event ids"). An event whose transaction commits late (a lower id, committed after a higher
one was sealed) is simply sealed later with a higher ``seq``. Unique ``seq`` and
``event_id`` make two racing sealers fail safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.audit_keys import AuditKeys, installed_keys
from app.core.state import AppState
from app.models.audit import GENESIS_HASH
from app.workflows.audit.canonical import EVENTS, canonical_event
from app.workflows.audit.links import SEALS, link_mac

log = logging.getLogger("kmm.audit")

SEAL_BATCH = 5000
# The background sealer looks this many ids below the newest sealed event for late
# commits; every FULL_SWEEP_EVERY passes (and on every verify) it looks at all events.
LOOKBACK_IDS = 10_000
FULL_SWEEP_EVERY = 120
# The background full pass looks only at events written in this horizon (by the ``at``
# index): an event commits within its transaction's life, seconds, so older ones were
# sealed long ago, and a pass over the whole trail would grow with it (about 0.8 µs an
# event: seconds a minute on a trail of millions). verify and seal_all still look at all.
FULL_SWEEP_HORIZON = timedelta(days=1)
# pg_advisory_xact_lock key: every sealer in every process takes the same one.
SEAL_LOCK_KEY = int.from_bytes(b"kmmaudit", "big")


async def _lock(conn: AsyncConnection, *, wait: bool) -> bool:
    """Take the sealer's exclusive lock for this transaction (SQLite: BEGIN IMMEDIATE has)."""
    if conn.dialect.name != "postgresql":
        return True
    if wait:
        await conn.execute(select(func.pg_advisory_xact_lock(SEAL_LOCK_KEY)))
        return True
    return bool((await conn.execute(select(func.pg_try_advisory_xact_lock(SEAL_LOCK_KEY)))).scalar())


async def seal_pending(
    engine: AsyncEngine,
    now: datetime,
    keys: AuditKeys | None = None,
    *,
    limit: int = SEAL_BATCH,
    full: bool = True,
    wait: bool = True,
    since: datetime | None = None,
) -> int:
    """Chain up to ``limit`` committed, unsealed events in one transaction; return how many.

    ``full=False`` looks only near the newest sealed event (the cheap background pass);
    ``since`` limits a full pass to events written from then on; ``wait=False`` returns 0
    at once when another sealer holds the lock. ``keys`` defaults to the installed ones;
    the current key seals.
    """
    keys = keys or installed_keys()
    async with engine.begin() as conn:
        if not await _lock(conn, wait=wait):
            return 0
        last = (
            await conn.execute(select(SEALS.c.seq, SEALS.c.hash).order_by(SEALS.c.seq.desc()).limit(1))
        ).first()
        seq, prev = (int(last.seq), str(last.hash)) if last else (0, GENESIS_HASH)
        is_sealed = SEALS.c.event_id == EVENTS.c.id
        # The highest id sealed so far: an event above it with ids missing in between
        # records where they begin (gap_from).
        newest = (await conn.execute(select(func.max(SEALS.c.event_id)))).scalar() or 0
        if full:
            unsealed = ~exists().where(is_sealed)
            if since is not None:
                unsealed = and_(EVENTS.c.at >= since, unsealed)
        else:
            low = newest - LOOKBACK_IDS
            # The seals looked at are bounded on both sides (newest is their max, and no other
            # sealer writes while we hold the lock), so that with no statistics yet, as on
            # freshly written seals, PostgreSQL reads the few of them from the event_id index
            # rather than all of them.
            unsealed = and_(
                EVENTS.c.id > low,
                ~exists().where(is_sealed, SEALS.c.event_id > low, SEALS.c.event_id <= newest),
            )
        rows = (
            await conn.execute(
                select(EVENTS.c.id, canonical_event(conn.dialect.name))
                .where(unsealed)
                .order_by(EVENTS.c.id)
                .limit(limit)
            )
        ).all()
        if not rows:
            return 0
        seals = []
        key_id, key = keys.current_id, keys.current
        for event_id, canonical in rows:
            seq += 1
            gap_from = None
            if event_id > newest:  # not a late commit: ids newest+1 .. event_id-1 are missing now
                gap_from = newest + 1 if event_id > newest + 1 else None
                newest = event_id
            digest = link_mac(key, prev, canonical, sealed_at=now, gap_from=gap_from)
            seals.append({"seq": seq, "event_id": event_id, "prev_hash": prev, "hash": digest,
                          "sealed_at": now, "key_id": key_id, "gap_from": gap_from})
            prev = digest
        await conn.execute(insert(SEALS), seals)
    return len(seals)


async def seal_passes(engine: AsyncEngine, now: datetime, keys: AuditKeys | None, *, full: bool) -> int:
    """Seal in batches until a pass finds fewer than a batch; return how many were sealed."""
    total = 0
    while True:
        n = await seal_pending(engine, now, keys, full=full)
        total += n
        if n < SEAL_BATCH:
            return total


async def seal_all(engine: AsyncEngine, now: datetime, keys: AuditKeys | None = None) -> int:
    """Seal every committed event (waiting for the lock); return how many were sealed."""
    # Cheap passes from the newest seal on, then one over every event for late commits.
    return await seal_passes(engine, now, keys, full=False) + await seal_passes(engine, now, keys, full=True)


# -- the background sealer ---------------------------------------------------------------------

async def run_sealer(state: AppState) -> None:
    """Seal every ``audit_seal_interval_seconds`` until cancelled; never let an error escape.

    A pass that ends while the process is told to stop finishes first (it is one short
    transaction), so shutdown never leaves a half-written batch or a held lock.
    """
    interval = state.settings.audit_seal_interval_seconds
    passes = 0
    while True:
        sealed = 0
        now = state.clock.now()
        full = passes % FULL_SWEEP_EVERY == 0
        work = asyncio.ensure_future(
            seal_pending(state.engine, now, full=full, wait=False, since=now - FULL_SWEEP_HORIZON if full else None)
        )
        try:
            sealed = await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
            raise
        except Exception as exc:
            # The type only: a database error's message can hold values.
            log.warning("audit sealer pass failed; retrying", extra={"error": type(exc).__name__})
        passes += 1
        if sealed < SEAL_BATCH:
            await asyncio.sleep(interval)
