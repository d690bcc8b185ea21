"""Verifying the audit trail's chain (DESIGN §6): every link, MAC and event id recomputed.

Verify seals what is pending first (app/workflows/audit/seal.py), then walks the chain in
the database, in one snapshot: each seal must follow the one before, name an event that
exists, and hold the link (app/workflows/audit/links.py) recomputed from the event row.
Ids missing below the newest event are broken too unless a seal recorded them in time
(docs/audit.md, "Missing event ids").
"""

from __future__ import annotations

import bisect
import hmac
from datetime import datetime, timedelta

from sqlalchemy import case, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.audit_keys import AuditKeys, installed_keys
from app.models.audit import GENESIS_HASH, ChainReport
from app.workflows.audit.canonical import EVENTS, sql_text
from app.workflows.audit.links import SEALS, expected_hash, set_pads_pg
from app.workflows.audit.seal import seal_passes

# Ids missing below an event when it is sealed (a rolled-back transaction's, or one still
# running) are recorded in its seal. Such a record explains them only when the seal was
# written within this time of the event's own time: the sealer runs every half second,
# whereas a seal written long after (every seal deleted, the trail sealed afresh) cannot
# tell a rolled-back id from a deleted event.
GAP_GRACE = timedelta(minutes=10)


async def verify_chain(
    engine: AsyncEngine,
    now: datetime,
    keys: AuditKeys | None = None,
    *,
    expect_head: tuple[int, str] | None = None,
) -> ChainReport:
    """Seal what is pending, then recompute every link in seq order, in the database.

    A link is broken where its seq does not follow the one before, its prev_hash is not
    the previous seal's hash, its event is missing, or the MAC recomputed from the event
    row, prev_hash and the seal's fields under the key it names differs from the stored
    one (an unknown key is broken too). The report names the event of the first broken
    link; with none, the first event id missing that no seal explains. ``expect_head``
    (seq, hash), recorded from an earlier report, must still be in the chain.
    """
    keys = keys or installed_keys()
    await seal_passes(engine, now, keys, full=False)
    # The pass over every event (for late commits) is an anti-join of the whole trail, a
    # tenth of a verify. It has nothing to do when there are as many events as the last
    # seal's seq, provided the chain is whole: seqs 1..n, each naming a distinct event that
    # exists, which is what the walk checks. So it runs first only when the counts differ,
    # and after the walk when the chain is not whole; if it then seals anything, the walk
    # runs again over the chain as seal_all would have left it.
    swept = not await _as_many_events_as_seals(engine)
    if swept:
        await seal_passes(engine, now, keys, full=True)
    report = await _walk(engine, keys, expect_head)
    if not report.ok and not swept and await seal_passes(engine, now, keys, full=True):
        report = await _walk(engine, keys, expect_head)
    return report


async def _as_many_events_as_seals(engine: AsyncEngine) -> bool:
    """Whether the number of events is the last seal's seq (both read in one statement)."""
    async with engine.connect() as conn:
        events, last_seq = (
            await conn.execute(
                select(select(func.count()).select_from(EVENTS).scalar_subquery(),
                       select(func.max(SEALS.c.seq)).scalar_subquery())
            )
        ).one()
    return bool(events == (last_seq or 0))


def _unexplained_gaps(runs: list[tuple[int, int]], recorded: list[tuple[int, int, datetime, datetime]],
                      floor: int) -> tuple[int, int | None]:
    """How many missing ids no fresh record covers, and the first of them.

    ``runs``: each maximal run of missing ids (lo, hi) below the newest event. ``recorded``:
    each keyed seal's record (gap_from, its event id, sealed_at, the event's time); the
    ranges gap_from .. event id - 1 do not overlap. A run is explained when one range
    recorded in time (GAP_GRACE) holds it whole; ids up to ``floor`` (sealed before the
    chain was keyed) are not judged.
    """
    ranges = sorted((lo, end - 1) for lo, end, sealed_at, at in recorded if sealed_at - at <= GAP_GRACE)
    starts = [lo for lo, _ in ranges]
    missing, first = 0, None
    for lo, hi in runs:
        lo = max(lo, floor + 1)
        if lo > hi:
            continue
        i = bisect.bisect_right(starts, lo) - 1
        if i >= 0 and ranges[i][1] >= hi:
            continue
        missing += hi - lo + 1
        first = lo if first is None else min(first, lo)
    return missing, first


