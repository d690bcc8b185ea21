"""Breach reports (DESIGN §5; policy §1.7, §1.8, §7): kinds, routing, visibility,
findings and their outcomes."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.models.audit import AuditEvent
from app.models.breach_reports import BreachReport
from app.models.users import User
from app.workflows import compliance
from tests.factory import Factory, Person

DESCRIPTION = "description-marker-91c2"
EVIDENCE = "evidence-marker-44d0"
COMPLAINANT = "Complainant-Marker Name"
STATUS_VIEW_KEYS = {"view", "id", "kind", "status", "created_at"}


async def count(state, model=BreachReport) -> int:
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def deactivate(state, person: Person) -> None:
    async with state.sessionmaker() as s:
        await s.execute(update(User).where(User.id == person.id).values(active=False))
        await s.commit()


@pytest.fixture
async def org(factory: Factory):
    """director <- manager <- (alice, bob); carol has no line manager."""
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    carol = await factory.user("colleague")
    trustee = await factory.user("trustee")
    return {"director": director, "manager": manager, "alice": alice, "bob": bob, "carol": carol,
            "trustee": trustee}


def conduct(about: Person, **kw) -> dict:
    return {"kind": "colleague_conduct", "concerned_user_id": str(about.id), "description": DESCRIPTION,
            "evidence": EVIDENCE, **kw}


async def report(client, reporter: Person, body: dict) -> dict:
    r = await client.post("/breach-reports", headers=reporter.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def full(client, state, report_id: str) -> dict:
    """The report's routing and state, read straight from the table (no visibility involved)."""
    async with state.sessionmaker() as s:
        row = await s.get(BreachReport, uuid.UUID(report_id))
        assert row is not None
        return {"handler_id": str(row.handler_id), "status": row.status, "outcome": row.outcome}


# -- kinds and bad input -------------------------------------------------------------------------


async def test_any_staff_account_reports_and_sees_only_the_status(client, state, org):
    body = await report(client, org["alice"], conduct(org["bob"]))
    assert set(body) == STATUS_VIEW_KEYS
    assert (body["view"], body["kind"], body["status"]) == ("status", "colleague_conduct", "open")
    assert DESCRIPTION not in str(body)
    r = await client.post("/breach-reports", headers=org["trustee"].headers, json=conduct(org["bob"]))
    assert r.status_code == 403 and r.json()["rule"] == "staff-only"


