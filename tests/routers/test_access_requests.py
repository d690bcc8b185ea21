"""/access-requests over HTTP: who may ask (§3.4, §3.6), decisions, the package (§3.5), audit."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from app.models.access_requests import AccessPackageSealed, AccessRequest
from app.models.audit import AuditEvent
from tests.factory import Factory, Person

PROBLEM = "application/problem+json"


# -- helpers -------------------------------------------------------------------------


async def _subject(factory: Factory, by: Person, **kw) -> dict:
    return await factory.subject(by=by, **{"name": "Sam Okafor", **kw})


async def _org(factory: Factory, by: Person) -> dict:
    return await factory.subject(by=by, kind="organisation", name="Riverside Tenants", category="organisation",
                                 officers=[{"name": "Ada Chair", "office": "chair"},
                                           {"name": "Eli Exec", "office": "executive_officer"},
                                           {"name": "Mo Manager", "office": "manager"}])


async def _employee_subject(factory: Factory, director: Person, person: Person) -> dict:
    return await factory.employee_subject(by=director, employee=person)


def letter(subject: dict, clock, **kw) -> dict:
    body = {
        "kind": "subject_access", "subject_id": subject["id"], "requester_subject_id": subject["id"],
        "signed_by": subject["name"], "signatory_capacity": "individual", "in_writing": True,
        "letter_reference": f"LTR-2026-{uuid.uuid4().hex[:6]}",  # one letter is one request (§3.4)
        "received_at": (clock.now() - timedelta(days=1)).isoformat(),
    }
    body.update(kw)
    return body


async def _log(client, person: Person, body: dict) -> dict:
    r = await client.post("/access-requests", json=body, headers=person.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _decide(client, person: Person, rid: str, approve: bool = True):
    return await client.post(f"/access-requests/{rid}/decision", headers=person.headers,
                             json={"approve": approve, "reason": "letter checked against the file"})


async def _count(state, model=AccessRequest) -> int:
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def _events(state, action_prefix: str = "access_request.") -> list[AuditEvent]:
    async with state.sessionmaker() as s:
        rows = await s.execute(select(AuditEvent).where(col(AuditEvent.action).startswith(action_prefix))
                               .order_by(col(AuditEvent.id)))
        return list(rows.scalars())


def _assert_policy(r, status: int, rule: str, clause: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["rule"] == rule and body["clause"] == clause, body


@pytest.fixture
async def people(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    colleague = await factory.user("colleague", manager=manager)
    other = await factory.user("colleague", manager=manager)
    return {"director": director, "manager": manager, "colleague": colleague, "other": other}


# -- intake: who may ask ------------------------------------------------------------------


async def test_an_individual_signs_their_own_request(client, factory, people, state, clock):
    sam = await _subject(factory, people["colleague"])
    received = clock.now() - timedelta(days=2)
    r = await client.post("/access-requests", headers=people["colleague"].headers,
                          json=letter(sam, clock, signed_by="  sam   OKAFOR ", received_at=received.isoformat()))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "received" and body["overdue"] is False
    assert body["logged_by"] == str(people["colleague"].id)
    assert datetime.fromisoformat(body["received_at"]) == received
    assert datetime.fromisoformat(body["due_at"]) == received + timedelta(days=14)
    assert body["in_writing"] is True and body["signatory_capacity"] == "individual"
    assert r.headers["location"] == f"/access-requests/{body['id']}"
    assert r.headers["cache-control"] == "no-store"
    (event,) = await _events(state)
    assert (event.action, event.decision, event.resource_id, event.clause) == (
        "access_request.create", "allow", body["id"], "§3.4")
    assert "Okafor" not in json.dumps(event.detail) and "LTR" not in json.dumps(event.detail)


@pytest.mark.parametrize("kind,clause", [("subject_access", "§3.4"), ("personnel_access", "§3.6")])
async def test_a_request_not_in_writing_is_refused_and_not_stored(client, factory, people, state, clock, kind, clause):
    colleague = people["colleague"]
    subject = await _employee_subject(factory, people["director"], colleague)
    r = await client.post("/access-requests", headers=colleague.headers,
                          json=letter(subject, clock, kind=kind, in_writing=False))
    _assert_policy(r, 422, "in-writing", clause)
    assert await _count(state) == 0
    (event,) = await _events(state)
    assert (event.decision, event.rule, event.clause, event.resource_id) == ("deny", "in-writing", clause, None)
    assert subject["name"] not in json.dumps(event.detail)


@pytest.mark.parametrize("change", [
    {"signed_by": "Sam Okafor's Neighbour"},
    {"signatory_capacity": "chair"},
    {"signatory_capacity": "manager", "signed_by": "Sam Okafor"},
])
async def test_only_the_individual_may_sign(client, factory, people, state, clock, change):
    sam = await _subject(factory, people["colleague"])
    r = await client.post("/access-requests", headers=people["colleague"].headers,
                          json=letter(sam, clock, **change))
    _assert_policy(r, 422, "signatory", "§3.4")
    assert await _count(state) == 0


async def test_someone_else_cannot_ask_for_an_individuals_records(client, factory, people, state, clock):
    sam = await _subject(factory, people["colleague"])
    priya = await _subject(factory, people["colleague"], name="Priya Shah")
    r = await client.post("/access-requests", headers=people["colleague"].headers,
                          json=letter(sam, clock, requester_subject_id=priya["id"], signed_by="Priya Shah"))
    _assert_policy(r, 422, "signatory", "§3.4")
    assert await _count(state) == 0


@pytest.mark.parametrize("office,name", [("chair", "ada  chair"), ("executive_officer", "Eli Exec"),
                                         ("manager", "Mo Manager")])
async def test_an_organisation_officer_on_file_may_sign(client, factory, people, clock, office, name):
    org = await _org(factory, people["colleague"])
    body = await _log(client, people["colleague"], letter(org, clock, signed_by=name, signatory_capacity=office))
    assert body["signatory_capacity"] == office and body["requester_subject_id"] == org["id"]


@pytest.mark.parametrize("change", [
    {"signed_by": "Ada Chair", "signatory_capacity": "manager"},  # on file, but not as manager
    {"signed_by": "Nobody Known", "signatory_capacity": "chair"},  # no such officer
    {"signed_by": "Ada Chair", "signatory_capacity": "individual"},  # not in an office
    {"signed_by": "Riverside Tenants", "signatory_capacity": "individual"},
])
async def test_an_organisation_request_needs_an_officer_on_file(client, factory, people, state, clock, change):
    org = await _org(factory, people["colleague"])
    r = await client.post("/access-requests", headers=people["colleague"].headers, json=letter(org, clock, **change))
    _assert_policy(r, 422, "signatory", "§3.4")
    assert await _count(state) == 0


async def test_an_organisation_request_is_made_by_the_organisation_itself(client, factory, people, state, clock):
    org = await _org(factory, people["colleague"])
    sam = await _subject(factory, people["colleague"])
    r = await client.post("/access-requests", headers=people["colleague"].headers,
                          json=letter(org, clock, requester_subject_id=sam["id"], signed_by="Ada Chair",
                                      signatory_capacity="chair"))
    _assert_policy(r, 422, "signatory", "§3.4")
    assert await _count(state) == 0


async def test_an_employee_files_a_personnel_request_for_themself(client, factory, people, clock):
    colleague = people["colleague"]
    me = await _employee_subject(factory, people["director"], colleague)
    body = await _log(client, colleague, letter(me, clock, kind="personnel_access"))
    assert body["kind"] == "personnel_access" and body["logged_by"] == str(colleague.id)
    director = people["director"]
    dme = await _employee_subject(factory, director, director)
    assert (await _log(client, director, letter(dme, clock, kind="personnel_access")))["status"] == "received"


async def test_a_personnel_request_is_about_an_employee_and_signed_by_them(client, factory, people, state, clock):
    colleague = people["colleague"]
    me = await _employee_subject(factory, people["director"], colleague)
    sam = await _subject(factory, colleague)
    r = await client.post("/access-requests", headers=colleague.headers,
                          json=letter(sam, clock, kind="personnel_access"))
    _assert_policy(r, 422, "personnel-request", "§3.6")
    r = await client.post("/access-requests", headers=colleague.headers,
                          json=letter(me, clock, kind="personnel_access", signed_by=people["manager"].user.full_name))
    _assert_policy(r, 422, "signatory", "§3.6")
    assert await _count(state) == 0
    assert [e.decision for e in await _events(state)] == ["deny", "deny"]


async def test_trustees_cannot_log_or_list_requests(client, factory: Factory, people, state, clock):
    trustee = await factory.user("trustee")
    sam = await _subject(factory, people["colleague"])
    r = await client.post("/access-requests", headers=trustee.headers, json=letter(sam, clock))
    _assert_policy(r, 403, "staff-only", "§3.4")
    _assert_policy(await client.get("/access-requests", headers=trustee.headers), 403, "staff-only", "§3.4")
    made = await _log(client, people["colleague"], letter(sam, clock))
    _assert_policy(await client.get(f"/access-requests/{made['id']}", headers=trustee.headers),
                   403, "staff-only", "§3.4")
    assert await _count(state) == 1


async def test_service_clients_cannot_log_or_list_requests(client, factory, people, state, clock):
    headers = await factory.service_client(by=people["director"], scopes=["subjects:read", "records:read"])
    sam = await _subject(factory, people["colleague"])
    r = await client.post("/access-requests", headers=headers, json=letter(sam, clock))
    assert r.status_code == 403 and r.json()["rule"] == "accounts-only"
    assert (await client.get("/access-requests", headers=headers)).status_code == 403
    assert await _count(state) == 0


@pytest.mark.parametrize("change,field", [
    ({"subject_id": "6f1f8b8e-0000-4000-8000-000000000000"}, "subject_id"),
    ({"requester_subject_id": "6f1f8b8e-0000-4000-8000-000000000000"}, "requester_subject_id"),
    ({"signatory_capacity": "treasurer"}, "signatory_capacity"),
    ({"kind": "general_access"}, "kind"),
    ({"received_at": "2026-01-01T10:00:00"}, "received_at"),  # naive
    ({"letter_reference": ""}, "letter_reference"),
    ({"in_writing": None}, "in_writing"),
])
async def test_bad_input_is_a_clear_422_and_nothing_is_stored(client, factory, people, state, clock, change, field):
    sam = await _subject(factory, people["colleague"])
    r = await client.post("/access-requests", headers=people["colleague"].headers, json=letter(sam, clock, **change))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert field in r.json()["detail"]
    assert await _count(state) == 0
    assert await _events(state) == []


async def test_received_in_the_future_is_refused(client, factory, people, state, clock):
    sam = await _subject(factory, people["colleague"])
    future = (clock.now() + timedelta(minutes=1)).isoformat()
    r = await client.post("/access-requests", headers=people["colleague"].headers,
                          json=letter(sam, clock, received_at=future))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "received_at"]
    assert await _count(state) == 0
    now = clock.now().isoformat()  # received just now is fine
    assert (await _log(client, people["colleague"], letter(sam, clock, received_at=now)))["status"] == "received"


# -- seeing requests ----------------------------------------------------------------------


async def test_who_sees_which_requests(client, factory, people, clock):
    director, colleague, other, manager = people["director"], people["colleague"], people["other"], people["manager"]
    sam = await _subject(factory, colleague)
    mine = await _log(client, colleague, letter(sam, clock))
    others = await _log(client, other, letter(sam, clock))
    # A personnel letter from `other`, logged by the manager: `other` sees it as their own.
    other_subject = await _employee_subject(factory, director, other)
    personnel = await _log(client, manager, letter(other_subject, clock, kind="personnel_access"))

    async def ids(person: Person) -> set[str]:
        r = await client.get("/access-requests", headers=person.headers)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        return {i["id"] for i in r.json()["items"]}

    assert await ids(director) == {mine["id"], others["id"], personnel["id"]}
    assert await ids(colleague) == {mine["id"]}
    assert await ids(other) == {others["id"], personnel["id"]}
    assert await ids(manager) == {personnel["id"]}
    r = await client.get(f"/access-requests/{others['id']}", headers=colleague.headers)
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert "Okafor" not in r.text
    r = await client.get(f"/access-requests/{personnel['id']}", headers=other.headers)
    assert r.status_code == 200 and r.json()["kind"] == "personnel_access"
    r = await client.get(f"/access-requests/{mine['id']}", headers=director.headers)
    assert r.status_code == 200 and r.json()["id"] == mine["id"]


async def test_list_sorts_by_due_date_filters_and_pages(client, factory, people, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    made = {}
    for days in (3, 10, 1, 6):
        received = (clock.now() - timedelta(days=days)).isoformat()
        made[days] = await _log(client, colleague, letter(sam, clock, received_at=received))
    await _decide(client, director, made[6]["id"], approve=False)
    by_due = [made[d]["id"] for d in (10, 6, 3, 1)]
    r = await client.get("/access-requests", params={"limit": 3}, headers=director.headers)
    page1 = r.json()
    assert [i["id"] for i in page1["items"]] == by_due[:3] and page1["next_cursor"]
    r = await client.get("/access-requests", params={"limit": 3, "cursor": page1["next_cursor"]},
                         headers=director.headers)
    assert [i["id"] for i in r.json()["items"]] == by_due[3:] and r.json()["next_cursor"] is None
    r = await client.get("/access-requests", params={"status": "refused"}, headers=director.headers)
    assert [i["id"] for i in r.json()["items"]] == [made[6]["id"]]
    r = await client.get("/access-requests", params={"status": "received"}, headers=director.headers)
    assert [i["id"] for i in r.json()["items"]] == [made[d]["id"] for d in (10, 3, 1)]
    r = await client.get("/access-requests", params={"status": "lost"}, headers=director.headers)
    assert r.status_code == 422
    r = await client.get("/access-requests", params={"cursor": "forged.cursor"}, headers=director.headers)
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)


async def test_overdue_follows_the_service_clock(client, factory: Factory, people, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    waiting = await _log(client, colleague, letter(sam, clock, received_at=clock.now().isoformat()))
    approved = await _log(client, colleague, letter(sam, clock, received_at=clock.now().isoformat()))
    refused = await _log(client, colleague, letter(sam, clock, received_at=clock.now().isoformat()))
    assert (await _decide(client, director, approved["id"])).status_code == 200
    assert (await _decide(client, director, refused["id"], approve=False)).status_code == 200

    async def overdue_ids(value: str) -> set[str]:
        r = await client.get("/access-requests", params={"overdue": value}, headers=director.headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert await overdue_ids("true") == set()
    assert (await client.get(f"/access-requests/{waiting['id']}", headers=colleague.headers)).json()["overdue"] is False
    async def advance(**kw: float) -> None:
        clock.advance(**kw)
        for person in (director, colleague):  # access tokens are short-lived
            await factory.login(person)

    await advance(days=13, hours=23)
    assert await overdue_ids("true") == set()
    await advance(days=1, hours=1)  # 15 days after receipt
    assert (await client.get(f"/access-requests/{waiting['id']}", headers=colleague.headers)).json()["overdue"] is True
    assert (await client.get(f"/access-requests/{refused['id']}", headers=director.headers)).json()["overdue"] is False
    assert await overdue_ids("true") == {waiting["id"], approved["id"]}
    assert await overdue_ids("false") == {refused["id"]}
    # Fulfilling ends it.
    assert (await client.post(f"/access-requests/{approved['id']}/fulfil", headers=director.headers)).status_code == 200
    assert await overdue_ids("true") == {waiting["id"]}


# -- decisions and transitions ----------------------------------------------------------------


async def test_only_directors_decide(client, factory, people, state, clock):
    colleague, manager, director = people["colleague"], people["manager"], people["director"]
    sam = await _subject(factory, colleague)
    made = await _log(client, colleague, letter(sam, clock))
    for person in (colleague, manager):
        _assert_policy(await _decide(client, person, made["id"]), 403, "director-only", "§3.4")
        _assert_policy(await client.post(f"/access-requests/{made['id']}/fulfil", headers=person.headers),
                       403, "director-only", "§3.4")
    r = await client.get(f"/access-requests/{made['id']}", headers=colleague.headers)
    assert r.json()["status"] == "received" and r.json()["decided_by"] is None
    r = await _decide(client, director, made["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "approved" and body["decided_by"] == str(director.id)
    assert body["decision_reason"] == "letter checked against the file" and body["decided_at"]
    r = await client.post(f"/access-requests/{made['id']}/decision", headers=director.headers, json={"approve": True})
    assert r.status_code == 422  # a decision gives a reason


async def test_decide_on_an_unknown_request_is_404(client, people):
    r = await _decide(client, people["director"], "6f1f8b8e-0000-4000-8000-000000000000")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)


async def test_transitions_outside_the_state_machine_are_409(client, factory, people, state, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    fresh = await _log(client, colleague, letter(sam, clock))
    refused = await _log(client, colleague, letter(sam, clock))
    withdrawn = await _log(client, colleague, letter(sam, clock))
    fulfilled = await _log(client, colleague, letter(sam, clock))
    assert (await _decide(client, director, refused["id"], approve=False)).status_code == 200
    r = await client.post(f"/access-requests/{withdrawn['id']}/withdraw", headers=colleague.headers)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn" and r.json()["withdrawn_by"] == str(colleague.id)
    assert (await _decide(client, director, fulfilled["id"])).status_code == 200
    r = await client.post(f"/access-requests/{fulfilled['id']}/fulfil", headers=director.headers)
    assert r.status_code == 200

    def post(rid: str, what: str):
        return client.post(f"/access-requests/{rid}/{what}", headers=director.headers)

    cases = [
        (post(fresh["id"], "fulfil"), "received"),  # fulfilling before approval
        (post(refused["id"], "fulfil"), "refused"),
        (post(withdrawn["id"], "fulfil"), "withdrawn"),
        (post(fulfilled["id"], "fulfil"), "fulfilled"),  # twice
        (_decide(client, director, refused["id"]), "refused"),  # deciding twice
        (_decide(client, director, fulfilled["id"], approve=False), "fulfilled"),
        (_decide(client, director, withdrawn["id"]), "withdrawn"),
        (post(refused["id"], "withdraw"), "refused"),
        (post(fulfilled["id"], "withdraw"), "fulfilled"),
        (post(withdrawn["id"], "withdraw"), "withdrawn"),
    ]
    before = await _events(state)
    for call, status in cases:
        r = await call
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith(PROBLEM) and r.json()["current_status"] == status
    assert len(await _events(state)) == len(before)  # nothing happened, nothing audited
    statuses = {rid: (await client.get(f"/access-requests/{rid}", headers=director.headers)).json()["status"]
                for rid in (fresh["id"], refused["id"], withdrawn["id"], fulfilled["id"])}
    assert statuses == {fresh["id"]: "received", refused["id"]: "refused", withdrawn["id"]: "withdrawn",
                        fulfilled["id"]: "fulfilled"}
    assert await _count(state, AccessPackageSealed) == 1


async def test_withdraw_from_approved_by_a_director_and_not_by_a_stranger(client, factory, people, clock):
    director, colleague, other = people["director"], people["colleague"], people["other"]
    sam = await _subject(factory, colleague)
    made = await _log(client, colleague, letter(sam, clock))
    assert (await _decide(client, director, made["id"])).status_code == 200
    r = await client.post(f"/access-requests/{made['id']}/withdraw", headers=other.headers,
                          json={"reason": "not theirs to withdraw"})
    assert r.status_code == 404
    r = await client.post(f"/access-requests/{made['id']}/withdraw", headers=director.headers,
                          json={"reason": "the writer asked us to stop"})
    assert r.status_code == 200 and r.json()["status"] == "withdrawn" and r.json()["withdrawn_by"] == str(director.id)


async def test_concurrent_decisions_exactly_one_succeeds(client, factory, people, state, clock):
    director = people["director"]
    second = await Factory(client=client, state=state).user("director")
    sam = await _subject(factory, people["colleague"])
    made = await _log(client, people["colleague"], letter(sam, clock))
    results = await asyncio.gather(_decide(client, director, made["id"], approve=True),
                                   _decide(client, second, made["id"], approve=False))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 200).json()
    stored = (await client.get(f"/access-requests/{made['id']}", headers=director.headers)).json()
    assert stored["status"] == winner["status"] and stored["decided_by"] == winner["decided_by"]
    assert [e.action for e in await _events(state)].count("access_request.decide") == 1


# -- the package ------------------------------------------------------------------------------


async def _record(factory: Factory, person: Person, subject: dict, title: str, classification: str,
                  **kw) -> dict:
    return await factory.record(by=person, subject=subject, classification=classification, title=title,
                                content=f"content of {title}", **kw)


async def test_the_package_holds_exactly_what_the_subject_may_see(client, factory, people, state, clock):
    director, colleague, manager = people["director"], people["colleague"], people["manager"]
    sam = await _subject(factory, colleague)
    org = await _org(factory, colleague)
    priya = await _subject(factory, colleague, name="Priya Shah")
    general = await _record(factory, colleague, sam, "Sam: contact", "general")
    conf = await _record(factory, colleague, sam, "Sam: support plan", "confidential")
    sens_sam = await _record(factory, colleague, sam, "Sam: tenancy dispute", "sensitive")
    sens_org = await _record(factory, colleague, sam, "Sam: association dispute", "sensitive",
                             access_requester_id=org["id"])
    shredded = await _record(factory, colleague, sam, "Sam: old notes", "confidential")
    await _record(factory, colleague, priya, "Priya: referral", "confidential")
    r = await client.delete(f"/records/{shredded['id']}", params={"reason": "past retention"},
                            headers=manager.headers)
    assert r.status_code == 200, r.text
    # Reads that the access history reports: by rule, and never of what is withheld.
    assert (await client.get(f"/records/{conf['id']}", headers=manager.headers)).status_code == 200
    assert (await client.get(f"/records/{sens_org['id']}", headers=colleague.headers)).status_code == 200
    assert (await client.get(f"/records/{conf['id']}", headers=people["other"].headers)).status_code == 403

    made = await _log(client, colleague, letter(sam, clock))
    assert (await _decide(client, director, made["id"])).status_code == 200
    r = await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "fulfilled" and r.json()["fulfilled_by"] == str(director.id)

    r = await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["x-confidentiality"] == "sensitive"
    package = r.json()
    assert package["label"] == "CONFIDENTIAL" and package["generated_at"]
    assert package["subject_id"] == sam["id"] and package["withheld_count"] == 1
    got = {rec["id"]: rec for rec in package["records"]}
    assert set(got) == {general["id"], conf["id"], sens_sam["id"]}
    assert got[general["id"]]["label"] is None
    assert got[conf["id"]]["label"] == got[sens_sam["id"]]["label"] == "CONFIDENTIAL"
    assert got[sens_sam["id"]]["content"] == "content of Sam: tenancy dispute"
    assert got[conf["id"]]["title"] == "Sam: support plan"
    for hidden in ("association dispute", "old notes", "Priya"):
        assert hidden not in r.text
    history = package["access_history"]
    assert [(h["record_id"], h["actor_id"], h["rule"], h["clause"]) for h in history] == [
        (conf["id"], str(manager.id), "line-manager", "§1.3, §3.3, §4.2")]
    assert history[0]["actor_name"] == manager.user.full_name and history[0]["at"]
    assert sens_org["id"] not in r.text and shredded["id"] not in r.text
    exports = [e for e in await _events(state, "record.export") if not e.emergency]  # the download's are flagged
    assert sorted(e.resource_id for e in exports) == sorted([general["id"], conf["id"], sens_sam["id"]])
    assert {(e.rule, e.clause, e.detail["access_request_id"]) for e in exports} == {("access-request", "§3.4",
                                                                                      made["id"])}
    # Stored once, encrypted: no title or content in clear.
    async with state.sessionmaker() as s:
        sealed = (await s.execute(select(AccessPackageSealed))).scalar_one()
    assert (sealed.record_count, sealed.withheld_count) == (3, 1)
    assert b"content of" not in sealed.package_ct and b"Sam" not in sealed.package_ct


async def test_an_organisation_sees_its_sensitive_records_only_where_named(client, factory, people, clock):
    director, colleague = people["director"], people["colleague"]
    org = await _org(factory, colleague)
    sam = await _subject(factory, colleague)
    named_org = await _record(factory, colleague, org, "Org: dispute", "sensitive", access_requester_id=org["id"])
    await _record(factory, colleague, org, "Org: member complaint", "sensitive", access_requester_id=sam["id"])
    made = await _log(client, colleague, letter(org, clock, signed_by="Eli Exec",
                                                signatory_capacity="executive_officer"))
    await _decide(client, director, made["id"])
    await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)
    package = (await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)).json()
    assert [r["id"] for r in package["records"]] == [named_org["id"]] and package["withheld_count"] == 1
    assert package["access_history"] == []


async def test_the_employee_downloads_their_own_personnel_package_only_after_fulfilment(
    client, factory, people, state, clock
):
    director, manager, colleague, other = people["director"], people["manager"], people["colleague"], people["other"]
    me = await _employee_subject(factory, director, colleague)
    them = await _employee_subject(factory, director, other)
    review = await _record(factory, manager, me, "probation review", "personnel", purpose="personnel_administration")
    contract = await _record(factory, director, me, "contract", "personnel", purpose="personnel_administration")
    note = await _record(factory, manager, me, "a general note", "general")
    await _record(factory, manager, them, "their review", "personnel", purpose="personnel_administration")
    # The manager logs the employee's letter; the employee sees it as their own.
    made = await _log(client, manager, letter(me, clock, kind="personnel_access"))
    url = f"/access-requests/{made['id']}/package"
    r = await client.get(url, headers=colleague.headers)
    assert r.status_code == 409 and r.json()["current_status"] == "received"
    await _decide(client, director, made["id"])
    assert (await client.get(url, headers=colleague.headers)).status_code == 409
    assert (await client.get(url, headers=director.headers)).status_code == 409
    assert (await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)).status_code == 200

    r = await client.get(url, headers=colleague.headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["x-confidentiality"] == "personnel"
    package = r.json()
    assert package["kind"] == "personnel_access" and package["withheld_count"] == 0
    assert {x["id"] for x in package["records"]} == {review["id"], contract["id"]}  # personnel records only
    assert "their review" not in r.text and note["id"] not in r.text
    # The manager logged it but is not the employee: may see the request, not the package.
    _assert_policy(await client.get(url, headers=manager.headers), 403, "director-only", "§3.6")
    assert (await client.get(url, headers=other.headers)).status_code == 404
    downloads = [e for e in await _events(state) if e.action == "access_request.package_download"]
    assert [(e.actor_id, e.decision) for e in downloads] == [(colleague.id, "allow"), (manager.id, "deny")]
    # Only one's own: an employee does not get another subject_access package about them by this route.
    sam_like = await _log(client, manager, letter(me, clock))
    await _decide(client, director, sam_like["id"])
    await client.post(f"/access-requests/{sam_like['id']}/fulfil", headers=director.headers)
    r = await client.get(f"/access-requests/{sam_like['id']}/package", headers=colleague.headers)
    assert r.status_code == 404


async def test_no_names_letters_or_reasons_in_audit_events(client, factory, people, state, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    await _record(factory, colleague, sam, "Sam: plan", "confidential")
    made = await _log(client, colleague, letter(sam, clock, letter_reference="REF-SECRET-42"))
    await _decide(client, director, made["id"])
    await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)
    await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)
    gone = await _log(client, colleague, letter(sam, clock))
    await client.post(f"/access-requests/{gone['id']}/withdraw", headers=colleague.headers,
                      json={"reason": "private-withdrawal-reason"})
    await client.post("/access-requests", headers=colleague.headers, json=letter(sam, clock, in_writing=False))
    events = await _events(state)
    assert [(e.action, e.decision) for e in events] == [
        ("access_request.create", "allow"), ("access_request.decide", "allow"), ("access_request.fulfil", "allow"),
        ("access_request.package_download", "allow"), ("access_request.create", "allow"),
        ("access_request.withdraw", "allow"), ("access_request.create", "deny"),
    ]
    assert all(e.rule and e.clause for e in events)
    dumped = json.dumps([e.detail for e in events])
    for secret in ("Sam", "Okafor", "REF-SECRET", "letter checked", "private-withdrawal", "plan", "content"):
        assert secret not in dumped
    assert [e.detail.get("status") for e in events[:4]] == ["received", "approved", "fulfilled", "fulfilled"]


async def test_at_and_received_at_are_timezone_aware(client, factory, people, clock):
    sam = await _subject(factory, people["colleague"])
    received = datetime(2020, 1, 1, 12, 0, tzinfo=UTC).astimezone().isoformat()
    body = await _log(client, people["colleague"], letter(sam, clock, received_at=received))
    assert datetime.fromisoformat(body["due_at"]) == datetime(2020, 1, 15, 12, 0, tzinfo=UTC)
    assert body["overdue"] is True


@pytest.mark.parametrize("kind", ["personnel_access", "subject_access"])
async def test_a_director_does_not_decide_or_fulfil_a_request_about_themself(client, people, factory, state, clock,
                                                                             kind):
    """§3.6: the employee asks, and someone else answers; a second director decides and fulfils."""
    director = people["director"]
    second = await factory.user("director")
    dme = await _employee_subject(factory, second, director)
    made = await _log(client, director, letter(dme, clock, kind=kind))
    before = await _events(state)

    r = await _decide(client, director, made["id"])
    assert r.status_code == 403, r.text
    assert (r.json()["rule"], r.json()["clause"]) == ("access-request-self", "§3.6")
    assert (await client.get(f"/access-requests/{made['id']}", headers=director.headers)).json()["status"] == "received"
    assert [e.action for e in await _events(state)] == [e.action for e in before]

    assert (await _decide(client, second, made["id"])).status_code == 200
    r = await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)
    assert r.status_code == 403 and r.json()["rule"] == "access-request-self"
    assert (await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)).status_code == 409
    r = await client.post(f"/access-requests/{made['id']}/fulfil", headers=second.headers)
    assert r.status_code == 200, r.text
