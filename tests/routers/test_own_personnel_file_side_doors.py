"""One's own personnel file (§3.6) leaves no trace in the two director views that list what
other paths refuse: the audit trail (who read it, when, by which rule, which lists showed it)
and the compliance summary (its id). ``GET /records/{id}/access-log`` refuses the same answer
(tests/routers/test_records_access_log.py). Another director sees all of it, and the director
the file is about sees everything else: other records, and their own records that are not
personnel."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.workflows import compliance
from tests.factory import Factory, Person

REASON = "own-file-refusal-reason-4e1b"


async def _file(factory: Factory, **fields):
    """``boss``, a director with a personnel file kept by ``keeper`` (another director)."""
    keeper = await factory.user("director")
    boss = await factory.user("director", manager=keeper)
    file = await factory.record(by=keeper, subject=await factory.employee_subject(by=keeper, employee=boss),
                                classification="personnel", **fields)
    return keeper, boss, file


async def _events(client, who: Person, **params) -> list[dict]:
    r = await client.get("/audit-events", headers=who.headers, params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    items: list[dict] = r.json()["items"]
    return items


def _about(items: list[dict], record_id: str) -> list[dict]:
    """The events that name the record: as their resource, or anywhere in their detail."""
    return [e for e in items if e["resource_id"] == record_id or record_id in str(e["detail"])]


# -- the audit trail ---------------------------------------------------------------------------


async def test_director_reads_who_opened_own_personnel_file_in_the_audit_trail(client, factory: Factory):
    """GET /records/{id}/access-log is 403 for the director the file is about (§3.6); the same
    answer (who read it, when, by which rule) comes from GET /audit-events?resource_id=..."""
    keeper, boss, file = await _file(factory)
    assert (await client.get(f"/records/{file['id']}", headers=keeper.headers)).status_code == 200
    assert (await client.get(f"/records/{file['id']}/access-log", headers=boss.headers)).status_code == 403
    r = await client.get("/audit-events", headers=boss.headers,
                         params={"resource_type": "record", "resource_id": file["id"]})
    assert r.status_code == 200, r.text
    reads = [(e["action"], e["actor_id"]) for e in r.json()["items"] if e["action"] == "record.read"]
    assert reads == [], f"the audit trail tells the director who read their own personnel file: {reads}"


@pytest.fixture
async def trail(client, factory: Factory):
    """boss's personnel file, created, read, listed and its access log read by keeper; boss
    refused it; records about someone else and boss's own confidential record, read by keeper."""
    keeper, boss, file = await _file(factory)
    mine = await factory.record(by=keeper, subject=file["subject_id"], classification="confidential")
    other = await factory.record(by=keeper, subject=await factory.subject(by=keeper))
    assert (await client.get(f"/records/{file['id']}", headers=boss.headers)).status_code == 403
    for rid in (other["id"], mine["id"]):
        assert (await client.get(f"/records/{rid}", headers=keeper.headers)).status_code == 200
    r = await client.get("/records", headers=keeper.headers)
    assert r.status_code == 200 and file["id"] in {i["id"] for i in r.json()["items"]}
    assert (await client.get(f"/records/{file['id']}/access-log", headers=keeper.headers)).status_code == 200
    r = await client.get("/records", headers=boss.headers)  # boss's own list: the file is not in it
    assert r.status_code == 200 and file["id"] not in r.text
    assert (await client.get(f"/records/{file['id']}", headers=keeper.headers)).status_code == 200  # newest
    return {"keeper": keeper, "boss": boss, "file": file, "mine": mine, "other": other}


async def test_the_director_a_file_is_about_finds_no_event_about_it_whatever_the_filter(client, trail):
    keeper, boss, file = trail["keeper"], trail["boss"], trail["file"]
    for params in ({}, {"resource_type": "record"}, {"resource_id": file["id"]},
                   {"resource_type": "record", "resource_id": file["id"]}, {"action": "record.read"},
                   {"action": "record.list"}, {"action": "record.create"}, {"action": "record.access_log"},
                   {"actor_id": str(keeper.id)}, {"actor_id": str(boss.id)}, {"decision": "deny"}):
        seen = await _events(client, boss, **params)
        assert _about(seen, file["id"]) == [], params
    # not even the list that showed it among others: the whole event is left out
    keepers_lists = await _events(client, keeper, action="record.list", actor_id=str(keeper.id))
    assert len(keepers_lists) == 1 and file["id"] in keepers_lists[0]["detail"]["record_ids"]
    assert keepers_lists[0]["id"] not in {e["id"] for e in await _events(client, boss)}


async def test_another_director_sees_every_event_about_the_file(client, trail):
    keeper, boss, file = trail["keeper"], trail["boss"], trail["file"]
    about = _about(await _events(client, keeper), file["id"])
    assert sorted((e["action"], e["actor_id"], e["decision"]) for e in about) == sorted([
        ("record.create", str(keeper.id), "allow"),
        ("record.read", str(boss.id), "deny"),
        ("record.read", str(keeper.id), "allow"),
        ("record.list", str(keeper.id), "allow"),
        ("record.access_log", str(keeper.id), "allow"),
    ])


