"""No update is ever lost: twenty PATCHes with the same ETag, exactly one wins (DESIGN §4)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from app.core.db import make_engine, make_sessionmaker
from app.core.errors import Problem
from app.models.records import RecordUpdate
from app.policy.actor import Actor
from app.workflows.records import commands as records
from tests.factory import Factory
from tests.policy.org import db_record, events

N = 20


async def test_twenty_concurrent_patches_one_wins(client, factory: Factory):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    headers = {**alice.headers, "If-Match": '"v1"'}
    responses = await asyncio.gather(*[
        client.patch(f"/records/{rec['id']}", json={"content": f"writer {i}"}, headers=headers) for i in range(N)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (N - 1), statuses
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.headers["etag"] == '"v2"'
    assert all(r.json()["type"].endswith("precondition-failed") for r in responses if r.status_code == 412)
    assert (await db_record(factory, rec["id"])).version == 2
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    assert r.json()["content"] == winner.json()["content"] and r.json()["version"] == 2
    assert len(await events(factory, action="record.update", resource_id=rec["id"])) == 1


async def test_if_match_missing_is_428_and_garbage_is_412(client, factory: Factory):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    for headers, status in (({}, 428), ({"If-Match": "*"}, 428), ({"If-Match": "nonsense"}, 412),
                            ({"If-Match": '"v9"'}, 412)):
        r = await client.patch(f"/records/{rec['id']}", json={"title": "x"}, headers={**alice.headers, **headers})
        assert r.status_code == status, (headers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await db_record(factory, rec["id"])).version == 1
    r = await client.patch(f"/records/{rec['id']}", json={"title": "x"},
                           headers={**alice.headers, "If-Match": 'W/"v1"'})
    assert r.status_code == 200 and r.headers["etag"] == '"v2"'


@pytest.mark.postgres_only
async def test_twenty_threads_on_separate_connections_one_wins(client, factory: Factory, settings):
    """Each thread has its own engine and event loop; they all update version 1 at once."""
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    actor = Actor.for_user(alice.user)
    state = factory.state
    barrier = threading.Barrier(N)
    outcomes: list[Any] = []
    lock = threading.Lock()

    async def one(i: int) -> Any:
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine)() as session:
                await session.connection()  # connect before the race starts
                await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
                try:
                    out = await records.update_record(
                        session, record_id=uuid.UUID(rec["id"]), data=RecordUpdate(content=f"writer {i}"),
                        expected=1, actor=actor, now=state.clock.now(), keyring=state.keyring,
                        settings=settings)
                    return out.version
                except Problem as exc:
                    return exc.status
        finally:
            await engine.dispose()

    def run(i: int) -> None:
        result = asyncio.run(one(i))
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == N
    assert sorted(outcomes) == [2] + [412] * (N - 1), outcomes
    assert (await db_record(factory, rec["id"])).version == 2
