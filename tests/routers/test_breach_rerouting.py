"""A report's handler keeps it only while the relation that made them handler holds (§1.8, §3.1,
§7.1, §7.2): a line-manager change, a role change or a deactivation that ends it routes an open
report again, in the same transaction, and nobody who may not know of the report learns of it from
the change."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, update

from app.models.audit import AuditEvent
from app.models.breach_reports import BreachReport
from app.models.users import User
from tests.factory import Factory, Person

DESCRIPTION = "reroute-description-7c1e"
EVIDENCE = "reroute-evidence-2b9d"
USER_KEYS = {"id", "email", "full_name", "role", "staff_type", "line_manager_id", "active", "created_at"}


@pytest.fixture
async def org(factory: Factory):
    """boss and other: directors (boss the earlier); carol (colleague) manages bob; alice reports."""
    return await factory.breach_org()


async def about(factory: Factory, reporter: Person, concerned: Person) -> str:
    return await factory.breach_report(by=reporter, about=concerned, description=DESCRIPTION, evidence=EVIDENCE)


async def handler_of(state, report_id: str) -> uuid.UUID:
    async with state.sessionmaker() as s:
        row = await s.get(BreachReport, uuid.UUID(report_id))
        assert row is not None
        return row.handler_id


async def events(state, report_id: str) -> list[AuditEvent]:
    async with state.sessionmaker() as s:
        return list((await s.execute(select(AuditEvent).where(AuditEvent.resource_id == report_id)
                                     .order_by(AuditEvent.id))).scalars())


async def patch(client, by: Person, who: Person, body: dict) -> dict:
    r = await client.patch(f"/users/{who.id}", headers=by.headers, json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def reads_in_full(client, who: Person, report_id: str) -> bool:
    r = await client.get(f"/breach-reports/{report_id}", headers=who.headers)
    if r.status_code == 404:
        assert DESCRIPTION not in r.text and EVIDENCE not in r.text
        listed = await client.get("/breach-reports", headers=who.headers)
        assert listed.status_code == 200 and report_id not in listed.text and DESCRIPTION not in listed.text
        return False
    assert r.status_code == 200, r.text
    assert r.json()["view"] == "full" and r.json()["description"] == DESCRIPTION
    return True


def rerouted(found: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in found if e.action == "breach_report.rerouted"]


# -- the probes ----------------------------------------------------------------------------------


async def test_a_handler_who_becomes_a_trustee_keeps_reading_the_report(client, factory, org):
    """carol handles the report as bob's line manager. bob moves to another line manager and
    carol becomes a trustee (not staff: a trustee never handles a report, §3.1). She still reads
    the whole report: description, evidence, who reported it."""
    other, carol, bob, alice = org["other"], org["carol"], org["bob"], org["alice"]
    r = await client.post("/breach-reports", headers=alice.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(bob.id), "description": DESCRIPTION,
        "evidence": EVIDENCE})
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    assert (await client.get(f"/breach-reports/{report_id}", headers=carol.headers)).json()["view"] == "full"

    r = await client.patch(f"/users/{bob.id}", headers=other.headers, json={"line_manager_id": str(org["boss"].id)})
    assert r.status_code == 200, r.text
    r = await client.patch(f"/users/{carol.id}", headers=other.headers, json={"role": "trustee"})
    assert r.status_code == 200, r.text

    r = await client.get(f"/breach-reports/{report_id}", headers=carol.headers)
    assert r.status_code == 404, f"a trustee (the former handler) still reads the report: {r.text[:300]}"
    r = await client.get("/breach-reports", headers=carol.headers)
    assert DESCRIPTION not in r.text


async def test_a_former_line_manager_keeps_handling_the_report_after_the_relation_ends(client, factory, org):
    """carol handles the report as bob's line manager (the routing rule). bob moves to another line
    manager: carol, no longer his line manager, still reads all of the report, and his new line
    manager does not."""
    boss, other, carol, bob, alice = org["boss"], org["other"], org["carol"], org["bob"], org["alice"]
    dave = await factory.user("colleague", manager=other)
    r = await client.post("/breach-reports", headers=alice.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(bob.id), "description": DESCRIPTION,
        "evidence": EVIDENCE})
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    r = await client.patch(f"/users/{bob.id}", headers=boss.headers, json={"line_manager_id": str(dave.id)})
    assert r.status_code == 200, r.text

    r = await client.get(f"/breach-reports/{report_id}", headers=carol.headers)
    assert DESCRIPTION not in r.text, "bob's former line manager still reads the report about him"


# -- visibility: handling and following a report take a staff account (§3.1) ------------------------


async def set_role(state, person: Person, role: str) -> None:
    """Straight into the table: what visible() decides, whatever re-routing does."""
    async with state.sessionmaker() as s:
        await s.execute(update(User).where(User.id == person.id).values(role=role, staff_type=None))
        await s.commit()


async def test_a_handler_who_is_a_trustee_knows_nothing_of_the_report(client, factory, state, org):
    carol, bob, alice = org["carol"], org["bob"], org["alice"]
    report_id = await about(factory, alice, bob)
    assert await reads_in_full(client, carol, report_id)
    await set_role(state, carol, "trustee")
    assert await handler_of(state, report_id) == carol.id  # still in the column ...
    assert not await reads_in_full(client, carol, report_id)  # ... and it gives her nothing
    url = f"/breach-reports/{report_id}"
    for path, body in (("/investigate", None), ("/finding", {"finding": "unsubstantiated"}),
                       ("/complaint-procedure-advised", None)):
        r = await client.post(url + path, headers=carol.headers, json=body)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json" and DESCRIPTION not in r.text
    r = await client.get("/breach-reports", headers=carol.headers, params={"handler_id": str(carol.id)})
    assert r.status_code == 200 and r.json()["items"] == []
    # the report is untouched; a director still finds it open
    r = await client.get(url, headers=org["other"].headers)
    assert r.json()["status"] == "open" and r.json()["finding"] is None
    # as a colleague again she handles it
    await set_role(state, carol, "colleague")
    assert await reads_in_full(client, carol, report_id)


async def test_a_reporter_who_is_a_trustee_no_longer_follows_the_report(client, factory, state, org):
    alice = org["alice"]
    report_id = await about(factory, alice, org["bob"])
    r = await client.get(f"/breach-reports/{report_id}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["view"] == "status"
    await set_role(state, alice, "trustee")
    r = await client.get(f"/breach-reports/{report_id}", headers=alice.headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await client.get("/breach-reports", headers=alice.headers)
    assert r.status_code == 200 and r.json()["items"] == []


# -- re-routing when the relation ends ---------------------------------------------------------------


async def test_the_new_line_manager_gets_the_report_and_the_move_is_audited(client, state, factory, org):
    boss, other, carol, bob, alice = org["boss"], org["other"], org["carol"], org["bob"], org["alice"]
    dave = await factory.user("colleague", manager=other)
    report_id = await about(factory, alice, bob)
    await patch(client, boss, bob, {"line_manager_id": str(dave.id)})

    assert await handler_of(state, report_id) == dave.id
    assert await reads_in_full(client, dave, report_id)
    assert not await reads_in_full(client, carol, report_id)
    r = await client.post(f"/breach-reports/{report_id}/finding", headers=carol.headers,
                          json={"finding": "unsubstantiated"})
    assert r.status_code == 404 and DESCRIPTION not in r.text
    found = await events(state, report_id)
    assert [e.action for e in found] == ["breach_report.create", "breach_report.rerouted"]
    event = found[-1]
    assert (event.actor_id, event.rule, event.clause, event.decision) == (boss.id, "routing", "§1.8", "allow")
    assert event.detail == {"kind": "colleague_conduct", "status": "open", "handler_id": str(dave.id),
                            "previous_handler_id": str(carol.id), "routed_to": "line_manager",
                            "account_id": str(bob.id)}
    # and dave, the handler now, records the finding
    r = await client.post(f"/breach-reports/{report_id}/finding", headers=dave.headers,
                          json={"finding": "unsubstantiated"})
    assert r.status_code == 200 and r.json()["found_by"] == str(dave.id)


async def test_moved_to_the_reporter_goes_to_a_director(client, factory, state, org):
    boss, carol, bob, alice = org["boss"], org["carol"], org["bob"], org["alice"]
    report_id = await about(factory, alice, bob)
    await patch(client, org["other"], bob, {"line_manager_id": str(alice.id)})
    assert await handler_of(state, report_id) == boss.id  # the reporter never handles it; the earliest director
    assert rerouted(await events(state, report_id))[0].detail["routed_to"] == "director"
    assert not await reads_in_full(client, carol, report_id)
    r = await client.get(f"/breach-reports/{report_id}", headers=alice.headers)
    assert r.json()["view"] == "status"


async def test_a_line_manager_left_with_none_goes_to_a_director(client, factory, state, org):
    report_id = await about(factory, org["alice"], org["bob"])
    await patch(client, org["other"], org["bob"], {"line_manager_id": None})
    assert await handler_of(state, report_id) == org["boss"].id
    assert not await reads_in_full(client, org["carol"], report_id)


async def test_a_deactivated_handler_is_replaced(client, state, factory, org):
    boss, other, carol, bob, alice = org["boss"], org["other"], org["carol"], org["bob"], org["alice"]
    report_id = await about(factory, alice, bob)
    await patch(client, other, carol, {"active": False})  # bob's line manager has left (§7.2)
    assert await handler_of(state, report_id) == boss.id
    assert await reads_in_full(client, boss, report_id)
    event = rerouted(await events(state, report_id))[0]
    assert (event.detail["previous_handler_id"], event.detail["routed_to"]) == (str(carol.id), "director")
    r = await client.get(f"/breach-reports/{report_id}", headers=carol.headers)
    assert r.status_code == 401


async def test_a_director_who_handles_as_a_director_and_stops_being_one(client, state, factory, clock, org):
    """Routed to a director (bob's line manager reported it): a director no longer, she hands it on."""
    boss, other, carol, bob = org["boss"], org["other"], org["carol"], org["bob"]
    report_id = await about(factory, carol, bob)
    assert await handler_of(state, report_id) == boss.id
    await patch(client, other, boss, {"role": "colleague"})
    assert await handler_of(state, report_id) == other.id
    assert not await reads_in_full(client, boss, report_id)
    assert rerouted(await events(state, report_id))[0].detail["routed_to"] == "director"


async def test_a_grievance_about_kmm_follows_the_reporters_line_manager(client, state, factory, org):
    other, carol, bob = org["other"], org["carol"], org["bob"]
    dave = await factory.user("colleague", manager=other)
    r = await client.post("/breach-reports", headers=bob.headers, json={"kind": "grievance",
                                                                        "description": DESCRIPTION})
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    assert await handler_of(state, report_id) == carol.id  # §7.1: raise it with your line manager
    await patch(client, other, bob, {"line_manager_id": str(dave.id)})
    assert await handler_of(state, report_id) == dave.id
    assert not await reads_in_full(client, carol, report_id)
    r = await client.get(f"/breach-reports/{report_id}", headers=bob.headers)
    assert r.json()["view"] == "status"


async def test_a_change_that_keeps_the_relation_moves_nothing(client, state, factory, org):
    other, carol, bob, alice = org["other"], org["carol"], org["bob"], org["alice"]
    report_id = await about(factory, alice, bob)
    await patch(client, other, carol, {"role": "director"})  # still bob's line manager, and staff
    await patch(client, other, bob, {"line_manager_id": str(carol.id), "full_name": "Bob Renamed"})
    await patch(client, other, alice, {"line_manager_id": None})  # the reporter's own manager: no matter
    assert await handler_of(state, report_id) == carol.id
    assert rerouted(await events(state, report_id)) == []
    assert await reads_in_full(client, carol, report_id)


# -- what stays where it is ----------------------------------------------------------------------------


async def assign(client, director: Person, report_id: str, to: Person) -> None:
    r = await client.post(f"/breach-reports/{report_id}/assign", headers=director.headers,
                          json={"handler_id": str(to.id)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("assignee", ["carol", "alice"])
async def test_a_directors_assignment_stays_while_the_assignee_is_staff(client, state, factory, org, assignee):
    """Whether or not the assignee is also bob's line manager, the assignment, not the relation,
    made them handler (carol: the one routing chose; alice: the reporter)."""
    boss, other, bob = org["boss"], org["other"], org["bob"]
    chosen = org[assignee]
    dave = await factory.user("colleague", manager=other)
    report_id = await about(factory, org["alice"], bob)
    await assign(client, boss, report_id, chosen)
    await patch(client, other, bob, {"line_manager_id": str(dave.id)})
    await patch(client, other, chosen, {"role": "director"})
    await patch(client, boss, chosen, {"role": "colleague"})
    assert await handler_of(state, report_id) == chosen.id
    assert await reads_in_full(client, chosen, report_id)
    assert not await reads_in_full(client, dave, report_id)
    assert rerouted(await events(state, report_id)) == []


async def test_a_report_routed_to_a_director_stays_while_they_are_one(client, state, factory, org):
    """bob's line manager reported it, so a director handles it; bob's next line manager does not
    take it from them: that relation did not make the director handler."""
    boss, other, carol, bob = org["boss"], org["other"], org["carol"], org["bob"]
    dave = await factory.user("colleague", manager=other)
    report_id = await about(factory, carol, bob)
    assert await handler_of(state, report_id) == boss.id
    await patch(client, other, bob, {"line_manager_id": str(dave.id)})
    assert await handler_of(state, report_id) == boss.id
    assert rerouted(await events(state, report_id)) == []
    assert not await reads_in_full(client, dave, report_id)


async def test_an_assignee_who_stops_being_staff_is_replaced(client, state, factory, org):
    boss, other, carol, bob, alice = org["boss"], org["other"], org["carol"], org["bob"], org["alice"]
    lone = await factory.user("colleague")
    report_id = await about(factory, alice, bob)
    await assign(client, boss, report_id, lone)
    await patch(client, other, lone, {"role": "trustee"})
    assert await handler_of(state, report_id) == carol.id  # routed again: bob's line manager
    assert not await reads_in_full(client, lone, report_id)
    event = rerouted(await events(state, report_id))[0]
    assert event.detail["previous_handler_id"] == str(lone.id)
    assert event.detail["routed_to"] == "line_manager"


async def test_a_closed_report_keeps_the_handler_who_found_it(client, state, factory, org):
    other, carol, bob, alice = org["other"], org["carol"], org["bob"], org["alice"]
    dave = await factory.user("colleague", manager=other)
    report_id = await about(factory, alice, bob)
    r = await client.post(f"/breach-reports/{report_id}/finding", headers=carol.headers,
                          json={"finding": "substantiated"})
    assert r.status_code == 200, r.text
    await patch(client, other, bob, {"line_manager_id": str(dave.id)})
    await patch(client, other, carol, {"active": False})
    assert await handler_of(state, report_id) == carol.id
    assert [e.action for e in await events(state, report_id)] == [
        "breach_report.create", "breach_report.investigate", "breach_report.finding"]
    assert not await reads_in_full(client, dave, report_id)


async def test_an_investigation_under_way_is_routed_again(client, state, factory, org):
    other, carol, bob, alice = org["other"], org["carol"], org["bob"], org["alice"]
    dave = await factory.user("colleague", manager=other)
    report_id = await about(factory, alice, bob)
    r = await client.post(f"/breach-reports/{report_id}/investigate", headers=carol.headers)
    assert r.status_code == 200, r.text
    await patch(client, other, bob, {"line_manager_id": str(dave.id)})
    assert await handler_of(state, report_id) == dave.id
    assert rerouted(await events(state, report_id))[0].detail["status"] == "investigating"


# -- the one concerned learns nothing ------------------------------------------------------------------


@pytest.fixture
async def board(factory: Factory, clock):
    """Three directors in order of creation; alice reports to the first."""
    first = await factory.user("director")
    clock.advance(seconds=1)
    second = await factory.user("director")
    clock.advance(seconds=1)
    third = await factory.user("director")
    alice = await factory.user("colleague", manager=first)
    return {"first": first, "second": second, "third": third, "alice": alice}


async def audit_seen_by(client, who: Person, report_id: str, account: Person) -> list[dict]:
    items: list[dict] = []
    for params in ({}, {"resource_type": "breach_report"}, {"resource_id": report_id},
                   {"action": "breach_report.rerouted"}, {"actor_id": str(who.id)},
                   {"resource_id": str(account.id)}):
        r = await client.get("/audit-events", headers=who.headers, params={"limit": 200, **params})
        assert r.status_code == 200, r.text
        items.extend(r.json()["items"])
    return items


@pytest.mark.parametrize("change", [{"active": False}, {"role": "trustee"}, {"role": "colleague"}])
async def test_the_director_concerned_who_removes_the_handler_learns_nothing(client, factory, state, board, change):
    """first is concerned; second handles (the earliest director but first). first changes second:
    the report goes to third, and first's response and audit trail say nothing of it."""
    first, second, third, alice = board["first"], board["second"], board["third"], board["alice"]
    report_id = await about(factory, alice, first)
    assert await handler_of(state, report_id) == second.id
    before = await client.get(f"/users/{second.id}", headers=first.headers)

    r = await client.patch(f"/users/{second.id}", headers=first.headers, json=change)
    assert r.status_code == 200, r.text
    assert set(r.json()) == USER_KEYS
    assert r.json() == {**before.json(), **change}
    assert report_id not in r.text and DESCRIPTION not in r.text

    assert await handler_of(state, report_id) == third.id
    assert await reads_in_full(client, third, report_id)
    seen = await audit_seen_by(client, first, report_id, second)
    assert [e for e in seen if e["resource_type"] == "breach_report" or e["action"].startswith("breach_report.")
            ] == []
    assert report_id not in str(seen)
    updates = [e for e in seen if e["action"] == "account.update" and e["resource_id"] == str(second.id)]
    assert updates, "the account change itself is audited and shown"
    key = next(iter(change))
    assert updates[0]["detail"] == {"fields": [key], key: [{"active": True, "role": "director"}[key], change[key]]}
    # third sees the move; first never reads the report
    theirs = await audit_seen_by(client, third, report_id, second)
    assert {e["action"] for e in theirs if e["resource_id"] == report_id} == {
        "breach_report.create", "breach_report.rerouted"}
    assert (await client.get(f"/breach-reports/{report_id}", headers=first.headers)).status_code == 404


async def test_with_no_one_to_route_to_the_report_stays_and_the_change_goes_through(client, state, factory):
    """boss, the only director, has a colleague as line manager, who handles a report about boss.
    boss removes that line manager: nobody but boss could take the report, so it stays with its
    handler, and boss's change succeeds like any other (a refusal would tell boss of it)."""
    boss = await factory.user("director")
    carol = await factory.user("colleague")
    alice = await factory.user("colleague", manager=carol)
    await patch(client, await factory.user("director"), boss, {"line_manager_id": str(carol.id)})
    report_id = await about(factory, alice, boss)
    assert await handler_of(state, report_id) == carol.id
    async with state.sessionmaker() as s:  # boss is the only director left
        await s.execute(update(User).where(User.role == "director", User.id != boss.id).values(active=False))
        await s.commit()

    r = await client.patch(f"/users/{boss.id}", headers=boss.headers, json={"line_manager_id": None})
    assert r.status_code == 200, r.text
    assert report_id not in r.text
    assert await handler_of(state, report_id) == carol.id
    found = await events(state, report_id)
    assert [e.action for e in found] == ["breach_report.create", "breach_report.unrouted"]
    assert found[-1].detail == {"kind": "colleague_conduct", "status": "open", "handler_id": str(carol.id),
                                "account_id": str(boss.id)}
    seen = await audit_seen_by(client, boss, report_id, boss)
    assert [e for e in seen if e["resource_type"] == "breach_report"] == [] and report_id not in str(seen)
