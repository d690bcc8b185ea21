"""The audit trail: atomic with its change, chained by the sealer, tamper-evident (DESIGN §6)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.core.audit_keys import AuditKeys
from app.core.db import make_engine
from app.models.audit import GENESIS_HASH, AuditEvent, AuditSeal
from app.models.users import User, UserCreate, UserUpdate
from app.policy.actor import Actor
from app.workflows import background
from app.workflows.audit import seal, verify
from app.workflows.audit.canonical import canonical_event
from app.workflows.audit.links import SEALS, link_hash, link_mac
from app.workflows.audit.seal import seal_all, seal_pending
from app.workflows.audit.trail import add_event
from app.workflows.audit.verify import verify_chain
from app.workflows.users import create_user, update_user
from tests.audit_helpers import count, event_ids, tamper
from tests.databases import IS_POSTGRES
from tests.factory import PASSWORD, Factory

AT = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
ACTOR = uuid.UUID("abcdef01-2345-6789-abcd-ef0123456789")
# The canonical bytes of the event below, and its hash as the first link: the same on
# SQLite and PostgreSQL (this test runs on both).
GOLDEN_CANONICAL = (
    "v1|1|1767323045123456|abcdef0123456789abcdef0123456789|0|4:user|8:director|12:account.read"
    "|4:user|5:7:1:2|5:allow|8:director|4:§3.4|~|9:127.0.0.1|19:{\"fields\": [\"a|b\"]}"
)


async def _add_golden_event(state) -> None:
    async with state.sessionmaker() as session:
        session.add(AuditEvent(id=1, at=AT, actor_id=ACTOR, actor_kind="user", actor_role="director",
                               action="account.read", resource_type="user", resource_id="7:1:2",
                               decision="allow", rule="director", clause="§3.4", client_ip="127.0.0.1",
                               detail={"fields": ["a|b"]}))
        # resource_id "7:1:2" and a "|" in detail: length prefixes keep the fields apart.
        session.add(AuditEvent(id=2, at=AT, action="u", resource_type="user", detail={}))
        await session.commit()


async def test_canonical_form_and_hash_are_fixed_and_backend_independent(client, state):
    await _add_golden_event(state)
    async with state.engine.connect() as conn:
        canonical = (
            await conn.execute(select(canonical_event(conn.dialect.name)).where(AuditEvent.id == 1))
        ).scalar_one()
    assert canonical == GOLDEN_CANONICAL
    keys = AuditKeys([bytes(32)])
    assert await seal_all(state.engine, AT, keys) == 2
    async with state.sessionmaker() as session:
        first = (await session.execute(select(AuditSeal).where(AuditSeal.seq == 1))).scalar_one()
    assert first.event_id == 1
    assert first.prev_hash == GENESIS_HASH
    assert first.hash == link_mac(bytes(32), GENESIS_HASH, GOLDEN_CANONICAL, sealed_at=AT, gap_from=None)
    assert first.hash == "30d3b60d746194ea563dc3b6450e7f7d8bd3db77df976e0557a370addb2ca351"
    assert (await verify_chain(state.engine, AT, keys)).ok


async def test_an_event_commits_with_its_change(client, state, factory: Factory):
    director = await factory.user("director")
    before = await count(state, AuditEvent)
    async with state.sessionmaker() as session:
        user = await create_user(
            session, data=UserCreate(email="new@test.kmm", full_name="New", role="colleague",
                                     staff_type="employee", password=PASSWORD),
            passwords=state.passwords, now=state.clock.now(), actor=_actor(director.user))
    assert await count(state, AuditEvent) == before + 1
    async with state.sessionmaker() as session:
        event = (await session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))).scalar_one()
    assert (event.action, event.resource_id, event.actor_id) == ("account.create", str(user.id), director.id)


async def test_a_failure_after_the_change_leaves_neither_change_nor_event(client, state, monkeypatch):
    def add_then_fail(session, **kwargs):
        add_event(session, **kwargs)
        raise RuntimeError("forced failure after the change and its event")

    monkeypatch.setattr("app.workflows.users.add_event", add_then_fail)
    with pytest.raises(RuntimeError):
        async with state.sessionmaker() as session:
            await create_user(
                session, data=UserCreate(email="ghost@test.kmm", full_name="Ghost", role="colleague",
                                         staff_type="employee", password=PASSWORD),
                passwords=state.passwords, now=state.clock.now(), actor=None)
    async with state.sessionmaker() as session:
        users = (await session.execute(select(func.count()).where(User.email == "ghost@test.kmm"))).scalar_one()
    assert users == 0
    assert await count(state, AuditEvent) == 0


async def test_a_queued_event_is_written_by_the_commit_and_dropped_by_a_rollback(client, state):
    async with state.sessionmaker() as session:
        add_event(session, now=state.clock.now(), action="test.change", resource_type="user")
        await session.flush()
        # queued on the session, inserted inside the commit's own transaction
        assert (await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one() == 0
        await session.rollback()
        await session.commit()  # nothing left to write after the rollback
    assert await count(state, AuditEvent) == 0
    async with state.sessionmaker() as session:
        add_event(session, now=state.clock.now(), action="test.change", resource_type="user")
        await session.commit()
    assert await count(state, AuditEvent) == 1


def _actor(user: User) -> Actor:
    return Actor(id=user.id, kind="user", role=user.role)


async def test_event_detail_names_fields_never_values(client, state, factory: Factory):
    director = await factory.user("director")
    colleague = await factory.user("colleague")
    secret_name = "Marker-7f3c Unique Name"
    async with state.sessionmaker() as session:
        await update_user(session, user_id=colleague.id, data=UserUpdate(full_name=secret_name),
                                   now=state.clock.now(), actor=_actor(director.user))
    async with state.sessionmaker() as session:
        events = list((await session.execute(select(AuditEvent))).scalars())
    update = [e for e in events if e.action == "account.update"]
    assert update and update[0].detail == {"fields": ["full_name"]}
    for event in events:
        assert "Marker-7f3c" not in event.model_dump_json()


async def test_concurrent_logins_make_one_unbroken_chain(client, state, factory: Factory):
    # 50 accounts, 4 logins each: fewer in flight per account than the lockout threshold,
    # which counts an attempt as failed until its password check succeeds.
    people = [await factory.user("colleague", login=False) for _ in range(50)]
    # As many in flight as the connection pool serves (more would only queue for it).
    gate = asyncio.Semaphore(state.settings.database_pool_size * 2)

    async def login(person):
        async with gate:
            return await factory.login(person)

    results = await asyncio.gather(*(login(p) for p in people for _ in range(4)))
    assert [r.status_code for r in results] == [200] * 200
    total = await count(state, AuditEvent)
    assert total == 250  # 50 account.create + 200 logins
    assert await seal_all(state.engine, state.clock.now()) == total
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.checked, report.pending, report.last_seq) == (True, total, 0, total)
    async with state.sessionmaker() as session:
        seqs = list((await session.execute(select(AuditSeal.seq).order_by(AuditSeal.seq))).scalars())
        sealed = set((await session.execute(select(AuditSeal.event_id))).scalars())
    assert seqs == list(range(1, total + 1))
    assert sealed == set(await event_ids(state))


async def test_sealing_again_adds_nothing_and_continues_the_chain(client, state):
    async with state.sessionmaker() as session:
        for i in range(3):
            add_event(session, now=state.clock.now(), action=f"test.{i}")
        await session.commit()
    assert await seal_all(state.engine, state.clock.now()) == 3
    assert await seal_all(state.engine, state.clock.now()) == 0
    async with state.sessionmaker() as session:
        add_event(session, now=state.clock.now(), action="test.later")
        await session.commit()
    assert await seal_pending(state.engine, state.clock.now(), full=False) == 1
    async with state.sessionmaker() as session:
        seals = list((await session.execute(select(AuditSeal).order_by(AuditSeal.seq))).scalars())
    assert [s.seq for s in seals] == [1, 2, 3, 4]
    assert all(b.prev_hash == a.hash for a, b in zip(seals, seals[1:], strict=False))
    assert (await verify_chain(state.engine, state.clock.now())).ok


async def test_verify_of_an_empty_trail_is_ok(client, state):
    report = await verify_chain(state.engine, state.clock.now())
    assert report.model_dump() == {"ok": True, "checked": 0, "first_broken_id": None, "pending": 0,
                                   "last_seq": 0, "head_hash": GENESIS_HASH, "head_event_id": None,
                                   "head": f"0:{GENESIS_HASH}", "missing": 0, "expected_head_found": None,
                                   "unkeyed": 0}


async def _sealed_events(state, n: int = 5) -> list[int]:
    async with state.sessionmaker() as session:
        for i in range(n):
            add_event(session, now=state.clock.now(), action="record.read", resource_type="record",
                      resource_id=str(uuid.uuid4()), decision="allow", rule="custodian", clause="§4.2",
                      detail={"n": i})
        await session.commit()
    await seal_all(state.engine, state.clock.now())
    assert (await verify_chain(state.engine, state.clock.now())).ok
    return await event_ids(state)


async def test_an_altered_event_is_named(client, state):
    ids = await _sealed_events(state)
    await tamper(state, "UPDATE audit_events SET decision = 'deny' WHERE id = :id", {"id": ids[2]},
                 table="audit_events")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id, report.checked) == (False, ids[2], 5)


async def test_an_altered_detail_or_time_is_named(client, state):
    ids = await _sealed_events(state)
    await tamper(state, "UPDATE audit_events SET detail = '{\"n\": 99}' WHERE id = :id", {"id": ids[3]},
                 table="audit_events")
    earlier = datetime(2020, 1, 1, tzinfo=UTC) if IS_POSTGRES else "2020-01-01 00:00:00.000000"
    await tamper(state, "UPDATE audit_events SET at = :at WHERE id = :id", {"id": ids[1], "at": earlier},
                 table="audit_events")
    assert (await verify_chain(state.engine, state.clock.now())).first_broken_id == ids[1]


async def test_an_altered_seal_hash_is_named(client, state):
    ids = await _sealed_events(state)
    await tamper(state, "UPDATE audit_seals SET hash = :h WHERE event_id = :id", {"id": ids[1], "h": "f" * 64},
                 table="audit_seals")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id) == (False, ids[1])


async def test_a_rewritten_link_is_named(client, state):
    ids = await _sealed_events(state)
    # Recompute a consistent hash for a changed prev_hash: the seal before no longer matches.
    await tamper(state, "UPDATE audit_seals SET prev_hash = :h WHERE event_id = :id",
                 {"id": ids[3], "h": "a" * 64}, table="audit_seals")
    assert (await verify_chain(state.engine, state.clock.now())).first_broken_id == ids[3]


async def test_a_deleted_event_is_named(client, state):
    ids = await _sealed_events(state)
    await tamper(state, "DELETE FROM audit_events WHERE id = :id", {"id": ids[2]}, table="audit_events")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id) == (False, ids[2])


async def test_a_deleted_seal_breaks_the_chain_at_the_next_event(client, state):
    ids = await _sealed_events(state)
    await tamper(state, "DELETE FROM audit_seals WHERE event_id = :id", {"id": ids[1]}, table="audit_seals")
    report = await verify_chain(state.engine, state.clock.now())
    # seq 2 is gone: seq 3 no longer follows seq 1. (Verify re-sealed the orphaned event at the tail.)
    assert (report.ok, report.first_broken_id, report.pending) == (False, ids[2], 0)


async def test_a_single_event_verifies_and_its_link_is_checked(client, state):
    (only,) = await _sealed_events(state, 1)
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.checked, report.last_seq, report.first_broken_id) == (True, 1, 1, None)
    # The first link must start from the genesis hash, even with a hash made to match.
    async with state.engine.connect() as conn:
        canonical = (await conn.execute(
            select(canonical_event(conn.dialect.name)).where(AuditEvent.id == only))).scalar_one()
    await tamper(state, "UPDATE audit_seals SET prev_hash = :p, hash = :h WHERE seq = 1",
                 {"p": "a" * 64, "h": link_hash("a" * 64, canonical)}, table="audit_seals")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.checked, report.first_broken_id) == (False, 1, only)


async def test_the_first_broken_link_is_named_whichever_check_finds_it(client, state):
    ids = await _sealed_events(state, 6)
    # Seal 2 re-hashed over a forged prev_hash: its own hash checks out, only its link does
    # not (and seal 3's link no longer matches seal 2). Event 5 is changed as well, later.
    async with state.engine.connect() as conn:
        canonical = (await conn.execute(
            select(canonical_event(conn.dialect.name)).where(AuditEvent.id == ids[1]))).scalar_one()
    await tamper(state, "UPDATE audit_seals SET prev_hash = :p, hash = :h WHERE seq = 2",
                 {"p": "b" * 64, "h": link_hash("b" * 64, canonical)}, table="audit_seals")
    await tamper(state, "UPDATE audit_events SET decision = 'deny' WHERE id = :id", {"id": ids[4]},
                 table="audit_events")
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.first_broken_id, report.checked) == (False, ids[1], 6)


async def test_a_missing_first_seal_breaks_the_chain_at_the_next(client, state):
    ids = await _sealed_events(state, 3)
    await tamper(state, "DELETE FROM audit_seals WHERE seq = 1", table="audit_seals")
    report = await verify_chain(state.engine, state.clock.now())
    # seq 2 no longer follows a seal at seq 1. (Verify re-sealed the orphaned event at the tail.)
    assert (report.ok, report.first_broken_id, report.pending, report.last_seq) == (False, ids[1], 0, 4)


async def _events_with_ids(state, *ids: int) -> None:
    async with state.engine.begin() as conn:
        await conn.execute(insert(AuditEvent), [{"id": i, "at": state.clock.now(), "action": f"test.{i}",
                                                 "emergency": False, "detail": {}} for i in ids])


async def test_verify_seals_a_late_commit_far_below_the_newest_seal(client, state, monkeypatch):
    monkeypatch.setattr(seal, "LOOKBACK_IDS", 3)
    await _events_with_ids(state, *range(100, 110))
    assert await seal_all(state.engine, state.clock.now()) == 10
    await _events_with_ids(state, 5)  # committed late, with an id the cheap pass does not look at
    assert await seal_pending(state.engine, state.clock.now(), full=False) == 0
    report = await verify_chain(state.engine, state.clock.now())
    assert (report.ok, report.checked, report.pending, report.last_seq) == (True, 11, 0, 11)


async def test_verify_skips_the_full_pass_only_while_the_chain_is_whole(client, state, monkeypatch):
    monkeypatch.setattr(seal, "LOOKBACK_IDS", 3)
    calls: list[str] = []
    real_pass, real_walk = seal.seal_pending, verify._walk

    async def seal_spy(*args, **kwargs):
        calls.append("full" if kwargs["full"] else "cheap")
        return await real_pass(*args, **kwargs)

    async def walk_spy(*args, **kwargs):
        calls.append("walk")
        return await real_walk(*args, **kwargs)

    await _events_with_ids(state, *range(100, 105))
    await seal_all(state.engine, state.clock.now())
    monkeypatch.setattr(seal, "seal_pending", seal_spy)
    monkeypatch.setattr(verify, "_walk", walk_spy)
    assert (await verify_chain(state.engine, state.clock.now())).ok
    assert calls == ["cheap", "walk"]  # as many events as seals: no anti-join over the whole trail
    # An event deleted under its seal, and a late commit far below: as many events as seals
    # again, but the chain is not whole, so verify seals as seal_all would have, and walks again.
    await tamper(state, "DELETE FROM audit_events WHERE id = 102", table="audit_events")
    await _events_with_ids(state, 5)
    calls.clear()
    report = await verify_chain(state.engine, state.clock.now())
    assert calls == ["cheap", "walk", "full", "walk"]
    assert (report.ok, report.first_broken_id, report.checked, report.pending, report.last_seq) == (
        False, 102, 6, 0, 6)
    # Now 5 events and 6 seals: the counts differ, so the full pass runs first, as before.
    calls.clear()
    report = await verify_chain(state.engine, state.clock.now())
    assert calls == ["cheap", "full", "walk"]
    assert (report.ok, report.first_broken_id, report.checked, report.pending) == (False, 102, 6, 0)


async def test_verify_of_a_broken_chain_with_nothing_to_seal_walks_once(client, state, monkeypatch):
    calls: list[str] = []
    real_pass, real_walk = seal.seal_pending, verify._walk

    async def seal_spy(*args, **kwargs):
        calls.append("full" if kwargs["full"] else "cheap")
        return await real_pass(*args, **kwargs)

    async def walk_spy(*args, **kwargs):
        calls.append("walk")
        return await real_walk(*args, **kwargs)

    ids = await _sealed_events(state, 4)
    await tamper(state, "UPDATE audit_events SET action = 'x' WHERE id = :id", {"id": ids[1]},
                 table="audit_events")
    monkeypatch.setattr(seal, "seal_pending", seal_spy)
    monkeypatch.setattr(verify, "_walk", walk_spy)
    report = await verify_chain(state.engine, state.clock.now())
    # The counts agree but the chain is not whole: the full pass runs after the walk, finds
    # nothing to seal, and the walk's report stands.
    assert calls == ["cheap", "walk", "full"]
    assert (report.ok, report.first_broken_id, report.checked, report.pending) == (False, ids[1], 4, 0)


async def test_two_sealers_cannot_write_the_same_position_or_event(client, state):
    await _sealed_events(state, 2)
    async with state.engine.connect() as conn:
        ids = await event_ids(state)
        for row in ({"seq": 1, "event_id": ids[0]}, {"seq": 3, "event_id": ids[0]}):
            with pytest.raises(IntegrityError):
                async with conn.begin():
                    await conn.execute(insert(SEALS).values(prev_hash=GENESIS_HASH, hash="0" * 64,
                                                            sealed_at=state.clock.now(), **row))


@pytest.mark.postgres_only
async def test_a_late_commit_is_sealed_later_with_a_higher_seq(client, state):
    async with state.sessionmaker() as slow, state.sessionmaker() as fast:
        # inserted now (so it takes the lower id), committed last
        await slow.execute(insert(AuditEvent).values(at=state.clock.now(), action="test.slow", emergency=False,
                                                     detail={}))
        add_event(fast, now=state.clock.now(), action="test.fast")
        await fast.commit()
        assert await seal_all(state.engine, state.clock.now()) == 1
        await slow.commit()
    assert await seal_pending(state.engine, state.clock.now(), full=False) == 1
    async with state.sessionmaker() as session:
        rows = (await session.execute(
            select(AuditEvent.action, AuditSeal.seq).join(AuditSeal, AuditSeal.event_id == AuditEvent.id)
            .order_by(AuditEvent.id))).all()
    assert [tuple(r) for r in rows] == [("test.slow", 2), ("test.fast", 1)]
    assert (await verify_chain(state.engine, state.clock.now())).ok


@pytest.mark.postgres_only
async def test_several_processes_sealing_while_events_arrive(client, state, settings):
    """Writers and sealers on separate engines (as separate service processes would be)."""
    engines = [make_engine(settings) for _ in range(3)]
    writers_done = asyncio.Event()

    async def writer(engine, n: int) -> None:
        for i in range(n):
            async with engine.begin() as conn:
                await conn.execute(insert(AuditEvent).values(at=state.clock.now(), action=f"test.w{i}",
                                                             emergency=False, detail={}))

    async def sealer(engine, *, wait: bool) -> None:
        passes = 0
        while not writers_done.is_set():
            await seal_pending(engine, state.clock.now(), limit=7, full=passes % 3 == 0, wait=wait)
            passes += 1

    try:
        sealers = [asyncio.create_task(sealer(e, wait=i != 0)) for i, e in enumerate(engines)]
        await asyncio.gather(*(writer(e, 40) for e in engines))
        writers_done.set()
        await asyncio.gather(*sealers)
        report = await verify_chain(engines[0], state.clock.now())
    finally:
        for engine in engines:
            await engine.dispose()
    assert (report.ok, report.checked, report.pending) == (True, 120, 0)
    async with state.sessionmaker() as session:
        seqs = list((await session.execute(select(AuditSeal.seq).order_by(AuditSeal.seq))).scalars())
        distinct = (await session.execute(select(func.count(func.distinct(AuditSeal.event_id))))).scalar_one()
    assert seqs == list(range(1, 121))
    assert distinct == 120 == await count(state, AuditEvent)


@pytest.mark.postgres_only
@pytest.mark.parametrize("table", ["audit_events", "audit_seals"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}", "TRUNCATE {t} CASCADE"])
async def test_postgres_refuses_to_change_the_trail(client, state, table, statement):
    await _sealed_events(state, 2)
    column = "action" if table == "audit_events" else "hash"
    with pytest.raises(DBAPIError, match="append-only"):
        async with state.engine.begin() as conn:
            await conn.execute(text(statement.format(t=table, c=column)))
    assert await count(state, AuditEvent) == 2
    assert await count(state, AuditSeal) == 2


@pytest.mark.postgres_only
async def test_the_guard_refuses_even_a_statement_that_matches_nothing(client, state):
    with pytest.raises(DBAPIError, match="append-only"):
        async with state.engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_events WHERE id < 0"))


async def test_the_background_sealer_chains_events_and_stops_cleanly(client, state, monkeypatch, caplog):
    real = seal.seal_pending
    calls = 0
    sealed = asyncio.Event()

    async def flaky(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DBAPIError("INSERT ... secret-value", None, Exception("boom"))
        n = await real(*args, **kwargs)
        if await count(state, AuditSeal) == 3:
            sealed.set()
        return n

    monkeypatch.setattr(seal, "seal_pending", flaky)
    monkeypatch.setattr(state.settings, "audit_seal_interval_seconds", 0.01)
    async with state.sessionmaker() as session:
        for i in range(3):
            add_event(session, now=state.clock.now(), action=f"test.{i}")
        await session.commit()
    caplog.set_level(logging.WARNING, logger="kmm.audit")
    tasks = background.start(state)
    try:
        await asyncio.wait_for(sealed.wait(), timeout=30)
    finally:
        await background.stop(tasks)
    assert all(t.done() for t in tasks)
    assert calls >= 2  # the failed pass was retried
    failures = [r for r in caplog.records if r.name == "kmm.audit"]
    assert failures and failures[0].getMessage() == "audit sealer pass failed; retrying"
    assert failures[0].error == "DBAPIError"
    assert "secret-value" not in caplog.text
    assert (await verify_chain(state.engine, state.clock.now())).ok


async def test_the_background_full_pass_looks_only_at_recent_events_and_verify_at_all(client, state):
    from datetime import timedelta

    from app.workflows.audit.seal import FULL_SWEEP_HORIZON

    now = state.clock.now()
    async with state.sessionmaker() as session:
        add_event(session, now=now - FULL_SWEEP_HORIZON - timedelta(hours=1), action="test.ancient")
        add_event(session, now=now - timedelta(minutes=5), action="test.recent")
        await session.commit()
    # What run_sealer does on its full passes: the recent event only.
    assert await seal_pending(state.engine, now, full=True, since=now - FULL_SWEEP_HORIZON) == 1
    assert await seal_pending(state.engine, now, full=True, since=now - FULL_SWEEP_HORIZON) == 0
    report = await verify_chain(state.engine, now)  # seals everything first, the ancient event too
    assert report.ok and report.checked == 2 and report.pending == 0