@pytest.mark.parametrize(("change", "field", "clause"), [
    ({"kind": "unauthorised_access"}, "kind", "§7.2"),
    ({"kind": "telepathy"}, "kind", None),
    ({"evidence": None}, "evidence", "§1.8"),
    ({"concerned_user_id": None}, "concerned_user_id", "§1.8"),
    ({"concerned_user_id": "00000000-0000-4000-8000-000000000000"}, "concerned_user_id", None),
    ({"concerned_user_id": "SELF"}, "concerned_user_id", "§1.8"),
    ({"concerned_user_id": "TRUSTEE"}, "concerned_user_id", None),
    ({"complainant_name": "Someone"}, "complainant_name", None),
    ({"description": ""}, "description", None),
    ({"description": "d" * 10_001}, "description", None),
])
async def test_bad_input_is_422_and_changes_nothing(client, state, org, change, field, clause):
    alice = org["alice"]
    body = conduct(org["bob"], **change)
    if body.get("concerned_user_id") == "SELF":
        body["concerned_user_id"] = str(alice.id)
    if body.get("concerned_user_id") == "TRUSTEE":
        body["concerned_user_id"] = str(org["trustee"].id)
    events_before = await count(state, AuditEvent)
    r = await client.post("/breach-reports", headers=alice.headers, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert field in problem["detail"]
    if clause:
        assert problem["clause"] == clause
    assert "d" * 100 not in r.text and EVIDENCE not in r.text
    assert await count(state) == 0
    assert await count(state, AuditEvent) == events_before


@pytest.mark.parametrize("missing", ["complainant_name", "complaint_procedure_advised"])
async def test_external_complaint_records_complainant_and_procedure(client, state, org, missing):
    body = {"kind": "external_complaint", "concerned_user_id": str(org["bob"].id), "description": DESCRIPTION,
            "complainant_name": COMPLAINANT, "complaint_procedure_advised": False}
    del body[missing]
    r = await client.post("/breach-reports", headers=org["alice"].headers, json=body)
    assert r.status_code == 422 and r.json()["clause"] == "§1.7"
    assert await count(state) == 0


async def test_complaints_without_procedure_advised_until_marked(client, state, settings, org, clock):
    body = {"kind": "external_complaint", "description": DESCRIPTION, "complainant_name": COMPLAINANT}
    advised = await report(client, org["alice"], {**body, "complaint_procedure_advised": True})
    not_advised = await report(client, org["alice"], {**body, "complaint_procedure_advised": False})
    check = compliance.checks()["complaints_without_procedure_advised"]
    async with state.sessionmaker() as s:
        assert await check(s, clock.now(), settings) == [not_advised["id"]]
    url = f"/breach-reports/{not_advised['id']}/complaint-procedure-advised"
    r = await client.post(url, headers=org["alice"].headers)  # the reporter is not the handler
    assert r.status_code == 403
    r = await client.post(url, headers=org["director"].headers)
    assert r.status_code == 200 and r.json()["complaint_procedure_advised"] is True
    assert (await client.post(url, headers=org["director"].headers)).status_code == 409
    async with state.sessionmaker() as s:
        assert await check(s, clock.now(), settings) == []
    assert advised["id"] != not_advised["id"]


async def test_grievance_and_confidentiality_breach(client, state, org):
    # a grievance about KMM itself names no colleague and goes to the reporter's line manager (§7.1)
    g = await report(client, org["alice"], {"kind": "grievance", "description": DESCRIPTION})
    assert (await full(client, state, g["id"]))["handler_id"] == str(org["manager"].id)
    # no line manager: a director
    g = await report(client, org["carol"], {"kind": "grievance", "description": DESCRIPTION})
    assert (await full(client, state, g["id"]))["handler_id"] == str(org["director"].id)
    # a breach of confidentiality names the colleague concerned
    r = await client.post("/breach-reports", headers=org["alice"].headers,
                          json={"kind": "confidentiality_breach", "description": DESCRIPTION})
    assert r.status_code == 422 and r.json()["clause"] == "§7.2"
    b = await report(client, org["carol"], {"kind": "confidentiality_breach", "description": DESCRIPTION,
                                            "concerned_user_id": str(org["alice"].id)})
    assert (await full(client, state, b["id"]))["handler_id"] == str(org["manager"].id)


# -- routing ---------------------------------------------------------------------------------------


async def test_routed_to_the_line_manager_of_the_colleague_concerned(client, state, org):
    body = await report(client, org["carol"], conduct(org["alice"]))
    assert (await full(client, state, body["id"]))["handler_id"] == str(org["manager"].id)


async def test_routed_to_a_director_when_the_line_manager_reports(client, state, org):
    body = await report(client, org["manager"], conduct(org["alice"]))
    assert (await full(client, state, body["id"]))["handler_id"] == str(org["director"].id)


async def test_routed_to_a_director_when_there_is_no_line_manager(client, state, org):
    body = await report(client, org["alice"], conduct(org["carol"]))
    assert (await full(client, state, body["id"]))["handler_id"] == str(org["director"].id)


async def test_routed_to_a_director_when_the_line_manager_has_left(client, state, org):
    await deactivate(state, org["manager"])
    body = await report(client, org["bob"], conduct(org["alice"]))
    assert (await full(client, state, body["id"]))["handler_id"] == str(org["director"].id)


async def test_a_director_concerned_is_routed_to_another_director(client, state, factory, org, clock):
    clock.advance(seconds=1)
    second = await factory.user("director")
    clock.advance(seconds=1)
    third = await factory.user("director")
    # the earliest active director other than the one concerned
    body = await report(client, org["alice"], conduct(org["director"]))
    assert (await full(client, state, body["id"]))["handler_id"] == str(second.id)
    # a director reporting about a director's conduct: another director again, not the reporter
    body = await report(client, second, conduct(org["director"]))
    assert (await full(client, state, body["id"]))["handler_id"] == str(third.id)
    # the concerned director never sees it, even as a director
    r = await client.get(f"/breach-reports/{body['id']}", headers=org["director"].headers)
    assert r.status_code == 404
    r = await client.get("/breach-reports", headers=org["director"].headers)
    assert body["id"] not in {i["id"] for i in r.json()["items"]}


async def test_no_director_to_route_to_is_409_and_writes_nothing(client, state, factory):
    only = await factory.user("director")
    peer = await factory.user("colleague")
    r = await client.post("/breach-reports", headers=peer.headers, json=conduct(only))
    assert r.status_code == 409 and r.json()["type"].endswith("no-handler")
    assert await count(state) == 0


# -- visibility ------------------------------------------------------------------------------------


async def test_visibility_of_one_report(client, state, org):
    alice, bob, manager, director = org["alice"], org["bob"], org["manager"], org["director"]
    body = await report(client, alice, conduct(bob))  # handled by manager
    url = f"/breach-reports/{body['id']}"
    for who in (manager, director):
        r = await client.get(url, headers=who.headers)
        assert r.status_code == 200
        got = r.json()
        assert (got["view"], got["description"], got["evidence"]) == ("full", DESCRIPTION, EVIDENCE)
        assert got["handler_id"] == str(manager.id) and got["concerned_user_id"] == str(bob.id)
        assert r.headers["cache-control"] == "no-store"
    r = await client.get(url, headers=alice.headers)
    assert r.status_code == 200 and set(r.json()) == STATUS_VIEW_KEYS
    for who in (bob, org["carol"], org["trustee"]):
        r = await client.get(url, headers=who.headers)
        assert r.status_code == 404 and DESCRIPTION not in r.text


async def test_the_colleague_concerned_never_sees_it_whatever_else_they_are(client, state, factory, org):
    alice, director = org["alice"], org["director"]
    # alice self-reports a breach: she is reporter and concerned, and still never sees it
    body = await report(client, alice, {"kind": "confidentiality_breach", "description": DESCRIPTION,
                                        "concerned_user_id": str(alice.id)})
    assert (await client.get(f"/breach-reports/{body['id']}", headers=alice.headers)).status_code == 404
    r = await client.get("/breach-reports", headers=alice.headers)
    assert r.json()["items"] == []
    # nor can she be made its handler
    r = await client.post(f"/breach-reports/{body['id']}/assign", headers=director.headers,
                          json={"handler_id": str(alice.id)})
    assert r.status_code == 422
    assert (await full(client, state, body["id"]))["handler_id"] == str(org["manager"].id)


async def test_lists_show_each_caller_what_they_may(client, state, org):
    alice, bob, carol, manager, director = (org[k] for k in ("alice", "bob", "carol", "manager", "director"))
    about_bob = await report(client, alice, conduct(bob))  # manager handles
    about_carol = await report(client, alice, conduct(carol))  # director handles
    about_alice = await report(client, carol, conduct(alice))  # manager handles

    async def ids(who: Person, **params) -> dict[str, str]:
        r = await client.get("/breach-reports", headers=who.headers, params=params)
        assert r.status_code == 200
        return {i["id"]: i["view"] for i in r.json()["items"]}

    assert await ids(alice) == {about_bob["id"]: "status", about_carol["id"]: "status"}
    assert await ids(bob) == {}
    assert await ids(carol) == {about_alice["id"]: "status"}
    assert await ids(manager) == {about_bob["id"]: "full", about_alice["id"]: "full"}
    assert await ids(director) == {i["id"]: "full" for i in (about_bob, about_carol, about_alice)}
    assert await ids(org["trustee"]) == {}
    # filters
    assert set(await ids(director, handler_id=str(manager.id))) == {about_bob["id"], about_alice["id"]}
    assert set(await ids(director, kind="grievance")) == set()
    assert set(await ids(director, status="open")) == {about_bob["id"], about_carol["id"], about_alice["id"]}
    # a reporter does not learn who handles their report by filtering on it
    assert await ids(alice, handler_id=str(org["director"].id)) == {}
    # cursor pagination
    r = await client.get("/breach-reports", headers=director.headers, params={"limit": 2})
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    r = await client.get("/breach-reports", headers=director.headers,
                         params={"limit": 2, "cursor": page["next_cursor"]})
    rest = r.json()
    assert rest["next_cursor"] is None and len(rest["items"]) == 1
    assert {i["id"] for i in page["items"] + rest["items"]} == {about_bob["id"], about_carol["id"], about_alice["id"]}


# -- findings, status, assignment --------------------------------------------------------------------


@pytest.mark.parametrize(("finding", "outcome", "left"), [
    ("substantiated", "disciplinary_action", False),
    ("substantiated", "legal_action", True),  # the colleague concerned has left (§7.2)
    ("unsubstantiated", "no_action", False),
    ("malicious", "disciplinary_action_against_reporter", False),  # §1.8
])
async def test_each_finding_gives_its_outcome(client, state, org, finding, outcome, left):
    body = await report(client, org["alice"], {"kind": "confidentiality_breach", "description": DESCRIPTION,
                                               "concerned_user_id": str(org["bob"].id)})
    if left:
        await deactivate(state, org["bob"])
    r = await client.post(f"/breach-reports/{body['id']}/finding", headers=org["manager"].headers,
                          json={"finding": finding, "notes": "notes-marker"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["finding"], got["outcome"], got["status"]) == (finding, outcome, "closed")
    assert got["found_by"] == str(org["manager"].id) and got["notes"] == "notes-marker"
    r = await client.get(f"/breach-reports/{body['id']}", headers=org["alice"].headers)
    assert set(r.json()) == STATUS_VIEW_KEYS and r.json()["status"] == "closed"


async def test_status_moves_open_investigating_closed(client, state, org):
    alice, manager, director = org["alice"], org["manager"], org["director"]
    body = await report(client, alice, conduct(org["bob"]))
    url = f"/breach-reports/{body['id']}"
    # the reporter may not investigate or find; others do not know it exists
    assert (await client.post(f"{url}/investigate", headers=alice.headers)).status_code == 403
    r = await client.post(f"{url}/finding", headers=alice.headers, json={"finding": "substantiated"})
    assert r.status_code == 403 and r.json()["rule"] == "handler"
    for who in (org["bob"], org["carol"]):
        r = await client.post(f"{url}/finding", headers=who.headers, json={"finding": "substantiated"})
        assert r.status_code == 404
    r = await client.post(f"{url}/investigate", headers=manager.headers)
    assert r.status_code == 200 and r.json()["status"] == "investigating" and r.json()["investigating_at"]
    assert (await client.post(f"{url}/investigate", headers=manager.headers)).status_code == 409
    r = await client.post(f"{url}/finding", headers=manager.headers, json={"finding": "verdict"})
    assert r.status_code == 422
    assert (await full(client, state, body["id"]))["status"] == "investigating"
    r = await client.post(f"{url}/finding", headers=director.headers, json={"finding": "unsubstantiated"})
    assert r.status_code == 200 and r.json()["status"] == "closed"
    # a finding on a closed report is 409, and changes nothing
    r = await client.post(f"{url}/finding", headers=manager.headers, json={"finding": "malicious"})
    assert r.status_code == 409
    r = await client.post(f"{url}/assign", headers=director.headers, json={"handler_id": str(org["carol"].id)})
    assert r.status_code == 409
    assert (await full(client, state, body["id"]))["outcome"] == "no_action"
    async with state.sessionmaker() as s:
        events = (await s.execute(select(AuditEvent).where(AuditEvent.resource_id == body["id"])
                                  .order_by(AuditEvent.id))).scalars().all()
    assert [e.action for e in events] == ["breach_report.create", "breach_report.investigate",
                                          "breach_report.finding"]
    assert events[-1].detail == {"kind": "colleague_conduct", "status": "closed", "finding": "unsubstantiated",
                                 "outcome": "no_action"}
    for e in events:
        assert DESCRIPTION not in str(e.detail) and EVIDENCE not in str(e.detail)


async def test_a_finding_on_an_open_report_starts_the_investigation_first(client, state, org):
    body = await report(client, org["alice"], conduct(org["bob"]))
    r = await client.post(f"/breach-reports/{body['id']}/finding", headers=org["manager"].headers,
                          json={"finding": "substantiated"})
    assert r.status_code == 200 and r.json()["investigating_at"] is not None
    async with state.sessionmaker() as s:
        actions = (await s.execute(select(AuditEvent.action).where(AuditEvent.resource_id == body["id"])
                                   .order_by(AuditEvent.id))).scalars().all()
    assert actions == ["breach_report.create", "breach_report.investigate", "breach_report.finding"]


async def test_a_director_reassigns(client, state, org):
    alice, bob, manager, director, carol = (org[k] for k in ("alice", "bob", "manager", "director", "carol"))
    body = await report(client, alice, conduct(bob))
    url = f"/breach-reports/{body['id']}"
    r = await client.post(f"{url}/assign", headers=manager.headers, json={"handler_id": str(carol.id)})
    assert r.status_code == 403 and r.json()["rule"] == "director-only"
    for bad in (org["trustee"].id, "00000000-0000-4000-8000-000000000000"):
        r = await client.post(f"{url}/assign", headers=director.headers, json={"handler_id": str(bad)})
        assert r.status_code == 422
    await deactivate(state, org["carol"])
    r = await client.post(f"{url}/assign", headers=director.headers, json={"handler_id": str(carol.id)})
    assert r.status_code == 422
    assert (await full(client, state, body["id"]))["handler_id"] == str(manager.id)
    # the reporter may be made handler; only the colleague concerned may not
    r = await client.post(f"{url}/assign", headers=director.headers, json={"handler_id": str(alice.id)})
    assert r.status_code == 200 and r.json()["handler_id"] == str(alice.id)
    # the old handler no longer knows of it; the new one sees it in full
    assert (await client.get(url, headers=manager.headers)).status_code == 404
    r = await client.get(url, headers=alice.headers)
    assert r.json()["view"] == "full"


async def test_open_too_long_in_the_compliance_summary(client, state, settings, factory, org, clock):
    old = await report(client, org["alice"], conduct(org["bob"]))
    closed = await report(client, org["alice"], conduct(org["bob"]))
    r = await client.post(f"/breach-reports/{closed['id']}/finding", headers=org["manager"].headers,
                          json={"finding": "unsubstantiated"})
    assert r.status_code == 200
    clock.advance(days=settings.breach_open_too_long_days - 1)
    await factory.login(org["alice"])
    recent = await report(client, org["alice"], conduct(org["bob"]))
    check = compliance.checks()["breach_reports_open_too_long"]
    async with state.sessionmaker() as s:
        assert await check(s, clock.now(), settings) == []
        later = clock.now() + timedelta(days=2)
        assert await check(s, later, settings) == [old["id"]]
    assert recent["id"] not in (old["id"], closed["id"])
