"""The authorised read's hot path (DESIGN §11): one query, a group-committed audit event,
and exactly the answer the general path gives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from app.core.db import EngineRowSource
from app.models.audit import AuditEvent
from app.workflows.audit.trail import AuditWriter, event_row
from app.workflows.records import read as records
from tests.factory import Factory
from tests.policy.org import events


class _CountingRows:
    def __init__(self, rows: Any, seen: list[str]) -> None:
        self._rows, self._seen = rows, seen

    async def first(self, stmt: Any, params: dict[str, Any]) -> Any:
        self._seen.append("SELECT")
        return await self._rows.first(stmt, params)

    async def scalars(self, stmt: Any, params: dict[str, Any]) -> list[Any]:
        self._seen.append("SELECT")
        return await self._rows.scalars(stmt, params)


class _CountingSource:
    def __init__(self, source: Any, seen: list[str]) -> None:
        self._source, self._seen = source, seen

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_CountingRows]:
        async with self._source.connection() as rows:
            yield _CountingRows(rows, self._seen)

    async def insert_many(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        self._seen.append("INSERT")
        await self._source.insert_many(stmt, rows)

    async def close(self) -> None:
        await self._source.close()


@contextmanager
def statements(state) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """Every statement a request sends: the hot path's own reads and everything through SQLAlchemy."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(state.engine.sync_engine, "before_cursor_execute", record)
    source, writer = state.rows, state.audit
    if not isinstance(source, EngineRowSource):  # those statements are seen by the listener
        state.rows = _CountingSource(source, seen)
        state.audit = AuditWriter(state.rows)
    try:
        yield seen
    finally:
        state.rows, state.audit = source, writer
        event.remove(state.engine.sync_engine, "before_cursor_execute", record)


def _sent(seen: list[str]) -> list[str]:
    return [s for s in seen if s not in ("BEGIN", "COMMIT")]


MARKERS = ("hot-title-marker", "hot-content-marker")


async def _confidential(factory, who):  # type: ignore[no-untyped-def]
    subject = await factory.subject(by=who)
    return await factory.record(by=who, subject=subject, title=MARKERS[0], content=MARKERS[1])


async def _count_reads(state) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as session:
        return int((await session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "record.read")
        )).scalar_one())


async def test_a_read_asks_the_database_once_then_writes_its_audit_event(client, factory: Factory, state):
    alice = await factory.user("colleague")
    rid = (await _confidential(factory, alice))["id"]
    with statements(state) as seen:
        r = await client.get(f"/records/{rid}", headers=alice.headers)
    assert r.status_code == 200
    assert _sent(seen) == ["SELECT", "INSERT"]


async def test_a_revoked_session_is_refused_by_the_same_query(client, factory: Factory, state):
    alice = await factory.user("colleague")
    headers = dict(alice.headers)
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    with statements(state) as seen:
        r = await client.get("/records/00000000-0000-0000-0000-000000000000", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert _sent(seen) == ["SELECT"]


async def test_an_unknown_record_is_404_for_a_live_session(client, factory: Factory, state):
    alice = await factory.user("colleague")
    with statements(state) as seen:
        r = await client.get("/records/00000000-0000-0000-0000-000000000000", headers=alice.headers)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert _sent(seen) == ["SELECT"]


async def test_a_denial_takes_the_general_path_and_is_audited_there(client, factory: Factory, state):
    alice, bob = await factory.user("colleague"), await factory.user("colleague")
    rid = (await _confidential(factory, alice))["id"]
    with statements(state) as seen:
        r = await client.get(f"/records/{rid}", headers=bob.headers)
    assert r.status_code == 403 and (r.json()["rule"], r.json()["clause"]) == ("shared", "§3.1")
    assert not any(m in r.text for m in MARKERS)
    # The hot path's one query, then the general path's query and its denial event (then
    # breach detection's own look at recent denials).
    assert _sent(seen)[:3] == ["SELECT", "SELECT", "INSERT"]
    denied = [e for e in await events(factory, action="record.read", actor_id=bob.id)]
    assert [(e.decision, e.rule, e.clause) for e in denied] == [("deny", "shared", "§3.1")]


async def _general(state, rid: str, person) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    claims = state.tokens.decode(person.headers["Authorization"].removeprefix("Bearer "), expected="access",
                                 now=state.clock.now())
    async with state.sessionmaker() as session:
        public = await records.read_record_general(session, record_id=uuid.UUID(rid), claims=claims,
                                                   now=state.clock.now(), keyring=state.keyring, rows=state.rows)
    return public.model_dump(mode="json")


async def test_the_hot_path_answers_exactly_as_the_general_path(client, factory: Factory, state):
    """Same body, field by field, for every class and for reads by share, named list and grant."""
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    carol = await factory.user("colleague", manager=manager)
    employee = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=alice)
    general = await factory.record(by=alice, subject=subject, classification="general")
    conf = await factory.record(by=alice, subject=subject)
    sens = await factory.record(by=alice, subject=subject, classification="sensitive")
    emp = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    personnel = await factory.record(by=manager, subject=emp, classification="personnel")
    await factory.share(by=alice, record=conf, to=bob, reason="joint case")
    await factory.named(by=alice, record=sens, to=bob, consent_reference="form 7")
    await factory.grant(by=director, to=carol, record=sens)
    cases = [(alice, general), (bob, general), (alice, conf), (bob, conf), (manager, conf), (director, conf),
             (alice, sens), (bob, sens), (carol, sens), (manager, personnel), (director, personnel)]
    for person, record in cases:
        before = await _count_reads(state)
        r = await client.get(f"/records/{record['id']}", headers=person.headers)
        assert r.status_code == 200, (record["classification"], r.text)
        assert await _count_reads(state) == before + 1
        assert r.json() == await _general(state, record["id"], person), record["classification"]
    assert (await client.get(f"/records/{sens['id']}", headers=bob.headers)).json()["entitled_user_ids"] == [
        str(bob.id)]
    assert (await client.get(f"/records/{sens['id']}", headers=carol.headers)).json()["access"]["emergency"]


