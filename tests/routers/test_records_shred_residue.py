"""Shredding leaves no residue (§4.6): the share reasons and named-access consent references of a
destroyed record go with it, and on SQLite neither the database file nor its WAL still holds the
ciphertext, the wrapped data key or those reasons once the DELETE has answered."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.types import Uuid

from app.models.records import RecordNamedAccess, RecordShare
from tests.databases import IS_POSTGRES
from tests.factory import Factory
from tests.policy.org import count, events


async def _raw(factory: Factory, sql: str, record_id: str) -> list[tuple]:  # type: ignore[type-arg]
    query = text(sql).bindparams(bindparam("id", type_=Uuid()))
    async with factory.state.sessionmaker() as session:
        return [tuple(r) for r in (await session.execute(query, {"id": uuid.UUID(record_id)})).all()]


def _database_files(factory: Factory) -> bytes:
    path = Path(make_url(factory.state.settings.database_url).database or "")
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def test_shredding_removes_shares_named_access_and_leaves_no_bytes_on_disk(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    ben = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=alice)
    conf = await factory.record(by=alice, subject=subject, content="residue-content-marker")
    sens = await factory.record(by=alice, subject=subject, classification="sensitive")
    await factory.share(by=alice, record=conf, to=ben, reason="share-reason-marker")
    await factory.named(by=alice, record=sens, to=ben, consent_reference="consent-ref-marker-4711")
    # What is stored: the ciphertexts and wrapped keys, the encrypted share reason.
    secrets: list[bytes] = []
    for rec in (conf, sens):
        [(wrapped, title_ct, content_ct)] = await _raw(
            factory, "SELECT wrapped_key, title_ct, content_ct FROM record_contents WHERE record_id = :id", rec["id"])
        secrets += [bytes(wrapped), bytes(title_ct), bytes(content_ct)]
    [(stored_reason,)] = await _raw(factory, "SELECT reason FROM record_shares WHERE record_id = :id", conf["id"])
    secrets += [stored_reason.encode(), b"consent-ref-marker-4711"]
    if not IS_POSTGRES:
        on_disk = _database_files(factory)
        assert all(s in on_disk for s in secrets)  # the check below can fail

    for rec in (conf, sens):
        r = await client.delete(f"/records/{rec['id']}", params={"reason": "past retention"},
                                headers=manager.headers)
        assert r.status_code == 200, r.text

    assert await count(factory, RecordShare) == 0
    assert await count(factory, RecordNamedAccess) == 0
    assert (await client.get(f"/records/{conf['id']}/shares", headers=manager.headers)).status_code == 410
    assert (await client.get(f"/records/{sens['id']}", headers=ben.headers)).status_code in (403, 410)
    # The audit trail still says who had it, without the reasons.
    shares = await events(factory, action="record.share", resource_id=conf["id"])
    assert [e.detail["user_id"] for e in shares] == [str(ben.id)]
    assert not any("share-reason-marker" in str(e.detail) or "consent-ref-marker" in str(e.detail)
                   for e in await events(factory))
    if not IS_POSTGRES:
        on_disk = _database_files(factory)
        leaked = [i for i, s in enumerate(secrets) if s in on_disk]
        assert leaked == []


async def test_a_refused_destroy_keeps_shares(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    conf = await factory.record(by=alice, subject=subject)
    await factory.share(by=alice, record=conf, to=ben, reason="review")
    r = await client.delete(f"/records/{conf['id']}", params={"reason": "x"}, headers=ben.headers)
    assert r.status_code == 403 and r.json()["clause"]
    assert await count(factory, RecordShare) == 1


async def test_the_retention_sweep_leaves_no_residue_either(client, factory: Factory, clock):
    from datetime import timedelta

    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    past = (clock.now() - timedelta(days=1)).isoformat()
    # A date off the schedule is the custodian's line manager's choice (§6.5).
    conf = await factory.record(by=director, subject=subject, retention_until=past, custodian_id=str(alice.id))
    await factory.share(by=alice, record=conf, to=ben, reason="sweep-share-reason")
    [(wrapped, content_ct)] = await _raw(
        factory, "SELECT wrapped_key, content_ct FROM record_contents WHERE record_id = :id", conf["id"])
    [(stored_reason,)] = await _raw(factory, "SELECT reason FROM record_shares WHERE record_id = :id", conf["id"])
    secrets = [bytes(wrapped), bytes(content_ct), stored_reason.encode()]
    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": False})
    assert r.status_code == 200 and r.json()["count"] == 1, r.text
    assert await count(factory, RecordShare) == 0
    if not IS_POSTGRES:
        on_disk = _database_files(factory)
        assert [i for i, s in enumerate(secrets) if s in on_disk] == []
