"""The consequences listed under DESIGN §4 and the validation of a record's fields, one test each."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from app.models.records import Record, RecordNamedAccess, RecordShare
from app.models.subjects import Subject
from tests.factory import Factory, Person
from tests.policy.org import count, db_record, events


def _denied(r: httpx.Response, rule: str, clause: str, status: int = 403) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert (body["rule"], body["clause"]) == (rule, clause), body
    return body


def _field_error(r: httpx.Response, field: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert field in [e["loc"][-1] for e in body["errors"]], body
    return body


async def _patch(client: httpx.AsyncClient, factory: Factory, who: Person, record_id: str,
                 body: dict[str, Any]) -> httpx.Response:
    version = (await db_record(factory, record_id)).version
    return await client.patch(f"/records/{record_id}", json=body, headers={**who.headers, "If-Match": f'"v{version}"'})


async def test_director_reads_sensitive_only_through_a_grant_which_is_flagged(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director, login=False)
    alice = await factory.user("colleague", manager=manager)  # the director is nobody's line manager here
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject, classification="sensitive", content="dispute-marker")
    r = await client.get(f"/records/{rec['id']}", headers=director.headers)
    _denied(r, "named", "§3.2")
    assert "dispute-marker" not in r.text and rec["title"] not in r.text
    # Not in the director's list either.
    r = await client.get("/records", headers=director.headers)
    assert rec["id"] not in [i["id"] for i in r.json()["items"]]
    # A director may authorise themself (§4.5); the read is then flagged and audited as emergency.
    expires = (factory.state.clock.now() + timedelta(hours=2)).isoformat()
    r = await client.post("/emergency-grants", headers=director.headers, json={
        "grantee_id": str(director.id), "record_id": rec["id"], "reason": "crisis call", "expires_at": expires})
    assert r.status_code == 201, r.text
    assert r.json()["active"] is True
    r = await client.get(f"/records/{rec['id']}", headers=director.headers)
    assert r.status_code == 200, r.text
    assert r.json()["access"] == {"rule": "emergency", "clause": "§4.5", "emergency": True,
                                  "recent_relation": False}
    assert r.json()["content"] == "dispute-marker"
    reads = await events(factory, action="record.read", resource_id=rec["id"], actor_id=director.id)
    assert [(e.decision, e.rule, e.emergency) for e in reads] == [("deny", "named", False),
                                                                  ("allow", "emergency", True)]
    issued = await events(factory, action="emergency_grant.issue", actor_id=director.id)
    assert len(issued) == 1 and issued[0].emergency and issued[0].clause == "§4.5"


async def test_employee_cannot_read_own_personnel_record(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    rec = await factory.record(by=manager, subject=subject, classification="personnel", content="probation-marker")
    r = await client.get(f"/records/{rec['id']}", headers=employee.headers)
    _denied(r, "personnel", "§4.3")
    assert "probation-marker" not in r.text
    r = await client.get("/records", headers=employee.headers, params={"subject_id": subject["id"]})
    assert r.status_code == 200 and r.json()["items"] == []


async def test_line_manager_change_moves_personnel_access_without_touching_data(client, factory: Factory):
    director = await factory.user("director")
    old = await factory.user("colleague", manager=director)
    new = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=old)
    subject = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    rec = await factory.record(by=old, subject=subject, classification="personnel")
    assert (await client.get(f"/records/{rec['id']}", headers=old.headers)).status_code == 200
    _denied(await client.get(f"/records/{rec['id']}", headers=new.headers), "personnel", "§4.3")
    before = await db_record(factory, rec["id"])
    r = await client.patch(f"/users/{employee.id}", json={"line_manager_id": str(new.id)}, headers=director.headers)
    assert r.status_code == 200, r.text
    r = await client.get(f"/records/{rec['id']}", headers=new.headers)
    assert r.status_code == 200 and r.json()["access"]["rule"] == "personnel"
    _denied(await client.get(f"/records/{rec['id']}", headers=old.headers), "personnel", "§4.3")
    listed = (await client.get("/records", headers=new.headers)).json()["items"]
    assert [i["id"] for i in listed] == [rec["id"]]
    assert (await client.get("/records", headers=old.headers)).json()["items"] == []
    after = await db_record(factory, rec["id"])
    assert (after.version, after.updated_at, after.custodian_id) == (before.version, before.updated_at,
                                                                      before.custodian_id)


async def test_line_managers_own_manager_does_not_see_personnel(client, factory: Factory):
    director = await factory.user("director")
    grand = await factory.user("colleague", manager=director)
    manager = await factory.user("colleague", manager=grand)
    employee = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    rec = await factory.record(by=manager, subject=subject, classification="personnel")
    _denied(await client.get(f"/records/{rec['id']}", headers=grand.headers), "personnel", "§4.3")
    assert (await client.get("/records", headers=grand.headers)).json()["items"] == []
    # Nor by the chain on other records: only the custodian's direct line manager counts.
    conf = await factory.record(by=employee, subject=subject)
    assert (await client.get(f"/records/{conf['id']}", headers=manager.headers)).status_code == 200
    _denied(await client.get(f"/records/{conf['id']}", headers=grand.headers), "shared", "§3.1")


async def test_naming_a_colleague_needs_consent_reference(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject, classification="sensitive")
    for body in ({"user_id": str(ben.id)}, {"user_id": str(ben.id), "consent_reference": "   "}):
        r = await client.post(f"/records/{rec['id']}/named-access", json=body, headers=alice.headers)
        _denied(r, "named", "§1.3", status=422)
        _field_error(r, "consent_reference")
    assert await count(factory, RecordNamedAccess) == 0
    _denied(await client.get(f"/records/{rec['id']}", headers=ben.headers), "named", "§3.2")
    r = await client.post(f"/records/{rec['id']}/named-access", headers=alice.headers,
                          json={"user_id": str(ben.id), "consent_reference": "letter SO-1"})
    assert r.status_code == 201, r.text
    r = await client.get(f"/records/{rec['id']}", headers=ben.headers)
    assert r.status_code == 200 and r.json()["entitled_user_ids"] == [str(ben.id)]


async def test_passing_on_a_confidential_record_needs_a_reason(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    for body in ({"user_id": str(ben.id)}, {"user_id": str(ben.id), "reason": ""}):
        r = await client.post(f"/records/{rec['id']}/shares", json=body, headers=alice.headers)
        _field_error(r, "reason")
    assert await count(factory, RecordShare) == 0
    _denied(await client.get(f"/records/{rec['id']}", headers=ben.headers), "shared", "§3.1")


async def test_moving_out_of_sensitive_takes_line_manager_or_director(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject, classification="sensitive")
    r = await _patch(client, factory, alice, rec["id"], {"classification": "confidential"})
    _denied(r, "line-manager", "§3.2")
    assert (await db_record(factory, rec["id"])).classification == "sensitive"
    refused = await events(factory, action="record.reclassify", resource_id=rec["id"])
    assert [(e.decision, e.rule, e.clause, e.actor_id) for e in refused] == [("deny", "line-manager", "§3.2", alice.id)]
    assert (await db_record(factory, rec["id"])).version == 1
    # The custodian may still change other things (and move it up to nothing else).
    assert (await _patch(client, factory, alice, rec["id"], {"title": "renamed"})).status_code == 200
    r = await _patch(client, factory, manager, rec["id"], {"classification": "confidential"})
    assert r.status_code == 200, r.text
    assert r.json()["classification"] == "confidential" and r.json()["access"]["rule"] == "line-manager"
    # A director who holds a sensitive record moves it out alone.
    own = await factory.record(by=director, subject=subject, classification="sensitive")
    r = await _patch(client, factory, director, own["id"], {"classification": "general"})
    assert r.status_code == 200 and r.json()["label"] is None


async def test_moving_out_of_personnel_takes_a_director(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    rec = await factory.record(by=manager, subject=subject, classification="personnel")
    r = await _patch(client, factory, manager, rec["id"], {"classification": "confidential"})
    _denied(r, "personnel", "§4.3")
    assert (await db_record(factory, rec["id"])).classification == "personnel"
    r = await _patch(client, factory, director, rec["id"], {"classification": "confidential"})
    assert r.status_code == 200 and r.json()["classification"] == "confidential"


async def test_moving_into_personnel_needs_an_employee_subject(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    r = await _patch(client, factory, director, rec["id"], {"classification": "personnel"})
    _field_error(r, "subject_id")
    assert (await db_record(factory, rec["id"])).classification == "confidential"


async def test_sensitive_record_needs_access_requester(client, factory: Factory):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    r = await client.post("/records", headers=alice.headers, json={
        "subject_id": subject["id"], "title": "t", "content": "c", "classification": "sensitive",
        "purpose": "service_delivery"})
    body = _field_error(r, "access_requester_id")
    assert (body["rule"], body["clause"]) == ("sensitive-label", "§3.2")
    assert await count(factory, Record) == 0
    # Clearing it on a sensitive record is refused too.
    rec = await factory.record(by=alice, subject=subject, classification="sensitive")
    _field_error(await _patch(client, factory, alice, rec["id"], {"access_requester_id": None}),
                 "access_requester_id")


async def test_personnel_record_only_about_an_employee_and_by_their_manager_or_a_director(client, factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=manager)
    peer = await factory.user("colleague", manager=director)
    service_user = await factory.subject(by=director)
    emp = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    base = {"title": "t", "content": "c", "classification": "personnel", "purpose": "personnel_administration"}
    r = await client.post("/records", headers=director.headers, json={**base, "subject_id": service_user["id"]})
    body = _field_error(r, "subject_id")
    assert (body["rule"], body["clause"]) == ("personnel", "§4.3")
    for who in (peer, employee):
        r = await client.post("/records", headers=who.headers, json={**base, "subject_id": emp["id"]})
        _denied(r, "personnel", "§4.3")
    assert await count(factory, Record) == 0
    for who in (manager, director):
        r = await client.post("/records", headers=who.headers, json={**base, "subject_id": emp["id"]})
        assert r.status_code == 201, r.text
    assert await count(factory, Record) == 2


async def test_custodian_must_be_an_active_staff_account(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    trustee = await factory.user("trustee", login=False)
    gone = await factory.user("colleague", manager=director, login=False)
    r = await client.patch(f"/users/{gone.id}", json={"active": False}, headers=director.headers)
    assert r.status_code == 200
    subject = await factory.subject(by=alice)
    base = {"subject_id": subject["id"], "title": "t", "content": "c", "classification": "confidential",
            "purpose": "service_delivery"}
    for custodian in (trustee.id, gone.id, subject["id"]):
        r = await client.post("/records", headers=alice.headers, json={**base, "custodian_id": str(custodian)})
        _field_error(r, "custodian_id")
    assert await count(factory, Record) == 0
    rec = await factory.record(by=alice, subject=subject)
    assert rec["custodian_id"] == str(alice.id)  # defaults to the creator
    _field_error(await _patch(client, factory, alice, rec["id"], {"custodian_id": str(trustee.id)}), "custodian_id")


async def test_trustees_and_service_clients_create_nothing_without_a_scope(client, factory: Factory):
    director = await factory.user("director")
    trustee = await factory.user("trustee")
    subject = await factory.subject(by=director)
    body = {"subject_id": subject["id"], "title": "t", "content": "c", "classification": "general",
            "purpose": "service_delivery", "custodian_id": str(director.id)}
    _denied(await client.post("/records", headers=trustee.headers, json=body), "custodian", "§4.2")
    _denied(await client.post("/subjects", headers=trustee.headers,
                              json={"kind": "individual", "name": "X", "category": "member"}), "staff-only", "§3.1")
    reader = await factory.service_client(by=director, scopes=["records:read"])
    _denied(await client.post("/records", headers=reader, json=body), "custodian", "§4.2")
    _denied(await client.post("/subjects", headers=reader,
                              json={"kind": "individual", "name": "X", "category": "member"}), "staff-only", "§3.1")
    assert await count(factory, Record) == 0 and await count(factory, Subject) == 1
    writer = await factory.service_client(by=director, scopes=["records:write", "subjects:write"])
    _denied(await client.post("/records", headers=writer, json={**body, "classification": "confidential"}),
            "custodian", "§4.2")
    r = await client.post("/records", headers=writer, json=body)
    assert r.status_code == 201 and r.json()["custodian_id"] == str(director.id)
    r = await client.post("/records", headers=writer, json={k: v for k, v in body.items() if k != "custodian_id"})
    _field_error(r, "custodian_id")
    r = await client.post("/subjects", headers=writer, json={"kind": "individual", "name": "X", "category": "member"})
    assert r.status_code == 201


async def test_trustees_do_not_browse_subjects(client, factory: Factory):
    director = await factory.user("director")
    trustee = await factory.user("trustee")
    subject = await factory.subject(by=director, name="Hidden Person")
    for path in ("/subjects", f"/subjects/{subject['id']}"):
        r = await client.get(path, headers=trustee.headers)
        _denied(r, "staff-only", "§3.1")
        assert "Hidden Person" not in r.text


async def test_service_client_with_records_read_reads_general_only(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    general = await factory.record(by=alice, subject=subject, classification="general")
    conf = await factory.record(by=alice, subject=subject, content="conf-marker")
    reader = await factory.service_client(by=director, scopes=["records:read"])
    r = await client.get(f"/records/{general['id']}", headers=reader)
    assert r.status_code == 200 and r.json()["access"]["rule"] == "general"
    r = await client.get(f"/records/{conf['id']}", headers=reader)
    _denied(r, "shared", "§3.1")
    assert "conf-marker" not in r.text
    r = await client.get("/records", headers=reader)
    assert [i["id"] for i in r.json()["items"]] == [general["id"]]
    # Without the scope, not even general records.
    nothing = await factory.service_client(by=director, scopes=["subjects:read"])
    r = await client.get(f"/records/{general['id']}", headers=nothing)
    _denied(r, "general", "§4.1")  # the rule that would allow it: an active account, a client with records:read
    assert "only an active account (a service client with records:read) may read a general record" in r.json()["detail"]
    assert (await client.get("/records", headers=nothing)).json()["items"] == []
    # A client never updates or destroys.
    r = await client.patch(f"/records/{general['id']}", headers={**reader, "If-Match": '"v1"'}, json={"title": "x"})
    _denied(r, "accounts-only", "§6.6")
