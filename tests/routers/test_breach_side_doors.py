"""Nothing about a breach report reaches the colleague concerned (§1.8, §7.1, §7.2), by any path:
the report itself, the report list, the audit trail, the compliance summary, monitoring, or a
record's access log. A director who is the colleague concerned is the hard case: directors
see the audit trail and the compliance summary, and know of every other report."""

from __future__ import annotations

import pytest

from tests.factory import Factory, Person

DESCRIPTION = "side-door-description-5b7e"
EVIDENCE = "side-door-evidence-c31a"
COMPLAINANT = "Side-Door Complainant"
CONTENT = "side-door-content-90fd"


@pytest.fixture
async def org(factory: Factory):
    """boss (director, no line manager) and other (director); alice and bob report to other."""
    boss = await factory.user("director")
    other = await factory.user("director")
    alice = await factory.user("colleague", manager=other)
    bob = await factory.user("colleague", manager=other)
    return {"boss": boss, "other": other, "alice": alice, "bob": bob}


async def file_reports(client, org) -> list[str]:
    """Three reports about boss: a conduct concern, an external complaint not yet advised, a breach."""
    alice, boss = org["alice"], org["boss"]
    bodies = [
        {"kind": "colleague_conduct", "concerned_user_id": str(boss.id), "description": DESCRIPTION,
         "evidence": EVIDENCE},
        {"kind": "external_complaint", "concerned_user_id": str(boss.id), "description": DESCRIPTION,
         "complainant_name": COMPLAINANT, "complaint_procedure_advised": False},
        {"kind": "confidentiality_breach", "concerned_user_id": str(boss.id), "description": DESCRIPTION},
    ]
    ids = []
    for body in bodies:
        r = await client.post("/breach-reports", headers=alice.headers, json=body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    # the handler (the other director) works on one, so there are more events about it
    r = await client.post(f"/breach-reports/{ids[0]}/investigate", headers=org["other"].headers)
    assert r.status_code == 200, r.text
    return ids


def assert_nothing_of(text: str, ids: list[str]) -> None:
    for marker in (*ids, DESCRIPTION, EVIDENCE, COMPLAINANT):
        assert marker not in text, marker


async def audit_listings(client, who: Person, report_ids: list[str], *, also: dict | None = None) -> list[dict]:
    """Every audit listing a director might try to find the reports with; all their items."""
    params: list[dict] = [
        {}, {"resource_type": "breach_report"}, {"action": "breach_report.create"},
        {"action": "breach_report.investigate"}, {"decision": "allow"},
        *({"resource_id": rid} for rid in report_ids),
        *({"resource_type": "breach_report", "resource_id": rid} for rid in report_ids),
        *([also] if also else []),
    ]
    items: list[dict] = []
    for p in params:
        query = {k: v for k, v in p.items() if v is not None}
        r = await client.get("/audit-events", headers=who.headers, params={"limit": 200, **query})
        assert r.status_code == 200, r.text
        items.extend(r.json()["items"])
    return items


async def test_the_director_concerned_finds_no_trace_of_reports_about_them(client, factory, settings, clock, org):
    boss, other, alice = org["boss"], org["other"], org["alice"]
    ids = await file_reports(client, org)
    clock.advance(days=settings.breach_open_too_long_days + 1)
    for person in (boss, other, alice):
        await factory.login(person)  # access tokens expire while the clock moves on

    # the report itself and the list: 404 and nothing
    for rid in ids:
        r = await client.get(f"/breach-reports/{rid}", headers=boss.headers)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert_nothing_of(r.text, ids)
    r = await client.get("/breach-reports", headers=boss.headers)
    assert r.status_code == 200 and r.json()["items"] == []

    # the audit trail: no event about any of the reports, whatever the filter
    seen = await audit_listings(client, boss, ids, also={"actor_id": str(alice.id)})
    assert [e for e in seen if e["resource_type"] == "breach_report"] == []
    assert_nothing_of(str(seen), ids)
    assert [e for e in seen if str(boss.id) in str(e["detail"])] == []
    # ... while the other director sees them all (the test would catch a leak)
    theirs = await audit_listings(client, other, ids, also={"actor_id": str(alice.id)})
    about = {e["resource_id"] for e in theirs if e["resource_type"] == "breach_report"}
    assert about == set(ids)

    # the compliance summary: neither the open-too-long nor the complaint list names them
    r = await client.get("/compliance/summary", headers=boss.headers)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert_nothing_of(r.text, ids)
    assert summary["breach_reports_open_too_long"] == {"ids": [], "count": 0}
    assert summary["complaints_without_procedure_advised"] == {"ids": [], "count": 0}
    r = await client.get("/compliance/summary", headers=other.headers)
    assert set(r.json()["breach_reports_open_too_long"]["ids"]) == set(ids)
    assert r.json()["complaints_without_procedure_advised"]["ids"] == [ids[1]]

    # the summaries' own audit events carry no count the concerned director could compare
    r = await client.get("/audit-events", headers=boss.headers, params={"action": "compliance.summary"})
    summaries = r.json()["items"]
    assert {e["actor_id"] for e in summaries} == {str(boss.id), str(other.id)}
    details = [e["detail"] for e in summaries]
    assert details[0] == details[1], details

    # monitoring: aggregates only, nothing of the reports
    r = await client.get("/reports/monitoring", headers=boss.headers)
    assert r.status_code == 200
    assert_nothing_of(r.text, ids)


async def test_a_detection_report_about_a_director_leaves_no_trace_for_them(client, factory, org):
    boss, other, alice = org["boss"], org["other"], org["alice"]
    subject_id = (await factory.subject(by=alice, name="Sid Side-Door"))["id"]
    records = []
    for _ in range(3):  # sensitive: a director does not read them by rank (§3.2)
        rec = await factory.record(by=alice, subject=subject_id, classification="sensitive", content=CONTENT)
        records.append(rec["id"])
    for rid in records:
        r = await client.get(f"/records/{rid}", headers=boss.headers)
        assert r.status_code == 403 and CONTENT not in r.text
    # the service opened a report about boss, handled by the other director
    r = await client.get("/breach-reports", headers=other.headers, params={"kind": "unauthorised_access"})
    found = r.json()["items"]
    assert len(found) == 1 and found[0]["concerned_user_id"] == str(boss.id)
    report_id = found[0]["id"]
    # a fourth denial adds evidence to it
    records.append((await factory.record(by=alice, subject=subject_id, classification="sensitive",
                                         content=CONTENT))["id"])
    assert (await client.get(f"/records/{records[-1]}", headers=boss.headers)).status_code == 403

    seen = await audit_listings(client, boss, [report_id], also={"action": "breach_report.evidence"})
    assert [e for e in seen if e["resource_type"] == "breach_report" or e["action"].startswith("breach_report.")
            ] == []
    assert report_id not in str(seen)
    # boss's own denials stay visible to boss: they were there before the report and say nothing of it
    denials = [e for e in seen if e["action"] == "record.read" and e["decision"] == "deny"]
    assert {e["resource_id"] for e in denials} == set(records)
    theirs = await audit_listings(client, other, [report_id], also={"action": "breach_report.evidence"})
    assert {e["action"] for e in theirs if e["resource_id"] == report_id} == {
        "breach_report.create", "breach_report.evidence"}

    # the access log of a record boss was refused names no report
    r = await client.get(f"/records/{records[0]}/access-log", headers=boss.headers)
    assert r.status_code == 200, r.text
    assert report_id not in r.text and CONTENT not in r.text
    r = await client.get(f"/breach-reports/{report_id}", headers=boss.headers)
    assert r.status_code == 404


async def test_only_directors_list_audit_events(client, org):
    for who in (org["alice"], org["bob"]):
        r = await client.get("/audit-events", headers=who.headers)
        assert r.status_code == 403 and r.json()["rule"] and r.json()["clause"]



async def test_the_audit_predicate_is_null_safe_for_any_actor(client, state, factory, clock, org):
    """Only directors list audit events over HTTP today; the predicate must still hide a report
    from anyone who may not know of it, including one the service raised (no reporter)."""
    from app.models.audit import AuditEventFilter
    from app.policy.actor import Actor
    from app.workflows.audit import trail

    boss, other, alice, bob = org["boss"], org["other"], org["alice"], org["bob"]
    subject_id = (await factory.subject(by=alice, name="Sid Side-Door"))["id"]
    for _ in range(3):  # bob is refused three of alice's sensitive records: a detection report about bob
        rec = await factory.record(by=alice, subject=subject_id, classification="sensitive", content=CONTENT)
        assert (await client.get(f"/records/{rec['id']}", headers=bob.headers)).status_code == 403
    conduct = await client.post("/breach-reports", headers=alice.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(boss.id), "description": DESCRIPTION,
        "evidence": EVIDENCE})
    assert conduct.status_code == 201

    async def report_events(person: Person) -> set[str]:
        async with state.sessionmaker() as s:
            events = await trail.list_events(s, actor=Actor.for_user(person.user), now=clock.now(),
                                                   filters=AuditEventFilter(resource_type="breach_report"),
                                                   cursors=state.cursors, cursor=None, limit=200)
        return {e.action + ":" + str(e.rule) for e in events.items}

    detection = {"breach_report.create:detection"}
    filed = {"breach_report.create:routing"}
    assert await report_events(other) == detection | filed  # the director handling both
    assert await report_events(boss) == detection  # not the one about boss
    assert await report_events(alice) == filed  # alice reported it; the detection is none of hers
    assert await report_events(bob) == set()  # concerned by one, reporter of none
