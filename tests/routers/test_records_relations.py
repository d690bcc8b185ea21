"""Relations that must not become side doors: re-parenting (§3.2, §4.5), one's own personnel
file (§3.6, §4.3) and accounts moved to trustee (§3.1)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from app.core.clock import FrozenClock
from app.models.emergency_grants import EmergencyGrant
from app.models.records import Record
from app.models.users import User
from tests.factory import Factory, Person
from tests.policy.org import count, db_record, events
from tests.routers.test_records_hot_path import _general

MARK = "side-door-marker"


def _denied(r: httpx.Response, rule: str, clause: str, status: int = 403) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert (body["rule"], body["clause"]) == (rule, clause), body
    assert MARK not in r.text
    return body


async def _stored_user(factory: Factory, user_id: uuid.UUID) -> User:
    async with factory.state.sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


async def _patch(client: httpx.AsyncClient, factory: Factory, who: Person, record_id: str,
                 body: dict[str, Any]) -> httpx.Response:
    version = (await db_record(factory, record_id)).version
    return await client.patch(f"/records/{record_id}", json=body, headers={**who.headers, "If-Match": f'"v{version}"'})


# -- re-parenting (§3.2, §4.5) --------------------------------------------------------------


async def _sensitive_case(client: httpx.AsyncClient, factory: Factory) -> tuple[Person, Person, Person, dict[str, Any]]:
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    custodian = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=custodian)
    rec = await factory.record(by=custodian, subject=subject, classification="sensitive", content=MARK)
    return director, manager, custodian, rec


async def test_a_director_cannot_make_themself_line_manager_alone(client, factory: Factory):
    director, manager, custodian, rec = await _sensitive_case(client, factory)
    _denied(await client.get(f"/records/{rec['id']}", headers=director.headers), "named", "§3.2")
    updates_before = await events(factory, action="account.update")
    r = await client.patch(f"/users/{custodian.id}", json={"line_manager_id": str(director.id)},
                           headers=director.headers)
    body = _denied(r, "line-manager-change", "§4.5, §3.2")
    assert "another director" in body["detail"]
    # Nothing changed, and the attempt is on record as a denial.
    stored = await _stored_user(factory, custodian.id)
    assert (stored.line_manager_id, stored.line_manager_since) == (manager.id, None)
    after = await events(factory, action="account.update")
    assert [(e.decision, e.rule, e.clause) for e in after[len(updates_before):]] == [
        ("deny", "line-manager-change", "§4.5, §3.2")]
    assert after[-1].detail["line_manager_id"] == [str(manager.id), str(director.id)]
    _denied(await client.get(f"/records/{rec['id']}", headers=director.headers), "named", "§3.2")
    assert all(r["id"] != rec["id"] for r in (await client.get("/records", headers=director.headers)).json()["items"])


async def test_the_refusal_also_covers_other_fields_sent_with_it(client, factory: Factory):
    director, manager, custodian, _ = await _sensitive_case(client, factory)
    r = await client.patch(f"/users/{custodian.id}", headers=director.headers,
                           json={"line_manager_id": str(director.id), "staff_type": "intern"})
    _denied(r, "line-manager-change", "§4.5, §3.2")
    stored = await _stored_user(factory, custodian.id)
    assert (stored.line_manager_id, stored.staff_type) == (manager.id, "employee")


async def test_another_director_makes_the_change_and_the_new_relation_is_flagged_for_a_day(
    client, factory: Factory, state, clock: FrozenClock
):
    director, manager, custodian, rec = await _sensitive_case(client, factory)
    second = await factory.user("director")
    r = await client.patch(f"/users/{custodian.id}", json={"line_manager_id": str(director.id)},
                           headers=second.headers)
    assert r.status_code == 200, r.text
    changed = (await events(factory, action="account.update", resource_id=str(custodian.id)))[-1]
    assert (changed.decision, changed.actor_id) == ("allow", second.id)
    assert changed.detail["line_manager_id"] == [str(manager.id), str(director.id)]
    assert (await _stored_user(factory, custodian.id)).line_manager_since == clock.now()

    clock.advance(hours=23)
    await factory.login(director)  # access tokens last 15 minutes
    r = await client.get(f"/records/{rec['id']}", headers=director.headers)
    assert r.status_code == 200, r.text
    assert r.json()["access"] == {"rule": "line-manager", "clause": "§1.3, §3.3, §4.2", "emergency": False,
                                  "recent_relation": True}
    assert r.json() == await _general(state, rec["id"], director)  # the hot path says the same
    reads = await events(factory, action="record.read", resource_id=rec["id"], actor_id=director.id)
    allowed = [e for e in reads if e.decision == "allow"]
    assert len(allowed) == 2 and all(e.emergency and e.detail["recent_relation"] for e in allowed)
    assert all(MARK not in str(e.detail) for e in reads)
    log = (await client.get(f"/records/{rec['id']}/access-log", headers=director.headers)).json()["items"]
    assert [(i["rule"], i["emergency"]) for i in log] == [("line-manager", True)] * 2

    clock.advance(hours=1, seconds=1)
    await factory.login(director)
    r = await client.get(f"/records/{rec['id']}", headers=director.headers)
    assert r.status_code == 200 and r.json()["access"]["recent_relation"] is False
    last = (await events(factory, action="record.read", resource_id=rec["id"], actor_id=director.id))[-1]
    assert not last.emergency and "recent_relation" not in last.detail


async def test_a_relation_from_account_creation_is_not_new(client, factory: Factory):
    director, manager, custodian, rec = await _sensitive_case(client, factory)
    r = await client.get(f"/records/{rec['id']}", headers=manager.headers)
    assert r.status_code == 200 and r.json()["access"]["recent_relation"] is False
    assert not (await events(factory, action="record.read", actor_id=manager.id))[-1].emergency


async def test_a_new_personnel_line_manager_is_flagged(client, factory: Factory):
    director = await factory.user("director")
    old, new = await factory.user("colleague", manager=director), await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=old)
    subject = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    rec = await factory.record(by=old, subject=subject, classification="personnel")
    r = await client.patch(f"/users/{employee.id}", json={"line_manager_id": str(new.id)}, headers=director.headers)
    assert r.status_code == 200, r.text
    r = await client.get(f"/records/{rec['id']}", headers=new.headers)
    assert r.status_code == 200 and r.json()["access"] == {"rule": "personnel", "clause": "§4.3",
                                                           "emergency": False, "recent_relation": True}


async def test_a_director_moves_others_and_clears_a_manager_alone(client, factory: Factory):
    director, manager, custodian, _ = await _sensitive_case(client, factory)
    other = await factory.user("colleague", manager=director)
    r = await client.patch(f"/users/{custodian.id}", json={"line_manager_id": str(other.id)},
                           headers=director.headers)
    assert r.status_code == 200, r.text
    r = await client.patch(f"/users/{custodian.id}", json={"line_manager_id": None}, headers=director.headers)
    assert r.status_code == 200 and r.json()["line_manager_id"] is None
    changes = await events(factory, action="account.update", resource_id=str(custodian.id))
    assert [e.detail["line_manager_id"] for e in changes] == [[str(manager.id), str(other.id)],
                                                              [str(other.id), None]]
    # A director already line-managing someone may keep doing so (no change).
    r = await client.patch(f"/users/{other.id}", json={"line_manager_id": str(director.id)},
                           headers=director.headers)
    assert r.status_code == 200, r.text


# -- one's own personnel file (§3.6, §4.3) -------------------------------------------------------


async def _own_file(
    client: httpx.AsyncClient, factory: Factory
) -> tuple[Person, Person, dict[str, Any], dict[str, Any]]:
    me = await factory.user("director")
    other = await factory.user("director")
    subject = await factory.subject(by=other, category="employee", user_id=str(me.id))
    rec = await factory.record(by=other, subject=subject, classification="personnel", content=MARK)
    return me, other, subject, rec


async def test_a_director_does_not_read_update_or_destroy_their_own_personnel_file(client, factory: Factory):
    me, other, subject, rec = await _own_file(client, factory)
    before = await db_record(factory, rec["id"])
    _denied(await client.get(f"/records/{rec['id']}", headers=me.headers), "personnel", "§3.6")
    _denied(await _patch(client, factory, me, rec["id"], {"classification": "confidential"}), "personnel", "§3.6")
    _denied(await client.delete(f"/records/{rec['id']}", params={"reason": "tidy"}, headers=me.headers),
            "personnel", "§3.6")
    after = await db_record(factory, rec["id"])
    assert (after.version, after.classification, after.destroyed_at) == (before.version, "personnel", None)
    denied = await events(factory, resource_id=rec["id"], actor_id=me.id)
    assert [(e.action, e.decision, e.rule, e.clause) for e in denied] == [
        (f"record.{a}", "deny", "personnel", "§3.6") for a in ("read", "update", "destroy")]
    r = await client.get("/records", headers=me.headers, params={"subject_id": subject["id"]})
    assert r.status_code == 200 and r.json()["items"] == []
    # Another director still keeps it (§4.3).
    r = await client.get(f"/records/{rec['id']}", headers=other.headers)
    assert r.status_code == 200 and r.json()["content"] == MARK


async def _stored_grant(factory: Factory, *, grantee, issuer, **target):  # type: ignore[no-untyped-def]
    """A live grant put straight into storage: the service no longer issues one over records about
    its own holder, but the exclusion must hold for any grant that exists."""
    now = factory.state.clock.now()
    async with factory.state.sessionmaker() as session:
        session.add(EmergencyGrant(grantee_id=grantee.id, reason="stored", expires_at=now + timedelta(hours=2),
                                   issued_by=issuer.id, issued_at=now, **target))
        await session.commit()


async def test_an_emergency_grant_does_not_open_ones_own_personnel_file(client, factory: Factory):
    me, other, subject, rec = await _own_file(client, factory)
    expires = (factory.state.clock.now() + timedelta(hours=2)).isoformat()
    for issuer, target in ((me, {"record_id": rec["id"]}), (other, {"subject_id": subject["id"]})):
        r = await client.post("/emergency-grants", headers=issuer.headers,
                              json={"grantee_id": str(me.id), "reason": "crisis", "expires_at": expires, **target})
        _denied(r, "emergency", "§4.5, §3.4")
    await _stored_grant(factory, grantee=me, issuer=other, record_id=uuid.UUID(rec["id"]))
    await _stored_grant(factory, grantee=me, issuer=other, subject_id=uuid.UUID(subject["id"]))
    _denied(await client.get(f"/records/{rec['id']}", headers=me.headers), "personnel", "§3.6")
    assert (await client.get("/records", headers=me.headers)).json()["items"] == []


async def test_a_line_manager_employee_is_refused_by_the_exclusion_too(client, factory: Factory):
    """An employee with a live grant over their own file: still asks in writing (§3.6)."""
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    rec = await factory.record(by=manager, subject=subject, classification="personnel", content=MARK)
    _denied(await client.get(f"/records/{rec['id']}", headers=employee.headers), "personnel", "§4.3")
    expires = (factory.state.clock.now() + timedelta(hours=2)).isoformat()
    r = await client.post("/emergency-grants", headers=director.headers,
                          json={"grantee_id": str(employee.id), "reason": "x", "expires_at": expires,
                                "record_id": rec["id"]})
    _denied(r, "emergency", "§4.5, §3.4")
    await _stored_grant(factory, grantee=employee, issuer=director, record_id=uuid.UUID(rec["id"]))
    _denied(await client.get(f"/records/{rec['id']}", headers=employee.headers), "personnel", "§3.6")


async def test_a_director_cannot_create_or_move_a_personnel_record_about_themself(client, factory: Factory):
    me = await factory.user("director")
    subject = await factory.subject(by=me, category="employee", user_id=str(me.id))
    r = await client.post("/records", headers=me.headers, json={
        "subject_id": subject["id"], "title": "t", "content": MARK, "classification": "personnel",
        "purpose": "personnel_administration"})
    _denied(r, "personnel", "§3.6")
    assert await count(factory, Record) == 0
    conf = await factory.record(by=me, subject=subject, content=MARK)
    _denied(await _patch(client, factory, me, conf["id"], {"classification": "personnel"}), "personnel", "§3.6")
    assert (await db_record(factory, conf["id"])).classification == "confidential"


# -- accounts moved to trustee (§3.1) ---------------------------------------------------------


async def test_a_colleague_moved_to_trustee_keeps_only_what_was_passed_to_them(client, factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    report = await factory.user("colleague", manager=alice)
    bob = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    kept = await factory.record(by=alice, subject=subject, content=MARK)
    kept_sensitive = await factory.record(by=alice, subject=subject, classification="sensitive", content=MARK)
    reports = await factory.record(by=report, subject=subject, content=MARK)
    named = await factory.record(by=bob, subject=subject, classification="sensitive", content=MARK)
    shared = await factory.record(by=bob, subject=subject, content="shared-marker")
    general = await factory.record(by=bob, subject=subject, classification="general", content="general-marker")
    await factory.named(by=bob, record=named, to=alice, consent_reference="form 1")
    await factory.share(by=bob, record=shared, to=alice, reason="board review")
    # The report leaves; the line-manager relation to them stays in the data.
    assert (await client.patch(f"/users/{report.id}", json={"active": False},
                               headers=director.headers)).status_code == 200
    assert (await client.get(f"/records/{reports['id']}", headers=alice.headers)).status_code == 200
    r = await client.patch(f"/users/{alice.id}", json={"role": "trustee"}, headers=director.headers)
    assert r.status_code == 200, r.text
    await factory.login(alice)  # a fresh token, in case the role travels in it

    for rec, rule, clause in ((kept, "shared", "§3.1"), (kept_sensitive, "named", "§3.2"),
                              (reports, "shared", "§3.1"), (named, "named", "§3.2")):
        _denied(await client.get(f"/records/{rec['id']}", headers=alice.headers), rule, clause)
    before = await db_record(factory, kept["id"])
    # The custodian relation holds for staff only: the refusal cites it as what would allow the update.
    _denied(await _patch(client, factory, alice, kept["id"], {"title": "x"}), "custodian", "§4.2, §3.2")
    assert (await db_record(factory, kept["id"])).version == before.version
    r = await client.get(f"/records/{shared['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["access"]["rule"] == "shared"
    listed = {i["id"] for i in (await client.get("/records", headers=alice.headers)).json()["items"]}
    assert listed == {shared["id"], general["id"]}
