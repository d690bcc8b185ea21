"""/emergency-grants (§4.5): directors only; time-limited; revocable; reads through one are flagged."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from app.models.emergency_grants import EmergencyGrant
from tests.factory import Factory, Person
from tests.policy.org import count, events


async def _grant(factory: Factory, director: Person, grantee: Person | SimpleNamespace, hours: float = 2,
                 **target: Any):  # type: ignore[no-untyped-def]
    expires = factory.state.clock.now() + timedelta(hours=hours)
    return await factory.client.post("/emergency-grants", headers=director.headers, json={
        "grantee_id": str(grantee.id), "reason": "crisis call", "expires_at": expires.isoformat(), **target})


async def _org(client, factory: Factory):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    helper = await factory.user("colleague", manager=director)
    employee = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=alice)
    sens = await factory.record(by=alice, subject=subject, classification="sensitive", content="sens-marker")
    conf = await factory.record(by=alice, subject=subject)
    emp = await factory.subject(by=director, category="employee", user_id=str(employee.id))
    personnel = await factory.record(by=manager, subject=emp, classification="personnel")
    return director, manager, alice, helper, subject, sens, conf, emp, personnel


async def test_only_directors_issue_and_revoke(client, factory: Factory):
    director, manager, alice, helper, subject, sens, *_ = await _org(client, factory)
    trustee = await factory.user("trustee")
    for who in (manager, alice, trustee):
        r = await _grant(factory, who, helper, record_id=sens["id"])
        assert r.status_code == 403 and (r.json()["rule"], r.json()["clause"]) == ("director-only", "§4.5")
    assert await count(factory, EmergencyGrant) == 0
    r = await _grant(factory, director, helper, record_id=sens["id"])
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["issued_by"] == str(director.id) and grant["active"] and grant["revoked_at"] is None
    r = await client.delete(f"/emergency-grants/{grant['id']}", headers=manager.headers)
    assert r.status_code == 403 and r.json()["rule"] == "director-only"


async def test_a_live_grant_reads_flagged_and_revoking_ends_it(client, factory: Factory):
    director, manager, alice, helper, subject, sens, *_ = await _org(client, factory)
    r = await client.get(f"/records/{sens['id']}", headers=helper.headers)
    assert r.status_code == 403 and r.json()["rule"] == "named"
    grant = (await _grant(factory, director, helper, record_id=sens["id"])).json()
    r = await client.get(f"/records/{sens['id']}", headers=helper.headers)
    assert r.status_code == 200, r.text
    assert r.json()["access"] == {"rule": "emergency", "clause": "§4.5", "emergency": True,
                                  "recent_relation": False}
    listed = (await client.get("/records", headers=helper.headers)).json()["items"]
    assert [i["id"] for i in listed] == [sens["id"]]
    allowed = [e for e in await events(factory, action="record.read", actor_id=helper.id) if e.decision == "allow"]
    assert len(allowed) == 1 and allowed[0].emergency and allowed[0].rule == "emergency"
    # Only the read through the grant is flagged: the custodian's own read is not.
    r = await client.get(f"/records/{sens['id']}", headers=alice.headers)
    assert r.json()["access"]["emergency"] is False
    r = await client.delete(f"/emergency-grants/{grant['id']}", headers=director.headers)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None and r.json()["active"] is False
    r = await client.get(f"/records/{sens['id']}", headers=helper.headers)
    assert r.status_code == 403 and "sens-marker" not in r.text
    assert (await client.get("/records", headers=helper.headers)).json()["items"] == []
    assert (await client.delete(f"/emergency-grants/{grant['id']}", headers=director.headers)).status_code == 409
    revoked = await events(factory, action="emergency_grant.revoke")
    assert len(revoked) == 1 and revoked[0].emergency
    r = await client.delete(f"/emergency-grants/{subject['id']}", headers=director.headers)
    assert r.status_code == 404


async def test_a_subject_grant_covers_all_its_records_until_it_expires(client, factory: Factory, clock):
    director, manager, alice, helper, subject, sens, conf, emp, personnel = await _org(client, factory)
    assert (await _grant(factory, director, helper, hours=1, subject_id=emp["id"])).status_code == 201
    r = await client.get(f"/records/{personnel['id']}", headers=helper.headers)
    assert r.status_code == 200 and r.json()["access"]["rule"] == "emergency"
    r = await client.get(f"/records/{sens['id']}", headers=helper.headers)  # another subject: not covered
    assert r.status_code == 403
    clock.advance(minutes=61)
    await factory.login(helper)  # the old access token has expired too
    r = await client.get(f"/records/{personnel['id']}", headers=helper.headers)
    assert r.status_code == 403 and r.json()["rule"] == "personnel"
    assert (await client.get("/records", headers=helper.headers)).json()["items"] == []


async def test_listing_grants(client, factory: Factory):
    director, manager, alice, helper, subject, sens, conf, *_ = await _org(client, factory)
    other_director = await factory.user("director")
    g1 = (await _grant(factory, director, helper, record_id=sens["id"])).json()
    g2 = (await _grant(factory, director, alice, record_id=conf["id"])).json()
    g3 = (await _grant(factory, other_director, helper, subject_id=subject["id"])).json()
    await client.delete(f"/emergency-grants/{g3['id']}", headers=director.headers)

    async def ids(who: Person, **params: Any) -> set[str]:
        r = await client.get("/emergency-grants", headers=who.headers, params=params)
        assert r.status_code == 200, r.text
        return {g["id"] for g in r.json()["items"]}

    assert await ids(director) == await ids(other_director) == {g1["id"], g2["id"], g3["id"]}
    assert await ids(helper) == {g1["id"], g3["id"]}
    assert await ids(helper, active="true") == {g1["id"]}
    assert await ids(alice) == {g2["id"]}
    assert await ids(manager) == set()
    # Pages: newest first, no duplicates, a forged cursor refused.
    seen: list[str] = []
    cursor = None
    while True:
        r = await client.get("/emergency-grants", headers=director.headers,
                             params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [g["id"] for g in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted({g1["id"], g2["id"], g3["id"]}) and len(seen) == 3
    assert (await client.get("/emergency-grants", headers=director.headers,
                             params={"cursor": "forged.cursor"})).status_code == 400


async def test_no_grant_opens_records_about_its_own_holder(client, factory: Factory):
    """§3.4, §3.6: what is recorded about a person reaches them through a written request, never
    through an emergency grant to themself (a director's to themself included)."""
    director, manager, alice, helper, subject, sens, conf, emp, personnel = await _org(client, factory)
    about_employee = await factory.record(by=manager, subject=emp, content="note-about-employee")
    own = await factory.subject(by=director, category="employee", user_id=str(director.id))
    about_director = await factory.record(by=alice, subject=own, classification="sensitive",
                                          content="note-about-director")
    before = await count(factory, EmergencyGrant)
    for target in ({"subject_id": own["id"]}, {"record_id": about_director["id"]}):
        r = await _grant(factory, director, director, **target)
        assert r.status_code == 403, r.text
        assert (r.json()["rule"], r.json()["clause"]) == ("emergency", "§4.5, §3.4")
        assert "note-about-director" not in r.text
    r = await client.get(f"/records/{about_director['id']}", headers=director.headers)
    assert r.status_code == 403 and "note-about-director" not in r.text
    assert await count(factory, EmergencyGrant) == before
    # Issued to someone else it works as before; and to the employee over their own subject it does not.
    assert (await _grant(factory, director, helper, subject_id=own["id"])).status_code == 201
    expires = factory.state.clock.now() + timedelta(hours=2)
    r = await client.post("/emergency-grants", headers=director.headers, json={
        "grantee_id": emp["user_id"], "reason": "crisis call", "expires_at": expires.isoformat(),
        "record_id": about_employee["id"]})
    assert r.status_code == 403 and r.json()["rule"] == "emergency"


async def test_no_grant_opens_records_about_whoever_chose_its_holders_password(client, factory: Factory):
    """An account whose password a director chose counts as that director (§3.4, §4.5): a grant to
    it never covers records about that director, whoever issues it."""
    director, manager, alice, helper, subject, sens, conf, emp, personnel = await _org(client, factory)
    other = await factory.user("director")
    r = await client.post("/users", headers=director.headers, json={
        "email": "puppet@test.kmm", "full_name": "Pat Puppet", "role": "colleague", "staff_type": "employee",
        "password": "a puppet password the director knows"})
    assert r.status_code == 201, r.text
    puppet = SimpleNamespace(id=r.json()["id"])
    own = await factory.subject(by=director, category="employee", user_id=str(director.id))
    about_director = await factory.record(by=alice, subject=own, classification="sensitive",
                                          content="note-about-director")
    before = await count(factory, EmergencyGrant)
    for issuer in (director, other):
        for target in ({"subject_id": own["id"]}, {"record_id": about_director["id"]}):
            r = await _grant(factory, issuer, puppet, **target)
            assert r.status_code == 403, r.text
            assert (r.json()["rule"], r.json()["clause"]) == ("emergency", "§4.5, §3.4")
            assert "note-about-director" not in r.text
    assert await count(factory, EmergencyGrant) == before
    assert (await _grant(factory, director, puppet, record_id=sens["id"])).status_code == 201


async def test_a_reset_by_the_director_a_grant_is_about_ends_that_grant(client, factory: Factory):
    """A grant issued before a director chose its holder's password (a reset) ends with the reset
    when it covers records about that director (§3.4, §4.5): they may log in as the holder.
    Grants over anyone else stay, and a reset by another director ends nothing."""
    boss = await factory.user("director")
    other = await factory.user("director")
    carer = await factory.user("colleague")
    alice = await factory.user("colleague")
    own = await factory.subject(by=other, category="employee", user_id=str(boss.id))
    about_boss = await factory.record(by=alice, subject=own, classification="sensitive", content="note-about-boss")
    elsewhere = await factory.subject(by=alice)
    about_other = await factory.record(by=alice, subject=elsewhere, classification="sensitive")
    by_subject = await factory.grant(by=other, to=carer, subject=own)
    by_record = await factory.grant(by=other, to=carer, record=about_boss)
    kept = await factory.grant(by=other, to=carer, record=about_other)

    r = await client.post(f"/users/{carer.id}/password", headers=other.headers,
                          json={"new_password": "another director chose this one"})
    assert r.status_code == 204, r.text
    r = await client.post(f"/users/{carer.id}/password", headers=boss.headers,
                          json={"new_password": "boss chose this one himself"})
    assert r.status_code == 204, r.text
    assert (await factory.login(carer, "boss chose this one himself")).status_code == 200
    r = await client.post("/users/me/password", headers=carer.headers, json={
        "current_password": "boss chose this one himself", "new_password": "and changed as the holder"})
    assert r.status_code == 204, r.text
    assert (await factory.login(carer, "and changed as the holder")).status_code == 200
    r = await client.get(f"/records/{about_boss['id']}", headers=carer.headers)
    assert r.status_code == 403 and "note-about-boss" not in r.text
    assert (await client.get(f"/records/{about_other['id']}", headers=carer.headers)).status_code == 200

    grants = {g["id"]: g for g in (await client.get("/emergency-grants", headers=other.headers)).json()["items"]}
    assert [grants[g["id"]]["active"] for g in (by_subject, by_record, kept)] == [False, False, True]
    revoked = await events(factory, action="emergency_grant.revoke")
    assert sorted(e.resource_id for e in revoked) == sorted([by_subject["id"], by_record["id"]])
    assert {(e.actor_id, e.rule, e.clause) for e in revoked} == {(boss.id, "emergency", "§4.5, §3.4")}


async def test_a_director_does_not_list_grants_over_their_own_personnel_file(client, factory: Factory):
    """The grant list is one more view of who may open a record (§3.6, §4.5): the director a
    personnel file is about finds no grant over it, nor over their subject; another director
    lists them all."""
    keeper = await factory.user("director")
    boss = await factory.user("director", manager=keeper)
    helper = await factory.user("colleague", manager=keeper)
    own = await factory.employee_subject(by=keeper, employee=boss)
    file = await factory.record(by=keeper, subject=own, classification="personnel")
    elsewhere = await factory.record(by=helper, subject=await factory.subject(by=helper),
                                     classification="sensitive")
    over_file = await factory.grant(by=keeper, to=helper, record=file)
    over_subject = await factory.grant(by=keeper, to=helper, subject=own)
    other = await factory.grant(by=keeper, to=helper, record=elsewhere)
    for who, seen in ((boss, {other["id"]}), (keeper, {over_file["id"], over_subject["id"], other["id"]})):
        for params in ({}, {"active": "true"}, {"limit": 1}):
            ids: set[str] = set()
            cursor = None
            while True:
                r = await client.get("/emergency-grants", headers=who.headers,
                                     params={**params, **({"cursor": cursor} if cursor else {})})
                assert r.status_code == 200, r.text
                ids |= {g["id"] for g in r.json()["items"]}
                cursor = r.json().get("next_cursor")
                if not cursor:
                    break
            assert ids == seen
            if who is boss:
                assert file["id"] not in r.text and own["id"] not in r.text