async def _walk(engine: AsyncEngine, keys: AuditKeys, expect_head: tuple[int, str] | None) -> ChainReport:
    """Recompute every link, MAC and id gap, in one snapshot (see verify_chain)."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for the links, the hashes and the counts below.
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                # A long trail takes longer than a request's statement timeout allows.
                await conn.execute(text("SET LOCAL statement_timeout = 0"))
                # These few statements over the whole trail are costed high enough for JIT
                # compilation, which here costs more than it saves: on 200,000 events it
                # spent about 150 ms per statement compiling a plan that runs in 1 ms (the
                # recorded gaps, found by a partial index).
                await conn.execute(text("SET LOCAL jit = off"))
                # The seals meet their events one to one, both in id order in an index, so a
                # merge join streams the two indexes in constant memory. Without statistics
                # on freshly written seals PostgreSQL would rather hash every event, and past
                # work_mem spill the hash to disk in batches (on 200,000 events some 70 MB
                # written and read back, and the verify about 12% slower). Only the hashing
                # query below has a join.
                await conn.execute(text("SET LOCAL enable_hashjoin = off"))
                await set_pads_pg(conn, keys)
            s, e = SEALS.c, EVENTS.c
            # 1. The links, over the seals alone, in seq order: each seal's prev_hash must be
            # the hash of the seal at seq - 1 (the genesis hash at seq 1). lag() gives the seal
            # just before; it is the one at seq - 1 only when no seq is missing in between.
            # One streaming pass down the seq index. (The self-join on seq - 1 this replaces
            # built a hash table of every seal's hash inside the hashing query: on 200,000
            # seals about twice this pass's CPU, and past work_mem it spilled to disk.) A
            # one-row frame is all lag() needs, and spares PostgreSQL the peer-group work.
            # (A seal made before the chain was keyed, with an empty key_id, may only precede
            # keyed ones: checked with the MACs, below.)
            walk = select(
                s.seq,
                s.prev_hash,
                func.lag(s.seq).over(order_by=s.seq, rows=(-1, 0)).label("before_seq"),
                func.lag(s.hash).over(order_by=s.seq, rows=(-1, 0)).label("before_hash"),
            ).subquery("walk")
            w = walk.c
            expected_prev = case(
                (w.seq == 1, sql_text(f"'{GENESIS_HASH}'")),
                (w.before_seq == w.seq - 1, w.before_hash),
            )  # NULL (so broken) when the seal at seq - 1 is missing
            checked, first_bad_link, last_seq = (
                await conn.execute(
                    select(func.count(), func.min(case((w.prev_hash.is_distinct_from(expected_prev), w.seq))),
                           func.max(w.seq))
                )
            ).one()
            # 2. Each seal against its event, in any order (so PostgreSQL may spread the
            # hashing over parallel workers): the event is there, and the MAC recomputed from
            # the row, the seal's prev_hash and its own fields is the stored one.
            bad_event = or_(e.id.is_(None), s.hash.is_distinct_from(expected_hash(conn.dialect.name, keys)))
            found, first_bad_event = (
                await conn.execute(
                    select(func.count(e.id), func.min(case((bad_event, s.seq))))
                    .select_from(SEALS.outerjoin(EVENTS, e.id == s.event_id))
                )
            ).one()
            # The unkeyed seals (a partial index holds them) must be seqs 1..n: as many as
            # the highest. Otherwise the first after a keyed one is broken; and so is the
            # first beyond the number the settings accept (anyone can write unkeyed seals).
            unkeyed = s.key_id == sql_text("''")
            n_unkeyed, last_unkeyed, floor = (await conn.execute(
                select(func.count(), func.max(s.seq), func.max(s.event_id)).where(unkeyed))).one()
            misplaced = None
            if n_unkeyed and last_unkeyed != n_unkeyed:
                first_keyed = (await conn.execute(select(func.min(s.seq)).where(~unkeyed))).scalar_one()
                misplaced = (await conn.execute(
                    select(func.min(s.seq)).where(unkeyed, s.seq > first_keyed))).scalar_one()
            if n_unkeyed > keys.unkeyed_allowed:
                beyond = (await conn.execute(
                    select(func.min(s.seq)).where(unkeyed, s.seq > keys.unkeyed_allowed))).scalar_one()
                misplaced = beyond if misplaced is None else min(misplaced, beyond)
            if misplaced is not None:
                first_bad_link = misplaced if first_bad_link is None else min(first_bad_link, misplaced)
                floor = 0  # the ids below unaccepted seals are judged like any others
            # 3. Event ids missing below the newest event, each run of them explained by a
            # seal that recorded it in time, or not (see GAP_GRACE). The recorded gaps are
            # few (a partial index holds them) and do not overlap, so first by counting: when
            # the ids missing above the floor are as many as the recorded gaps still miss,
            # every one is inside one, and the window over every event id is not needed.
            floor = int(floor or 0)
            total, above, newest = (await conn.execute(
                select(func.count(), func.count().filter(e.id > floor), func.max(e.id)))).one()
            x = EVENTS.alias("x")
            lo = case((s.gap_from > floor, s.gap_from), else_=floor + 1)
            still_missing = s.event_id - lo - (
                select(func.count()).where(x.c.id >= lo, x.c.id < s.event_id).scalar_subquery())
            recorded = [tuple(r) for r in (await conn.execute(
                select(s.gap_from, s.event_id, s.sealed_at, e.at, still_missing)
                .join(EVENTS, e.id == s.event_id)
                .where(s.gap_from.is_not(None), s.key_id != sql_text("''"), s.event_id > floor + 1))).all()]
            explained = sum(int(n) for _, _, sealed_at, at, n in recorded if sealed_at - at <= GAP_GRACE)
            missing, first_missing = 0, None
            if max((newest or 0) - floor, 0) - above != explained:
                ids = select(e.id, func.lag(e.id, 1, 0).over(order_by=e.id, rows=(-1, 0)).label("prev")).subquery()
                runs = [(int(a), int(b)) for a, b in (await conn.execute(
                    select(ids.c.prev + 1, ids.c.id - 1).where(ids.c.id > ids.c.prev + 1))).all()]
                missing, first_missing = _unexplained_gaps(
                    runs, [(int(g), int(ev), sa, at) for g, ev, sa, at, _ in recorded], floor)
            first_broken_seq = min((q for q in (first_bad_link, first_bad_event) if q is not None), default=None)
            first_broken_id = first_missing
            if first_broken_seq is not None:
                first_broken_id = (
                    await conn.execute(select(s.event_id).where(s.seq == first_broken_seq))
                ).scalar_one()
            head = head_event_id = None
            if last_seq is not None:
                head, head_event_id = (
                    await conn.execute(select(s.hash, s.event_id).where(s.seq == last_seq))).one()
            expected_head_found = None
            if expect_head is not None:
                at_seq = (await conn.execute(select(s.hash).where(s.seq == expect_head[0]))).scalar()
                expected_head_found = at_seq is not None and hmac.compare_digest(at_seq, expect_head[1])
            # Each seal names a distinct event, so the events no seal names are the rest.
            pending = total - found
    head_hash = head or GENESIS_HASH
    return ChainReport(
        ok=first_broken_id is None and expected_head_found is not False,
        checked=checked,
        first_broken_id=first_broken_id,
        pending=pending,
        last_seq=last_seq or 0,
        head_hash=head_hash,
        head_event_id=head_event_id,
        head=f"{last_seq or 0}:{head_hash}",
        missing=missing,
        expected_head_found=expected_head_found,
        unkeyed=n_unkeyed,
    )
