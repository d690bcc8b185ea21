"""Refused consent (§1.2, §6.1): a refusal records why, encrypted at rest; a record without
the person's permission is listed in the director's compliance summary."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.records import Record
from tests import dataprot as dp
from tests.factory import Factory

REASON = "refusal-reason-marker-7c2d: does not want notes kept"
CLAUSE = "§1.2, §6.1"


async def count(state, model) -> int:
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


@pytest.fixture
async def org(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)
    return {"director": director, "manager": manager, "alice": alice, "subject": subj}


def assert_refused_without_reason(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert (problem["rule"], problem["clause"]) == ("consent-refused", CLAUSE)
    assert problem["errors"][0]["loc"] == ["body", "consent", "refusal_reason"]


@pytest.mark.parametrize("consent", [
    {"status": "refused"},
    {"status": "refused", "refusal_reason": None},
    {"status": "refused", "refusal_reason": "   "},
])
async def test_creating_a_refusal_without_a_reason_is_422_and_changes_nothing(client, state, org, consent):
    events = await count(state, AuditEvent)
    r = await client.post("/records", headers=org["alice"].headers, json={
        "subject_id": org["subject"]["id"], "title": "Case notes", "content": "notes",
        "classification": "confidential", "purpose": "service_delivery", "consent": consent})
    assert_refused_without_reason(r)
    assert await count(state, Record) == 0
    assert await count(state, AuditEvent) == events


async def test_a_reason_belongs_only_to_a_refusal(client, state, org):
    r = await client.post("/records", headers=org["alice"].headers, json={
        "subject_id": org["subject"]["id"], "title": "Case notes", "content": "notes",
        "classification": "confidential", "purpose": "service_delivery",
        "consent": {"status": "obtained", "refusal_reason": REASON}})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"] == ["body", "consent", "refusal_reason"]
    assert REASON not in r.text
    assert await count(state, Record) == 0


async def test_a_refusal_with_its_reason_is_kept_encrypted_and_shown_to_readers(client, factory, state, org):
    alice = org["alice"]
    rec = await factory.record(by=alice, subject=org["subject"],
                                   consent={"status": "refused", "refusal_reason": REASON})
    assert rec["consent"] == {"status": "refused", "obtained_at": None, "purpose_explained": False,
                              "refusal_reason": REASON}
    for who in (alice, org["manager"], org["director"]):  # the hot path and the general path
        r = await client.get(f"/records/{rec['id']}", headers=who.headers)
        assert r.status_code == 200, r.text
        assert r.json()["consent"]["refusal_reason"] == REASON
    rows = await dp.raw_rows(state, "records")
    assert rows and not any(dp.contains(v, "refusal-reason-marker") for row in rows for v in row.values())
    async with state.sessionmaker() as s:
        details = (await s.execute(select(AuditEvent.detail))).scalars().all()
    assert not any(dp.contains(d, "refusal-reason-marker") for d in details)
    # other consents show no reason
    other = await factory.record(by=alice, subject=org["subject"]["id"])
    assert other["consent"]["refusal_reason"] is None


async def test_updating_to_refused_needs_a_reason(client, factory, state, org):
    alice = org["alice"]
    rec = await factory.record(by=alice, subject=org["subject"]["id"])
    url = f"/records/{rec['id']}"
    events = await count(state, AuditEvent)
    r = await client.patch(url, headers={**alice.headers, "If-Match": '"v1"'},
                           json={"consent": {"status": "refused"}})
    assert_refused_without_reason(r)
    assert await count(state, AuditEvent) == events
    r = await client.get(url, headers=alice.headers)
    assert (r.json()["version"], r.json()["consent"]["status"]) == (1, "pending")

    r = await client.patch(url, headers={**alice.headers, "If-Match": '"v1"'},
                           json={"consent": {"status": "refused", "refusal_reason": REASON}})
    assert r.status_code == 200, r.text
    assert r.json()["consent"]["refusal_reason"] == REASON and r.json()["version"] == 2
    # consent given later replaces the refusal, reason and all
    r = await client.patch(url, headers={**alice.headers, "If-Match": '"v2"'},
                           json={"consent": {"status": "obtained", "purpose_explained": True}})
    assert r.status_code == 200, r.text
    assert r.json()["consent"]["refusal_reason"] is None
    async with state.sessionmaker() as s:
        row = await s.get(Record, uuid.UUID(rec["id"]))
        assert row is not None and row.consent_refusal_reason is None


async def test_refused_consent_is_in_the_compliance_summary_until_destroyed(client, factory, state, org):
    alice, manager, director = org["alice"], org["manager"], org["director"]
    refused = await factory.record(by=alice, subject=org["subject"],
                                   consent={"status": "refused", "refusal_reason": REASON})
    await factory.record(by=alice, subject=org["subject"]["id"], consent={"status": "not_required"})
    gone = await factory.record(by=alice, subject=org["subject"],
                                   consent={"status": "refused", "refusal_reason": REASON})
    r = await client.get("/compliance/summary", headers=director.headers)
    assert r.status_code == 200, r.text
    assert r.json()["consent_refused"] == {"ids": sorted([refused["id"], gone["id"]]), "count": 2}
    assert REASON not in r.text

    r = await client.delete(f"/records/{gone['id']}", headers=manager.headers, params={"reason": "shredded"})
    assert r.status_code == 200, r.text
    r = await client.get("/compliance/summary", headers=director.headers)
    assert r.json()["consent_refused"] == {"ids": [refused["id"]], "count": 1}
    # shredding removes the reason too (§4.6): it is free text about the person
    rows = await dp.raw_rows(state, "records", "WHERE consent_refusal_reason IS NOT NULL")
    assert len(rows) == 1
