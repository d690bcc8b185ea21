"""Chaining the audit trail (DESIGN §6): the sealer, the canonical form, verification.

Requests insert events unsealed, in their own transactions, and never wait for each
other. The sealer (a background task in every service process, and the first step of
verify) takes one exclusive lock, reads the last seal, and gives each committed, still
unsealed event the next ``seq`` with

    hash = HMAC-SHA-256(key, prev_hash || canonical(event) [|| |gap_from|sealed_at])

under the current key of ``KMM_AUDIT_KEYS`` (named by the seal's ``key_id``; the key is
never in the database), so the chain runs in seal order. ``gap_from`` records ids found
missing below the event as it is sealed (rolled back, or still running), so that verify
can tell them from deleted events (docs/audit.md, "Missing event ids"). An event whose
transaction commits late (a lower id, committed after a higher one was sealed) is simply
sealed later with a higher ``seq``. Unique ``seq`` and ``event_id`` make two racing
sealers fail safely.

The canonical form is built by the database from the stored row (one SQL expression,
the same bytes on SQLite and PostgreSQL), so sealing and verifying read the event the
same way. It is ``v1`` followed by the fields below, each after a ``|``:

- fixed formats, as they are: id (decimal); at (microseconds since the Unix epoch,
  decimal: UTC by definition, exact, and independent of DateStyle and TimeZone);
  actor_id (32 lowercase hex digits, or ``~`` for none); emergency (``1`` or ``0``);
- free text, each as ``<length in characters>:<text>`` or ``~`` for NULL, so no value
  can shift into its neighbour: actor_kind, actor_role, action, resource_type,
  resource_id, decision, rule, clause, request_id, client_ip, detail (the stored JSON
  text, exactly as written).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.core.audit_keys import AuditKeys, install_audit_keys, installed_keys
from app.core.db import sha256_hex
from app.core.state import AppState
from app.models.audit import GENESIS_HASH, AuditEvent, AuditSeal, ChainReport

log = logging.getLogger("kmm.audit")

EVENTS = cast(Table, AuditEvent.__table__)  # type: ignore[attr-defined]
SEALS = cast(Table, AuditSeal.__table__)  # type: ignore[attr-defined]

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
# Ids missing below an event when it is sealed (a rolled-back transaction's, or one still
# running) are recorded in its seal. Such a record explains them only when the seal was
# written within this time of the event's own time: the sealer runs every half second,
# whereas a seal written long after (every seal deleted, the trail sealed afresh) cannot
# tell a rolled-back id from a deleted event.
GAP_GRACE = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

__all__ = ["GAP_GRACE", "AuditKeys", "install_audit_keys", "installed_keys"]


# -- the canonical form, in SQL -----------------------------------------------------------

class _Sha256Hex(FunctionElement[str]):
    """Hex SHA-256 of a text's UTF-8 bytes, computed by the database."""

    type = String()
    inherit_cache = True
    name = "sha256_hex"


@compiles(_Sha256Hex, "postgresql")
def _sha256_pg(element: _Sha256Hex, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({arg}, 'UTF8')), 'hex')"


@compiles(_Sha256Hex, "sqlite")
def _sha256_sqlite(element: _Sha256Hex, compiler: SQLCompiler, **kw: Any) -> str:
    # Registered on every SQLite connection by app.core.db.
    return f"kmm_sha256_hex({compiler.process(element.clauses, **kw)})"


def _text(sql: str) -> ColumnElement[str]:
    return literal_column(sql, String)


def _free_text(value: ColumnElement[Any]) -> ColumnElement[str]:
    """``<length>:<text>``, or ``~`` for NULL (``||`` with NULL is NULL on both backends)."""
    as_text = sql_cast(value, String)
    return func.coalesce(sql_cast(func.length(as_text), String) + _text("':'") + as_text, _text("'~'"))


def _cat(*parts: ColumnElement[Any]) -> ColumnElement[str]:
    """``a || b || ...`` as PostgreSQL text concatenation (NULL if any part is NULL)."""
    expr = parts[0]
    for part in parts[1:]:
        expr = expr.op("||", return_type=Text)(part)
    return cast(ColumnElement[str], expr)


