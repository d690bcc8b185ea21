"""A report's handler keeps it only while the relation that made them handler holds (§1.8, §3.1,
§7.1, §7.2): handling and following a report take a staff account."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from app.models.breach_reports import BreachReport
from app.models.users import User
from tests.factory import Factory, Person

DESCRIPTION = "reroute-description-7c1e"
EVIDENCE = "reroute-evidence-2b9d"


@pytest.fixture
async def org(factory: Factory, clock):
    """boss and other: directors (boss the earlier); carol (colleague) manages bob; alice reports."""
    boss = await factory.user("director")
    clock.advance(seconds=1)
    other = await factory.user("director")
    carol = await factory.user("colleague", manager=other)
    bob = await factory.user("colleague", manager=carol)
    alice = await factory.user("colleague", manager=other)
    return {"boss": boss, "other": other, "carol": carol, "bob": bob, "alice": alice}


async def about(client, reporter: Person, concerned: Person) -> str:
    r = await client.post("/breach-reports", headers=reporter.headers, json={
        "kind": "colleague_conduct", "concerned_user_id": str(concerned.id), "description": DESCRIPTION,
        "evidence": EVIDENCE})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def handler_of(state, report_id: str) -> uuid.UUID:
    async with state.sessionmaker() as s:
        row = await s.get(BreachReport, uuid.UUID(report_id))
        assert row is not None
        return row.handler_id


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


# -- visibility: handling and following a report take a staff account (§3.1) ------------------------


async def set_role(state, person: Person, role: str) -> None:
    """Straight into the table: what visible() decides, whatever re-routing does."""
    async with state.sessionmaker() as s:
        await s.execute(update(User).where(User.id == person.id).values(role=role, staff_type=None))
        await s.commit()


async def test_a_handler_who_is_a_trustee_knows_nothing_of_the_report(client, state, org):
    carol, bob, alice = org["carol"], org["bob"], org["alice"]
    report_id = await about(client, alice, bob)
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


async def test_a_reporter_who_is_a_trustee_no_longer_follows_the_report(client, state, org):
    alice = org["alice"]
    report_id = await about(client, alice, org["bob"])
    r = await client.get(f"/breach-reports/{report_id}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["view"] == "status"
    await set_role(state, alice, "trustee")
    r = await client.get(f"/breach-reports/{report_id}", headers=alice.headers)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await client.get("/breach-reports", headers=alice.headers)
    assert r.status_code == 200 and r.json()["items"] == []
