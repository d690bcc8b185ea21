"""GET /records/{id}/access-log (DESIGN §6) and the rule that no event or log line holds content."""

import asyncio
import logging

import pytest
from sqlalchemy import func
from sqlmodel import select

from app.models.audit import AuditEvent
from app.workflows.audit.seal import seal_all
from app.workflows.audit.verify import verify_chain
from tests.factory import Factory

MARKER = "Zq-Marker-41c7-Content"


async def _org(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    subject_id = (await factory.subject(by=alice, name="Sam"))["id"]
    return director, manager, alice, bob, subject_id


async def _record(factory: Factory, person, subject_id, classification="confidential", **kw):
    return await factory.record(by=person, subject=subject_id, classification=classification,
                                title=f"{MARKER} title", content=f"{MARKER} content", **kw)


async def test_the_access_log_lists_reads_with_rule_and_flags_emergencies(client, factory: Factory, clock):
    director, manager, alice, bob, subject_id = await _org(client, factory)
    rec = await _record(factory, alice, subject_id)
    assert (await client.get(f"/records/{rec['id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"/records/{rec['id']}", headers=manager.headers)).status_code == 200
    assert (await client.get(f"/records/{rec['id']}", headers=bob.headers)).status_code == 403  # not a read
    await factory.grant(by=director, to=bob, record=rec)
    assert (await client.get(f"/records/{rec['id']}", headers=bob.headers)).status_code == 200
    r = await client.get(f"/records/{rec['id']}/access-log", headers=alice.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["custodian_id"] == str(alice.id) and body["custodian_line_manager_id"] == str(manager.id)
    got = [(i["actor_id"], i["rule"], i["emergency"]) for i in body["items"]]
    assert got == [(str(bob.id), "emergency", True), (str(manager.id), "line-manager", False),
                   (str(alice.id), "custodian", False)]
    # pages, newest first
    r = await client.get(f"/records/{rec['id']}/access-log", headers=director.headers, params={"limit": 2})
    assert r.status_code == 200 and len(r.json()["items"]) == 2 and r.json()["next_cursor"]
    r2 = await client.get(f"/records/{rec['id']}/access-log", headers=director.headers,
                          params={"limit": 2, "cursor": r.json()["next_cursor"]})
    assert [i["actor_id"] for i in r2.json()["items"]] == [str(alice.id)]


async def test_only_those_answerable_and_directors_see_the_access_log(client, factory: Factory, state):
    director, manager, alice, bob, subject_id = await _org(client, factory)
    rec = await _record(factory, alice, subject_id, classification="sensitive", access_requester_id=subject_id)
    r = await client.get(f"/records/{rec['id']}/access-log", headers=bob.headers)
    assert r.status_code == 403
    assert (r.json()["rule"], r.json()["clause"]) == ("custodian", "§4.2, §3.2")  # answerable for it: may update
    assert MARKER not in r.text
    # a director sees who read a sensitive record, though not the record itself (§3.2)
    assert (await client.get(f"/records/{rec['id']}", headers=director.headers)).status_code == 403
    assert (await client.get(f"/records/{rec['id']}/access-log", headers=director.headers)).status_code == 200
    async with state.sessionmaker() as s:
        denied = (await s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "record.access_log", AuditEvent.decision == "deny"))).scalar_one()
    assert denied == 1
    assert (await client.get("/records/00000000-0000-0000-0000-000000000000/access-log",
                             headers=director.headers)).status_code == 404


async def test_nobody_sees_the_access_log_of_their_own_personnel_file(client, factory: Factory, state):
    """The exclusion of one's own personnel file (§3.6) holds for its access log too: a director
    it is about does not see who read it (an investigation's reads included); another director
    does."""
    boss = await factory.user("director")
    other = await factory.user("director")
    file = await factory.record(by=other, subject=await factory.employee_subject(by=other, employee=boss),
                                classification="personnel")
    assert (await client.get(f"/records/{file['id']}", headers=other.headers)).status_code == 200
    r = await client.get(f"/records/{file['id']}/access-log", headers=boss.headers)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert (r.json()["rule"], r.json()["clause"]) == ("personnel", "§3.6")
    assert str(other.id) not in r.text and "items" not in r.json()
    r = await client.get(f"/records/{file['id']}/access-log", headers=other.headers)
    assert r.status_code == 200 and [e["actor_id"] for e in r.json()["items"]] == [str(other.id)]
    async with state.sessionmaker() as s:
        denied = (await s.execute(select(AuditEvent.actor_id).where(
            AuditEvent.action == "record.access_log", AuditEvent.decision == "deny"))).scalars().all()
    assert denied == [boss.id]


async def test_no_event_and_no_log_line_holds_record_content(client, factory: Factory, state, caplog):
    caplog.set_level(logging.DEBUG, logger="kmm")  # the service's own loggers, at their most verbose
    director, manager, alice, bob, subject_id = await _org(client, factory)
    rec = await _record(factory, alice, subject_id)
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    etag = r.headers["etag"]
    r = await client.patch(f"/records/{rec['id']}", headers={**alice.headers, "If-Match": etag},
                           json={"content": f"{MARKER} v2", "title": f"{MARKER} t2"})
    assert r.status_code == 200, r.text
    assert (await client.post(f"/records/{rec['id']}/shares", headers=alice.headers,
                              json={"user_id": str(bob.id), "reason": f"{MARKER} reason"})).status_code == 201
    assert (await client.get(f"/records/{rec['id']}", headers=bob.headers)).status_code == 200
    assert (await client.get(f"/records/{rec['id']}/access-log", headers=alice.headers)).status_code == 200
    assert (await client.delete(f"/records/{rec['id']}", headers=manager.headers,
                                params={"reason": f"{MARKER} why"})).status_code == 200
    async with state.sessionmaker() as s:
        events = list((await s.execute(select(AuditEvent))).scalars())
    assert {e.action for e in events} >= {"record.create", "record.read", "record.update", "record.share",
                                         "record.destroy", "record.access_log"}
    for e in events:
        assert MARKER not in e.model_dump_json()
    assert caplog.records, "the request log should have lines to check"
    for line in caplog.records:
        assert MARKER not in line.getMessage() and MARKER not in str(line.__dict__)


@pytest.mark.postgres_only
async def test_a_thousand_concurrent_reads_leave_a_thousand_events_and_a_whole_chain(client, factory: Factory, state):
    _, _, alice, _, subject_id = await _org(client, factory)
    rec = await _record(factory, alice, subject_id)
    gate = asyncio.Semaphore(state.settings.database_pool_size * 2)  # what the pool serves at once

    async def read():
        async with gate:
            return (await client.get(f"/records/{rec['id']}", headers=alice.headers)).status_code

    statuses = await asyncio.gather(*(read() for _ in range(1000)))
    assert statuses == [200] * 1000
    async with state.sessionmaker() as s:
        reads = (await s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "record.read", AuditEvent.resource_id == rec["id"]))).scalar_one()
    assert reads == 1000
    await seal_all(state.engine, state.clock.now())
    report = await verify_chain(state.engine, state.clock.now())
    assert report.ok and report.pending == 0
