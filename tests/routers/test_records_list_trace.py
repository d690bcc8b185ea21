"""Lists and exports leave a trace on each record they showed (DESIGN §6): the list's one
event names the ids shown (never a title), the record's access log and an access package's
history include list views, and the access log includes exports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from tests import dataprot as dp
from tests.factory import Factory, Person

MARKER = "Lt-Marker-5b2d-Title"


async def _team(factory: Factory) -> tuple[Person, Person, Person, Person]:
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    return director, manager, alice, bob


async def _record(factory: Factory, person: Person, subject_id: str, **kw: Any) -> dict[str, Any]:
    return await factory.record(by=person, subject=subject_id, title=f"{MARKER} {person.id}", content=MARKER, **kw)


async def _linked(state: Any, event_id: int) -> list[str]:
    async with state.engine.connect() as conn:
        rows = await conn.execute(text("SELECT record_id FROM audit_event_records WHERE event_id = :e"),
                                  {"e": event_id})
        return sorted(r[0] for r in rows)


async def test_the_list_event_names_the_ids_shown_and_no_title(client, factory, state) -> None:
    _, _, alice, bob = await _team(factory)
    subj = await factory.subject(by=alice)
    mine = [await _record(factory, alice, subj["id"]) for _ in range(3)]
    general = await _record(factory, bob, subj["id"], classification="general")
    hidden = await _record(factory, bob, subj["id"])  # bob's confidential record: not alice's to see
    r = await client.get("/records", headers=alice.headers, params={"limit": 3})
    assert r.status_code == 200, r.text
    first = [i["id"] for i in r.json()["items"]]
    r = await client.get("/records", headers=alice.headers, params={"limit": 3, "cursor": r.json()["next_cursor"]})
    second = [i["id"] for i in r.json()["items"]]
    assert sorted(first + second) == sorted([m["id"] for m in mine] + [general["id"]])
    events = await dp.events(state, "record.list")
    assert [e.detail["record_ids"] for e in events] == [first, second]
    assert [e.detail["count"] for e in events] == [3, 1]
    for event in events:
        assert event.actor_id == alice.id and event.resource_id is None
        assert MARKER not in event.model_dump_json() and hidden["id"] not in event.model_dump_json()
        assert await _linked(state, event.id) == sorted(event.detail["record_ids"])  # indexed with the event
    # an empty page is an event too, naming nothing
    trustee = await factory.user("trustee")
    r = await client.get("/records", headers=trustee.headers, params={"classification": "confidential"})
    assert r.status_code == 200 and r.json()["items"] == []
    last = (await dp.events(state, "record.list"))[-1]
    assert last.detail["record_ids"] == [] and await _linked(state, last.id) == []


async def test_the_access_log_shows_reads_list_views_and_exports_newest_first(client, factory, state, clock) -> None:
    director, manager, alice, bob = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await _record(factory, alice, subj["id"])
    other = await _record(factory, alice, subj["id"])
    assert (await client.get("/records", headers=manager.headers)).status_code == 200  # shows both
    assert (await client.get("/records", headers=bob.headers)).status_code == 200  # shows neither
    assert (await client.get(f"/records/{other['id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"/records/{rec['id']}", headers=alice.headers)).status_code == 200
    # a fulfilled subject access request exports the record (§3.4)
    r = await client.post("/access-requests", headers=alice.headers, json={
        "kind": "subject_access", "subject_id": subj["id"], "requester_subject_id": subj["id"],
        "signed_by": subj["name"], "signatory_capacity": "individual", "in_writing": True,
        "letter_reference": "LTR-1", "received_at": (clock.now() - timedelta(days=1)).isoformat()})
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    r = await client.post(f"/access-requests/{request_id}/decision", headers=director.headers,
                          json={"approve": True, "reason": "letter checked"})
    assert r.status_code == 200, r.text
    assert (await client.post(f"/access-requests/{request_id}/fulfil", headers=director.headers)).status_code == 200

    r = await client.get(f"/records/{rec['id']}/access-log", headers=manager.headers)
    assert r.status_code == 200, r.text
    got = [(i["action"], i["actor_id"], i["rule"]) for i in r.json()["items"]]
    assert got == [("record.export", str(director.id), "access-request"),
                   ("record.read", str(alice.id), "custodian"),
                   ("record.list", str(manager.id), "policy-filter")]
    assert MARKER not in r.text and other["id"] not in r.text
    # pages across the kinds, newest first
    r = await client.get(f"/records/{rec['id']}/access-log", headers=manager.headers, params={"limit": 2})
    assert [i["action"] for i in r.json()["items"]] == ["record.export", "record.read"]
    r = await client.get(f"/records/{rec['id']}/access-log", headers=manager.headers,
                         params={"limit": 2, "cursor": r.json()["next_cursor"]})
    assert [i["action"] for i in r.json()["items"]] == ["record.list"] and r.json()["next_cursor"] is None


async def test_the_package_history_includes_list_views(client, factory, state, clock) -> None:
    director, manager, alice, bob = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await _record(factory, alice, subj["id"])
    elsewhere = await factory.subject(by=bob)
    await _record(factory, bob, elsewhere["id"], classification="general")  # in the list, not in the package
    assert (await client.get("/records", headers=manager.headers)).status_code == 200
    assert (await client.get(f"/records/{rec['id']}", headers=manager.headers)).status_code == 200
    r = await client.post("/access-requests", headers=alice.headers, json={
        "kind": "subject_access", "subject_id": subj["id"], "requester_subject_id": subj["id"],
        "signed_by": subj["name"], "signatory_capacity": "individual", "in_writing": True,
        "letter_reference": "LTR-2", "received_at": (clock.now() - timedelta(days=1)).isoformat()})
    request_id = r.json()["id"]
    await client.post(f"/access-requests/{request_id}/decision", headers=director.headers,
                      json={"approve": True, "reason": "letter checked"})
    assert (await client.post(f"/access-requests/{request_id}/fulfil", headers=director.headers)).status_code == 200
    r = await client.get(f"/access-requests/{request_id}/package", headers=director.headers)
    assert r.status_code == 200, r.text
    history = r.json()["access_history"]
    assert [(h["record_id"], h["actor_id"], h["action"], h["actor_name"]) for h in history] == [
        (rec["id"], str(manager.id), "record.list", manager.user.full_name),
        (rec["id"], str(manager.id), "record.read", manager.user.full_name)]