async def test_concurrent_reads_share_one_insert_and_each_waits_for_its_commit(client, factory: Factory, state):
    alice = await factory.user("colleague")
    rid = (await _confidential(factory, alice))["id"]
    before = await _count_reads(state)
    with statements(state) as seen:
        answers = await asyncio.gather(*(client.get(f"/records/{rid}", headers=alice.headers) for _ in range(20)))
    assert [r.status_code for r in answers] == [200] * 20
    assert await _count_reads(state) == before + 20
    inserts = _sent(seen).count("INSERT")
    assert 1 <= inserts < 20  # grouped: fewer statements than reads (one per batch in flight)


class _Broken:
    """Statements that fail, as when the database goes away."""

    def __init__(self, rows) -> None:  # type: ignore[no-untyped-def]
        self.rows, self.fail = rows, True

    def connection(self):  # type: ignore[no-untyped-def]
        return self.rows.connection()

    async def insert_many(self, stmt, rows) -> None:  # type: ignore[no-untyped-def]
        if self.fail:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        await self.rows.insert_many(stmt, rows)


async def test_a_read_whose_event_cannot_be_written_returns_nothing(client, factory: Factory, state):
    alice = await factory.user("colleague")
    rid = (await _confidential(factory, alice))["id"]
    before = await _count_reads(state)
    writer = state.audit
    state.audit = AuditWriter(_Broken(state.rows))  # type: ignore[arg-type]
    try:
        r = await client.get(f"/records/{rid}", headers=alice.headers)
    finally:
        state.audit = writer
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert not any(m in r.text for m in MARKERS)
    assert await _count_reads(state) == before


async def test_the_writer_reports_a_failure_to_every_waiter_and_then_recovers(client, state):
    flaky = _Broken(state.rows)
    writer = AuditWriter(flaky)  # type: ignore[arg-type]
    now = state.clock.now()
    row = event_row(now=now, action="test.write")
    results = await asyncio.gather(*(writer.write(dict(row)) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, OperationalError) for r in results)
    flaky.fail = False
    await asyncio.gather(*(writer.write(dict(row)) for _ in range(5)))
    async with state.sessionmaker() as session:
        n = (await session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.write"))).scalar_one()
    assert n == 5


async def test_a_waiter_that_goes_away_does_not_stop_the_batch(client, state):
    now = state.clock.now()
    row = event_row(now=now, action="test.cancel")
    writer = AuditWriter(state.rows)
    first = asyncio.ensure_future(writer.write(dict(row)))
    others = [asyncio.ensure_future(writer.write(dict(row))) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(*others)
    with pytest.raises(asyncio.CancelledError):
        await first
    async with state.sessionmaker() as session:
        n = (await session.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.cancel"))).scalar_one()
    assert n == 4  # the event of the request that went away stands too


async def test_a_refused_consent_is_read_on_the_hot_path_with_its_reason(client, factory: Factory, state):
    """A refusal's reason is encrypted text bound to its row (§1.3, §6.6): the hot path opens
    it itself, so such a read costs one query and one insert like any other."""
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    record = await factory.record(by=alice, subject=subject,
                                  consent={"status": "refused", "refusal_reason": "refusal-marker"})
    with statements(state) as seen:
        r = await client.get(f"/records/{record['id']}", headers=alice.headers)
    assert r.status_code == 200, r.text
    assert r.json()["consent"]["refusal_reason"] == "refusal-marker"
    assert _sent(seen) == ["SELECT", "INSERT"]
    assert r.json() == await _general(state, record["id"], alice)
