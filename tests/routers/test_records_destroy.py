"""Shredding (§4.6): the content goes for good, a tombstone stays; legal hold; labels and caching."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, text
from sqlalchemy.types import Uuid
from sqlmodel import col, update

from app.models.records import Record
from tests.factory import Factory
from tests.policy.org import db_record, events, has_content


async def _raw_content_rows(factory: Factory, record_id: str) -> int:
    query = text("SELECT count(*) FROM record_contents WHERE record_id = :id").bindparams(
        bindparam("id", type_=Uuid()))
    async with factory.state.sessionmaker() as session:
        return int((await session.execute(query, {"id": uuid.UUID(record_id)})).scalar_one())


async def test_destroy_removes_content_and_keeps_a_tombstone(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject, title="shred-title", content="shred-content-marker")
    assert await _raw_content_rows(factory, rec["id"]) == 1
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "past retention"}, headers=manager.headers)
    assert r.status_code == 200, r.text
    tomb = r.json()
    assert tomb == {"id": rec["id"], "subject_id": subject["id"], "classification": "confidential",
                    "destroyed_at": tomb["destroyed_at"], "destroyed_by": str(manager.id), "reason": "past retention"}
    assert tomb["destroyed_at"] is not None
    # Gone for good: no row holds the ciphertext or its key; the record row is the tombstone.
    assert await _raw_content_rows(factory, rec["id"]) == 0
    row = await db_record(factory, rec["id"])
    assert row.destroyed_at is not None and row.destroy_reason == "past retention"
    # Reading it afterwards: 410 with the tombstone and nothing else.
    for who in (manager, alice):
        r = await client.get(f"/records/{rec['id']}", headers=who.headers)
        assert r.status_code == 410, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["tombstone"] == tomb
        assert "shred-content-marker" not in r.text and "shred-title" not in r.text
    r = await client.patch(f"/records/{rec['id']}", json={"title": "x"},
                           headers={**manager.headers, "If-Match": f'"v{row.version}"'})
    assert r.status_code == 410
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "again"}, headers=manager.headers)
    assert r.status_code == 410
    assert (await client.get("/records", headers=manager.headers)).json()["items"] == []
    # One audit event for the shredding, without content.
    shredded = await events(factory, action="record.destroy", resource_id=rec["id"])
    assert [(e.decision, e.rule) for e in shredded] == [("allow", "line-manager")]
    every = await events(factory)
    assert not any("shred-content-marker" in str(e.detail) or "shred-title" in str(e.detail) for e in every)


async def test_someone_who_may_not_read_gets_403_not_the_tombstone(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    other = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    assert (await client.delete(f"/records/{rec['id']}", params={"reason": "r"},
                                headers=director.headers)).status_code == 200
    r = await client.get(f"/records/{rec['id']}", headers=other.headers)
    assert r.status_code == 403 and "tombstone" not in r.json()


async def test_destroy_needs_a_reason(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    for params in ({}, {"reason": ""}):
        r = await client.delete(f"/records/{rec['id']}", params=params, headers=director.headers)
        assert r.status_code == 422 and "reason" in r.json()["detail"]
    assert await has_content(factory, rec["id"])


async def test_legal_hold_blocks_destroy(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    async with factory.state.sessionmaker() as session:
        await session.execute(update(Record).where(col(Record.id) == uuid.UUID(rec["id"])).values(legal_hold=True))
        await session.commit()
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "r"}, headers=director.headers)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["rule"] == "legal-hold"
    row = await db_record(factory, rec["id"])
    assert row.destroyed_at is None and await has_content(factory, rec["id"])
    assert not await events(factory, action="record.destroy", resource_id=rec["id"])


def _assert_protected(r, classification: str) -> None:  # type: ignore[no-untyped-def]
    assert r.headers["cache-control"] == "no-store", r.headers
    assert r.headers["x-confidentiality"] == classification


async def test_labels_and_caching_headers_on_every_non_general_response(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=manager)
    service_user = await factory.subject(by=manager)
    emp = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    for cls in ("confidential", "sensitive", "personnel"):
        subject = emp if cls == "personnel" else service_user
        body = {"subject_id": subject["id"], "title": "t", "content": "c", "classification": cls,
                "purpose": "service_delivery"}
        if cls == "sensitive":
            body["access_requester_id"] = subject["id"]
        r = await client.post("/records", json=body, headers=manager.headers)
        assert r.status_code == 201, r.text
        _assert_protected(r, cls)
        assert r.json()["label"] == "CONFIDENTIAL"
        rid = r.json()["id"]
        r = await client.get(f"/records/{rid}", headers=manager.headers)
        _assert_protected(r, cls)
        assert r.json()["label"] == "CONFIDENTIAL" and r.headers["etag"] == '"v1"'
        r = await client.patch(f"/records/{rid}", json={"title": "t2"}, headers={**manager.headers, "If-Match": '"v1"'})
        _assert_protected(r, cls)
        assert r.json()["label"] == "CONFIDENTIAL"
        r = await client.get("/records", params={"classification": cls}, headers=manager.headers)
        _assert_protected(r, cls)
        assert [i["label"] for i in r.json()["items"]] == ["CONFIDENTIAL"]
    # A list page mixing classes says the most restrictive one.
    r = await client.get("/records", headers=manager.headers)
    _assert_protected(r, "personnel")
    # General: no label, no confidentiality header.
    general = await factory.record(by=manager, subject=service_user, classification="general")
    assert general["label"] is None
    r = await client.get(f"/records/{general['id']}", headers=manager.headers)
    assert r.json()["label"] is None and "x-confidentiality" not in r.headers
    r = await client.get("/records", params={"classification": "general"}, headers=manager.headers)
    assert "x-confidentiality" not in r.headers and r.headers["cache-control"] == "no-store"  # still about someone