# The time in microseconds: EXTRACT(epoch) is numeric in PostgreSQL 15, exact everywhere,
# and its numeric multiply made it about an eighth of the form's cost per row. Through a
# double it costs half that, and it is exact within 2**51 microseconds of the Unix epoch
# (1898-08-23 to 2041-05-10): (float8) us is exact below 2**53, and dividing by 1e6
# (date_part) then multiplying by 1e6 round twice, each with a relative error of at most
# 2**-53, so the result is within |us| * 2**-52 < 0.5 of us and the cast to bigint rounds it
# back to us. Outside a window well inside that one (and for +/-infinity, which it refuses
# as before) the numeric EXTRACT stays.
_DOUBLE_EXACT_FROM: ColumnElement[datetime] = literal_column("TIMESTAMPTZ '1900-01-01 00:00:00+00'")
_DOUBLE_EXACT_UNTIL: ColumnElement[datetime] = literal_column("TIMESTAMPTZ '2040-01-01 00:00:00+00'")


def _epoch_us_pg(at: ColumnElement[datetime]) -> ColumnElement[int]:
    """Microseconds since the Unix epoch, exact, the cheap way where it is exact."""
    exact = sql_cast(func.extract("epoch", at) * 1_000_000, BigInteger)
    fast = sql_cast(func.date_part(_text("'epoch'"), at) * 1_000_000, BigInteger)
    return case((and_(at >= _DOUBLE_EXACT_FROM, at < _DOUBLE_EXACT_UNTIL), fast), else_=exact)


def _canonical_event_pg() -> ColumnElement[str]:
    """The canonical form as PostgreSQL builds it cheaply: the same text, fewer calls per row.

    Verifying evaluates this once per event, and each ``||``, cast and function call is
    paid 200,000 times on a 200,000-event trail, so the form is spelled with as few as give
    the same text: every ``|`` rides with the field after it (``coalesce('|' || <length>
    || ':' || x, '|~')`` is ``'|' || coalesce(<length> || ':' || x, '~')``), numbers are
    cast straight to text, the time goes through a double where that is exact (above), and
    the actor id is the hex of its 16 bytes (what ``uuid::text`` is without its dashes).
    tests/workflows/test_audit_canonical.py checks it against the form as first written, on
    awkward rows, and the time on 300,000 values.
    """
    c = EVENTS.c

    def as_text(value: ColumnElement[Any]) -> ColumnElement[str]:
        return sql_cast(value, Text)

    def free(value: ColumnElement[Any]) -> ColumnElement[str]:
        return func.coalesce(_cat(_text("'|'"), as_text(func.length(as_text(value))), _text("':'"), as_text(value)),
                             _text("'|~'"))

    return _cat(
        _text("'v1|'"), as_text(c.id),
        _text("'|'"), as_text(_epoch_us_pg(c.at)),
        _text("'|'"), func.coalesce(func.encode(func.uuid_send(c.actor_id), _text("'hex'")), _text("'~'")),
        _text("'|'"), case((c.emergency, _text("'1'")), else_=_text("'0'")),
        *(free(f) for f in (c.actor_kind, c.actor_role, c.action, c.resource_type, c.resource_id, c.decision,
                            c.rule, c.clause, c.request_id, c.client_ip, c.detail)),
    )


def canonical_event(dialect: str) -> ColumnElement[str]:
    """The SQL expression for an event's canonical serialisation (see the module doc)."""
    if dialect == "postgresql":
        return _canonical_event_pg()
    return _canonical_event_portable(dialect)