async def test_the_director_a_file_is_about_still_sees_every_other_event(client, trail):
    """Events about records that are not theirs to be kept from: someone else's, and their own
    confidential record; and a list that did not show the file."""
    keeper, boss = trail["keeper"], trail["boss"]
    seen = await _events(client, boss, resource_type="record")
    for rid in (trail["other"]["id"], trail["mine"]["id"]):
        assert {(e["action"], e["actor_id"]) for e in seen if e["resource_id"] == rid} == {
            ("record.create", str(keeper.id)), ("record.read", str(keeper.id))}
    lists = [e for e in seen if e["action"] == "record.list"]
    assert [e["actor_id"] for e in lists] == [str(boss.id)]
    assert set(lists[0]["detail"]["record_ids"]) >= {trail["other"]["id"], trail["mine"]["id"]}


async def test_a_page_of_the_trail_is_filtered_before_it_is_cut(client, trail):
    """The newest event is keeper's read of the file: boss's one-item page is the one before
    it, and the cursor walks on from there without ever meeting the file."""
    file, boss = trail["file"], trail["boss"]
    newest = (await _events(client, trail["keeper"], limit=1))[0]
    assert (newest["action"], newest["resource_id"]) == ("record.read", file["id"])
    r = await client.get("/audit-events", headers=boss.headers, params={"limit": 1})
    page = r.json()
    assert len(page["items"]) == 1 and page["items"][0]["id"] < newest["id"]
    assert _about(page["items"], file["id"]) == []
    walked = page["items"]
    while page["next_cursor"]:
        r = await client.get("/audit-events", headers=boss.headers, params={"limit": 3, "cursor": page["next_cursor"]})
        page = r.json()
        walked += page["items"]
    assert [e["id"] for e in walked] == [e["id"] for e in await _events(client, boss)]
    assert _about(walked, file["id"]) == []


# -- the compliance summary --------------------------------------------------------------------


async def test_director_finds_own_personnel_file_in_the_compliance_summary(client, factory: Factory):
    """The summary lists, by id, a record the director may not know of: their own personnel
    file (consent pending). With the id the rest of this file's probes follow."""
    keeper, boss, file = await _file(factory, consent={"status": "pending"})
    assert (await client.get(f"/records/{file['id']}", headers=boss.headers)).status_code == 403
    r = await client.get("/compliance/summary", headers=boss.headers)
    assert r.status_code == 200, r.text
    assert file["id"] not in r.text, "the director's own personnel file is listed in their compliance summary"


async def test_no_record_check_lists_the_directors_own_personnel_file(client, factory: Factory, clock):
    """Every record check: boss's two personnel files are in each list of keeper's summary,
    and in none of boss's, which still lists a colleague's personnel file and boss's own
    confidential record. Each summary's audit event holds no count of a record check."""
    keeper = await factory.user("director")
    boss = await factory.user("director", manager=keeper)
    clerk = await factory.user("colleague", manager=keeper)
    temp = await factory.user("colleague", manager=keeper)  # keeps them all, then leaves
    bosses = await factory.employee_subject(by=keeper, employee=boss)
    clerks = await factory.employee_subject(by=keeper, employee=clerk)
    past = (clock.now() - timedelta(days=1)).isoformat()
    due = {"review_due": past, "retention_until": past, "custodian_id": str(temp.id)}
    refused = {"status": "refused", "refusal_reason": REASON}
    mine_pending = await factory.record(by=keeper, subject=bosses, classification="personnel", **due)
    mine_refused = await factory.record(by=keeper, subject=bosses, classification="personnel", consent=refused,
                                        **due)
    clerks_file = await factory.record(by=keeper, subject=clerks, classification="personnel", **due)
    mine_confidential = await factory.record(by=keeper, subject=bosses, consent=refused, **due)
    r = await client.patch(f"/users/{temp.id}", headers=keeper.headers, json={"active": False})
    assert r.status_code == 200, r.text

    everyone = {mine_pending["id"], mine_refused["id"], clerks_file["id"], mine_confidential["id"]}
    hidden = {mine_pending["id"], mine_refused["id"]}
    expected = {name: everyone for name in ("records_past_retention", "reviews_overdue",
                                            "records_without_active_custodian")}
    expected["consent_pending"] = {mine_pending["id"], clerks_file["id"]}
    expected["consent_refused"] = {mine_refused["id"], mine_confidential["id"]}
    assert set(expected) == set(compliance.RECORD_CHECKS)

    r = await client.get("/compliance/summary", headers=keeper.headers)
    assert r.status_code == 200, r.text
    theirs = r.json()
    r = await client.get("/compliance/summary", headers=boss.headers)
    assert r.status_code == 200, r.text
    for marker in (*hidden, REASON):
        assert marker not in r.text
    mine = r.json()
    for name, ids in expected.items():
        assert theirs[name] == {"ids": sorted(ids), "count": len(ids)}, name
        assert mine[name] == {"ids": sorted(ids - hidden), "count": len(ids - hidden)}, name

    # the counts that differ between the two stay out of both audit events, which are alike
    events = await _events(client, keeper, action="compliance.summary")
    assert {e["actor_id"] for e in events} == {str(keeper.id), str(boss.id)}
    assert events[0]["detail"] == events[1]["detail"]
    assert set(events[0]["detail"]) == set(compliance.checks()) - compliance.PER_ACTOR
    assert not set(compliance.RECORD_CHECKS) & set(events[0]["detail"])
    for name, count in events[0]["detail"].items():
        assert count == theirs[name]["count"] == mine[name]["count"]
