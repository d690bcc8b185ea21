"""Disclosures (DESIGN §5; policy §1.3, §1.9, §5): routing by category, the director's
report, telling the subject, closing, and who may know a disclosure exists."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.disclosures import CHILDRENS_SERVICES, Disclosure
from app.workflows import compliance
from tests.factory import Factory

SUMMARY = "summary-marker-7f3a: what was seen"


async def count(state, model) -> int:
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def audit_events(state, prefix: str) -> list[AuditEvent]:
    async with state.sessionmaker() as s:
        rows = await s.execute(select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id))
        return list(rows.scalars())


@pytest.fixture
async def org(factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    trustee = await factory.user("trustee")
    return {"director": director, "manager": manager, "alice": alice, "bob": bob, "trustee": trustee}


async def raise_one(client, person, subject_id, category="child_abuse", **kw) -> dict:
    r = await client.post("/disclosures", headers=person.headers,
                          json={"subject_id": subject_id, "category": category, "summary": SUMMARY, **kw})
    assert r.status_code == 201, r.text
    return r.json()


# -- raising and routing (§5.1-§5.3, §1.3) ----------------------------------------------------


@pytest.mark.parametrize(("category", "recipient", "clause"), [
    ("child_abuse", CHILDRENS_SERVICES, "§5.1"),
    ("drug_trafficking", "police", "§5.2"),
    ("money_laundering", "police", "§5.2"),
    ("terrorism", "police", "§5.2"),
    ("treason", "police", "§5.2"),
    ("illegal_act", "the Director", "§5.3"),
    ("risk_of_harm", "the Director", "§5.3"),
])
async def test_category_decides_the_recipient_and_clause(client, factory, state, org, category, recipient, clause):
    subj = await factory.subject(by=org["alice"])
    body = await raise_one(client, org["alice"], subj["id"], category)
    assert (body["recipient"], body["clause"], body["status"]) == (recipient, clause, "raised")
    assert body["raised_by"] == str(org["alice"].id) and body["summary"] == SUMMARY
    [event] = await audit_events(state, "disclosure.")
    assert (event.action, event.clause, event.detail["category"]) == ("disclosure.raise", clause, category)
    assert SUMMARY not in str(event.detail)


async def test_recipient_cannot_be_redirected_for_a_legal_duty(client, factory, state, org):
    subj = await factory.subject(by=org["alice"])
    r = await client.post("/disclosures", headers=org["alice"].headers, json={
        "subject_id": subj["id"], "category": "child_abuse", "summary": SUMMARY, "recipient": "a journalist"})
    assert r.status_code == 422 and r.json()["clause"] == "§5.1"
    assert r.headers["content-type"] == "application/problem+json"
    assert await count(state, Disclosure) == 0
    ok = await raise_one(client, org["alice"], subj["id"], recipient=CHILDRENS_SERVICES)
    assert ok["recipient"] == CHILDRENS_SERVICES


@pytest.mark.parametrize("missing", ["consent_reference", "recipient"])
async def test_consented_needs_consent_reference_and_recipient(client, factory, state, org, missing):
    subj = await factory.subject(by=org["alice"])
    body = {"subject_id": subj["id"], "category": "consented", "summary": SUMMARY,
            "consent_reference": "letter SO-1", "recipient": "Housing Association"}
    del body[missing]
    r = await client.post("/disclosures", headers=org["alice"].headers, json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json()["rule"], r.json()["clause"]) == ("consent", "§1.3")
    assert await count(state, Disclosure) == 0
    assert await audit_events(state, "disclosure.") == []


async def test_consented_with_reference_goes_to_the_named_recipient(client, factory, org):
    subj = await factory.subject(by=org["alice"])
    body = await raise_one(client, org["alice"], subj["id"], "consented", consent_reference="letter SO-1",
                           recipient="Housing Association")
    assert (body["recipient"], body["clause"], body["consent_reference"]) == (
        "Housing Association", "§1.3", "letter SO-1")


async def test_records_listed_must_be_about_the_subject_and_readable(client, factory, state, org):
    alice, bob = org["alice"], org["bob"]
    subj = await factory.subject(by=alice)
    other = await factory.subject(by=alice, name="Someone Else")
    mine = await factory.record(by=alice, subject=subj)
    elsewhere = await factory.record(by=alice, subject=other)
    ok = await raise_one(client, alice, subj["id"], record_ids=[mine["id"], mine["id"]])
    assert ok["record_ids"] == [mine["id"]]
    before = await count(state, Disclosure)
    for person, ids in ((alice, [elsewhere["id"]]), (alice, ["00000000-0000-4000-8000-000000000000"]),
                        (bob, [mine["id"]])):  # bob may not read alice's confidential record
        r = await client.post("/disclosures", headers=person.headers, json={
            "subject_id": subj["id"], "category": "terrorism", "summary": SUMMARY, "record_ids": ids})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["body", "record_ids"]
    assert await count(state, Disclosure) == before


@pytest.mark.parametrize("body", [
    {"subject_id": "00000000-0000-4000-8000-000000000000", "category": "treason"},
    {"category": "not_a_category"},
    {"category": "treason", "summary": ""},
    {"category": "treason", "summary": "x" * 10_001},
])
async def test_bad_input_is_422_and_writes_nothing(client, factory, state, org, body):
    subj = await factory.subject(by=org["alice"])
    r = await client.post("/disclosures", headers=org["alice"].headers,
                          json={"subject_id": subj["id"], "summary": SUMMARY, **body})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "x" * 100 not in r.text
    assert await count(state, Disclosure) == 0


async def test_trustees_do_not_raise_disclosures(client, factory, state, org):
    subj = await factory.subject(by=org["alice"])
    r = await client.post("/disclosures", headers=org["trustee"].headers,
                          json={"subject_id": subj["id"], "category": "treason", "summary": SUMMARY})
    assert r.status_code == 403 and r.json()["rule"] == "staff-only"
    assert await count(state, Disclosure) == 0


async def test_a_director_may_raise_one(client, factory, org):
    subj = await factory.subject(by=org["alice"])
    body = await raise_one(client, org["director"], subj["id"], "risk_of_harm")
    assert body["raised_by"] == str(org["director"].id)


# -- who may know it exists ---------------------------------------------------------------------


async def test_seen_by_the_raiser_and_directors_only(client, factory, org):
    subj = await factory.subject(by=org["alice"])
    d = await raise_one(client, org["alice"], subj["id"])
    for who in ("alice", "director"):
        r = await client.get(f"/disclosures/{d['id']}", headers=org[who].headers)
        assert r.status_code == 200 and r.json()["summary"] == SUMMARY
        assert r.headers["cache-control"] == "no-store"
    for who in ("bob", "manager", "trustee"):  # a colleague, the raiser's line manager, a trustee
        r = await client.get(f"/disclosures/{d['id']}", headers=org[who].headers)
        assert r.status_code == 404, who
        assert r.json()["detail"] == "disclosure not found" and SUMMARY not in r.text
        r = await client.get("/disclosures", headers=org[who].headers)
        assert r.status_code == 200 and r.json()["items"] == []
        r = await client.post(f"/disclosures/{d['id']}/subject-informed", headers=org[who].headers,
                              json={"informed_at": "2020-01-01T00:00:00Z", "method": "letter"})
        assert r.status_code == 404


async def test_lists_show_each_caller_what_they_may_with_filters_and_cursor(client, factory, org):
    alice, bob, director = org["alice"], org["bob"], org["director"]
    subj = await factory.subject(by=alice)
    mine = [await raise_one(client, alice, subj["id"], c) for c in ("child_abuse", "treason", "terrorism")]
    theirs = await raise_one(client, bob, subj["id"], "treason")
    r = await client.get("/disclosures", headers=alice.headers)
    assert {i["id"] for i in r.json()["items"]} == {d["id"] for d in mine}
    r = await client.get("/disclosures", headers=director.headers, params={"limit": 2})
    page1 = r.json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    r = await client.get("/disclosures", headers=director.headers, params={"limit": 2, "cursor": page1["next_cursor"]})
    page2 = r.json()
    assert page2["next_cursor"] is None
    assert {i["id"] for i in page1["items"] + page2["items"]} == {d["id"] for d in [*mine, theirs]}
    r = await client.get("/disclosures", headers=director.headers, params={"category": "treason"})
    assert {i["id"] for i in r.json()["items"]} == {mine[1]["id"], theirs["id"]}
    r = await client.get("/disclosures", headers=director.headers, params={"raised_by": str(bob.id)})
    assert [i["id"] for i in r.json()["items"]] == [theirs["id"]]
    r = await client.get("/disclosures", headers=director.headers, params={"status": "closed"})
    assert r.json()["items"] == []
    r = await client.get("/disclosures", headers=director.headers, params={"cursor": "forged.cursor"})
    assert r.status_code == 400
    r = await client.get("/disclosures", headers=director.headers, params={"category": "gossip"})
    assert r.status_code == 422


# -- report, tell the subject, close (§5, §1.9, §5.4) ---------------------------------------------


async def test_only_a_director_records_it_as_made(client, factory, state, org, clock):
    subj = await factory.subject(by=org["alice"])
    d = await raise_one(client, org["alice"], subj["id"])
    now = clock.now().isoformat()
    r = await client.post(f"/disclosures/{d['id']}/report", headers=org["alice"].headers,
                          json={"reported_at": now, "reference": "CS-1"})
    assert r.status_code == 403 and r.json()["rule"] == "director-only"
    r = await client.post(f"/disclosures/{d['id']}/report", headers=org["director"].headers,
                          json={"reported_at": now, "reference": "CS-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["authority"], body["reference"]) == ("reported", CHILDRENS_SERVICES, "CS-1")
    assert body["reported_by"] == str(org["director"].id)
    r = await client.post(f"/disclosures/{d['id']}/report", headers=org["director"].headers,
                          json={"reported_at": now})
    assert r.status_code == 409


async def test_illegal_act_needs_the_directors_authority(client, factory, state, org, clock):
    subj = await factory.subject(by=org["alice"])
    d = await raise_one(client, org["alice"], subj["id"], "illegal_act")
    url = f"/disclosures/{d['id']}/report"
    r = await client.post(url, headers=org["director"].headers, json={"reported_at": clock.now().isoformat()})
    assert r.status_code == 422 and r.json()["clause"] == "§5.3"
    future = (clock.now() + timedelta(days=1)).isoformat()
    r = await client.post(url, headers=org["director"].headers, json={"reported_at": future, "authority": "HSE"})
    assert r.status_code == 422
    r = await client.get(f"/disclosures/{d['id']}", headers=org["director"].headers)
    assert r.json()["status"] == "raised" and r.json()["reported_at"] is None
    r = await client.post(url, headers=org["director"].headers,
                          json={"reported_at": clock.now().isoformat(), "authority": "Health and Safety Executive"})
    assert r.status_code == 200 and r.json()["authority"] == "Health and Safety Executive"


async def test_closing_needs_both_the_report_and_the_subject_told(client, factory, state, org, clock):
    alice, director = org["alice"], org["director"]
    subj = await factory.subject(by=alice)
    d = await raise_one(client, alice, subj["id"], "drug_trafficking")
    url = f"/disclosures/{d['id']}"
    r = await client.post(f"{url}/close", headers=director.headers)
    assert r.status_code == 409 and r.json()["missing"] == ["reported", "subject_informed"]
    assert r.json()["clause"] == "§1.9, §5.4"
    r = await client.post(f"{url}/close", headers=alice.headers)
    assert r.status_code == 403
    # the raiser records that the person was told
    r = await client.post(f"{url}/subject-informed", headers=alice.headers,
                          json={"informed_at": clock.now().isoformat(), "method": "letter"})
    assert r.status_code == 200, r.text
    assert r.json()["subject_informed_method"] == "letter" and r.json()["status"] == "raised"
    r = await client.post(f"{url}/subject-informed", headers=director.headers,
                          json={"informed_at": clock.now().isoformat(), "method": "letter"})
    assert r.status_code == 409
    r = await client.post(f"{url}/close", headers=director.headers)
    assert r.status_code == 409 and r.json()["missing"] == ["reported"]
    r = await client.post(f"{url}/report", headers=director.headers,
                          json={"reported_at": clock.now().isoformat(), "authority": "Metropolitan Police"})
    assert r.status_code == 200
    r = await client.post(f"{url}/close", headers=director.headers)
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert r.json()["closed_by"] == str(director.id)
    for action, body in (("report", {"reported_at": clock.now().isoformat()}), ("close", None)):
        r = await client.post(f"{url}/{action}", headers=director.headers, json=body)
        assert r.status_code == 409
    actions = [e.action for e in await audit_events(state, "disclosure.")]
    assert actions == ["disclosure.raise", "disclosure.subject_informed", "disclosure.report", "disclosure.close"]
    assert all(SUMMARY not in str(e.detail) for e in await audit_events(state, ""))


async def test_subject_informed_validates_input(client, factory, org, clock):
    subj = await factory.subject(by=org["alice"])
    d = await raise_one(client, org["alice"], subj["id"])
    url = f"/disclosures/{d['id']}/subject-informed"
    for body in ({"informed_at": clock.now().isoformat(), "method": "carrier pigeon"},
                 {"informed_at": (clock.now() + timedelta(hours=1)).isoformat(), "method": "letter"},
                 {"informed_at": "2026-01-01T00:00:00", "method": "letter"}):  # naive datetime
        r = await client.post(url, headers=org["alice"].headers, json=body)
        assert r.status_code == 422, body
    r = await client.get(f"/disclosures/{d['id']}", headers=org["alice"].headers)
    assert r.json()["subject_informed_at"] is None


async def test_compliance_lists_disclosures_whose_subject_is_not_told(client, factory, state, settings, org, clock):
    subj = await factory.subject(by=org["alice"])
    told = await raise_one(client, org["alice"], subj["id"])
    untold = await raise_one(client, org["alice"], subj["id"], "treason")
    r = await client.post(f"/disclosures/{told['id']}/subject-informed", headers=org["alice"].headers,
                          json={"informed_at": clock.now().isoformat(), "method": "in_person"})
    assert r.status_code == 200
    async with state.sessionmaker() as s:
        ids = await compliance.checks()["disclosures_subject_not_informed"](s, clock.now(), settings)
    assert ids == [untold["id"]]


async def test_the_demo_seed_adds_cases_once(client, state):
    from app.demo import seed_demo
    from app.models.breach_reports import BreachReport

    await seed_demo(state)
    disclosures, reports = await count(state, Disclosure), await count(state, BreachReport)
    assert disclosures == 3 and reports == 3
    await seed_demo(state)
    assert (await count(state, Disclosure), await count(state, BreachReport)) == (disclosures, reports)


async def test_free_text_is_encrypted_at_rest(client, factory, state, org):
    """§6.6: the summary of a disclosure and a breach report's description never sit in clear."""
    from tests import dataprot as dp

    marker = "Marker-Disclosure-9d2e"
    subj = await factory.subject(by=org["alice"])
    r = await client.post("/disclosures", headers=org["alice"].headers,
                          json={"subject_id": subj["id"], "category": "child_abuse", "summary": marker})
    assert r.status_code == 201, r.text
    r = await client.post("/breach-reports", headers=org["alice"].headers,
                          json={"kind": "grievance", "description": marker + "-breach"})
    assert r.status_code == 201, r.text
    found = [(t, c) for t, c, v in await dp.all_raw_values(state) if marker in str(v)]
    assert found == []
    r = await client.get(f"/disclosures/{(await raise_one(client, org['alice'], subj['id']))['id']}",
                         headers=org["director"].headers)
    assert r.status_code == 200 and r.json()["summary"] == SUMMARY