def _canonical_event_portable(dialect: str) -> ColumnElement[str]:
    """The canonical form as first written, for any backend (SQLite uses it)."""
    c = EVENTS.c
    at_us: ColumnElement[int]
    if dialect == "postgresql":
        at_us = sql_cast(func.extract("epoch", c.at) * 1_000_000, BigInteger)
    else:  # SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, always six digits
        at_us = (sql_cast(func.strftime(_text("'%s'"), c.at), BigInteger) * 1_000_000
                 + sql_cast(func.substr(c.at, 21, 6), BigInteger))
    # Fixed formats first (no separator can occur in them), then the free-text fields.
    fixed: list[ColumnElement[str]] = [
        sql_cast(c.id, String),
        sql_cast(at_us, String),
        func.coalesce(func.replace(sql_cast(c.actor_id, String), _text("'-'"), _text("''")), _text("'~'")),
        case((c.emergency, _text("'1'")), else_=_text("'0'")),
    ]
    free = [c.actor_kind, c.actor_role, c.action, c.resource_type, c.resource_id, c.decision, c.rule,
            c.clause, c.request_id, c.client_ip, c.detail]
    expr: ColumnElement[str] = _text("'v1'")
    for part in [*fixed, *(_free_text(f) for f in free)]:
        expr = expr + _text("'|'") + part
    return expr


def link_hash(prev_hash: str, canonical: str) -> str:
    """The unkeyed link of a seal made before the chain was keyed (an empty key_id)."""
    return sha256_hex(prev_hash + canonical)


def seal_suffix(*, sealed_at: datetime, gap_from: int | None) -> str:
    """What the MAC covers of the seal itself: for a seal that records missing ids,
    ``|gap_from|sealed_at in µs`` (verify trusts the record only when it was made in time,
    so its time must be authentic); nothing otherwise. The seal's place is covered by the
    links: each MAC covers prev_hash, the MAC of the seal before."""
    if gap_from is None:
        return ""
    return f"|{gap_from}|{(sealed_at - _EPOCH) // timedelta(microseconds=1)}"


def link_mac(key: bytes, prev_hash: str, canonical: str, *, sealed_at: datetime, gap_from: int | None) -> str:
    """HMAC-SHA-256 (hex) of ``prev_hash || canonical(event) || seal_suffix``."""
    message = prev_hash + canonical + seal_suffix(sealed_at=sealed_at, gap_from=gap_from)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


# -- sealing --------------------------------------------------------------------------------

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


async def _seal_passes(engine: AsyncEngine, now: datetime, keys: AuditKeys | None, *, full: bool) -> int:
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
    return await _seal_passes(engine, now, keys, full=False) + await _seal_passes(engine, now, keys, full=True)


# -- verifying --------------------------------------------------------------------------------

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
    await _seal_passes(engine, now, keys, full=False)
    # The pass over every event (for late commits) is an anti-join of the whole trail, a
    # tenth of a verify. It has nothing to do when there are as many events as the last
    # seal's seq, provided the chain is whole: seqs 1..n, each naming a distinct event that
    # exists, which is what the walk checks. So it runs first only when the counts differ,
    # and after the walk when the chain is not whole; if it then seals anything, the walk
    # runs again over the chain as seal_all would have left it.
    swept = not await _as_many_events_as_seals(engine)
    if swept:
        await _seal_passes(engine, now, keys, full=True)
    report = await _walk(engine, keys, expect_head)
    if not report.ok and not swept and await _seal_passes(engine, now, keys, full=True):
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


def _seal_mac_pg(keys: AuditKeys, message: ColumnElement[str]) -> list[tuple[str, ColumnElement[str]]]:
    """Per key id, the MAC as PostgreSQL computes it without pgcrypto: HMAC from sha256().

    H((K xor opad) || H((K xor ipad) || m)), the padded keys read once per statement from
    settings local to the verify transaction (set by _set_pads_pg), so they are neither
    stored nor parameters of the long statement (a slow-statement log shows those).
    """
    message_bytes = func.convert_to(message, _text("'UTF8'"))
    out = []
    for i, key_id in enumerate(keys.ids()):
        ipad = _text(f"(SELECT pg_catalog.decode(pg_catalog.current_setting('kmm.audit_ipad_{i}'), 'hex'))")
        opad = _text(f"(SELECT pg_catalog.decode(pg_catalog.current_setting('kmm.audit_opad_{i}'), 'hex'))")
        inner = func.sha256(ipad.op("||", return_type=LargeBinary)(message_bytes))
        mac = func.encode(func.sha256(opad.op("||", return_type=LargeBinary)(inner)), _text("'hex'"))
        out.append((key_id, cast(ColumnElement[str], mac)))
    return out


async def _set_pads_pg(conn: AsyncConnection, keys: AuditKeys) -> None:
    """Put each key's HMAC pads in transaction-local settings (gone at commit or rollback)."""
    params: dict[str, str] = {}
    calls = []
    for i, key_id in enumerate(keys.ids()):
        ipad, opad = keys.pads(key_id)
        params[f"i{i}"], params[f"o{i}"] = ipad.hex(), opad.hex()
        calls += [f"pg_catalog.set_config('kmm.audit_ipad_{i}', :i{i}, true)",
                  f"pg_catalog.set_config('kmm.audit_opad_{i}', :o{i}, true)"]
    await conn.execute(text("SELECT " + ", ".join(calls)), params)


def _expected_hash(dialect: str, keys: AuditKeys) -> ColumnElement[str]:
    """What a seal's hash must be: the MAC under the key its key_id names; NULL for an
    unknown key; for a seal made before the chain was keyed, the plain SHA-256 link."""
    s = SEALS.c
    canonical = canonical_event(dialect)
    if dialect == "postgresql":
        suffix = _cat(_text("'|'"), sql_cast(s.gap_from, Text), _text("'|'"), sql_cast(_epoch_us_pg(s.sealed_at), Text))
        # CASE, not coalesce(): a strict || still evaluates its arguments on NULL.
        message = _cat(s.prev_hash, canonical, case((s.gap_from.is_(None), _text("''")), else_=suffix))
        macs = _seal_mac_pg(keys, message)
    else:
        # "YYYY-MM-DD HH:MM:SS.ffffff": whole seconds by strftime (exact on a whole second),
        # then the six digits.
        sealed_us = (sql_cast(func.strftime(_text("'%s'"), func.substr(s.sealed_at, 1, 19)), BigInteger) * 1_000_000
                     + sql_cast(func.substr(s.sealed_at, 21, 6), BigInteger))
        suffix = _text("'|'") + sql_cast(s.gap_from, String) + _text("'|'") + sql_cast(sealed_us, String)
        message = s.prev_hash + canonical + case((s.gap_from.is_(None), _text("''")), else_=suffix)
        macs = [(key_id, cast(ColumnElement[str], func.kmm_hmac_sha256_hex(
            bindparam(f"audit_key_{i}", keys.get(key_id), type_=LargeBinary), message)))
            for i, key_id in enumerate(keys.ids())]
    whens = [(s.key_id == literal(key_id, String), mac) for key_id, mac in macs]
    whens.append((s.key_id == _text("''"), _Sha256Hex(s.prev_hash + canonical)))
    return case(*whens)


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
                # The seals meet their events one to one, both in id order in an index, so a
                # merge join streams the two indexes in constant memory. Without statistics
                # on freshly written seals PostgreSQL would rather hash every event, and past
                # work_mem spill the hash to disk in batches (on 200,000 events some 70 MB
                # written and read back, and the verify about 12% slower). Only the hashing
                # query below has a join.
                await conn.execute(text("SET LOCAL enable_hashjoin = off"))
                await _set_pads_pg(conn, keys)
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
                (w.seq == 1, _text(f"'{GENESIS_HASH}'")),
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
            bad_event = or_(e.id.is_(None), s.hash.is_distinct_from(_expected_hash(conn.dialect.name, keys)))
            found, first_bad_event = (
                await conn.execute(
                    select(func.count(e.id), func.min(case((bad_event, s.seq))))
                    .select_from(SEALS.outerjoin(EVENTS, e.id == s.event_id))
                )
            ).one()
            # The unkeyed seals (a partial index holds them) must be seqs 1..n: as many as
            # the highest. Otherwise the first after a keyed one is broken; and so is the
            # first beyond the number the settings accept (anyone can write unkeyed seals).
            unkeyed = s.key_id == _text("''")
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
                .where(s.gap_from.is_not(None), s.key_id != _text("''"), s.event_id > floor + 1))).all()]
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
