"""Bad input: a 4xx problem+json naming the field, never a 500, and nothing written."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from app.models.audit import AuditEvent
from app.models.emergency_grants import EmergencyGrant
from app.models.records import CONTENT_MAX, TITLE_MAX, Record, RecordContent
from tests.factory import Factory
from tests.policy.org import count

UNKNOWN = str(uuid.uuid4())

RECORD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown subject", {"subject_id": UNKNOWN}, "subject_id"),
    ("malformed subject", {"subject_id": "42"}, "subject_id"),
    ("unknown custodian", {"custodian_id": UNKNOWN}, "custodian_id"),
    ("unknown requester", {"classification": "sensitive", "access_requester_id": UNKNOWN}, "access_requester_id"),
    ("bad classification", {"classification": "top-secret"}, "classification"),
    ("bad purpose", {"purpose": "gossip"}, "purpose"),
    ("missing purpose", {"purpose": None}, "purpose"),
    ("missing title", {"title": None}, "title"),
    ("empty title", {"title": ""}, "title"),
    ("oversized title", {"title": "t" * (TITLE_MAX + 1)}, "title"),
    ("oversized content", {"content": "c" * (CONTENT_MAX + 1)}, "content"),
    ("naive retention", {"retention_until": "2030-01-01T00:00:00"}, "retention_until"),
    ("naive review", {"review_due": "2030-01-01T00:00:00"}, "review_due"),
    ("naive consent", {"consent": {"status": "obtained", "obtained_at": "2026-01-01T00:00:00"}}, "obtained_at"),
    ("bad consent", {"consent": {"status": "maybe"}}, "status"),
]


def _names_field(body: dict[str, Any], field: str) -> bool:
    return any(field in [str(p) for p in e["loc"]] for e in body.get("errors") or [])


@pytest.mark.parametrize(("case", "change", "field"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
async def test_bad_record_input(client, factory: Factory, case: str, change: dict[str, Any], field: str):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    body = {"subject_id": subject["id"], "title": "t", "content": "secret-input-marker",
            "classification": "confidential", "purpose": "service_delivery", **change}
    body = {k: v for k, v in body.items() if v is not None}
    events_before = await count(factory, AuditEvent)
    r = await client.post("/records", json=body, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    out = r.json()
    assert _names_field(out, field), out
    assert "secret-input-marker" not in r.text
    assert await count(factory, Record) == 0 and await count(factory, RecordContent) == 0
    assert await count(factory, AuditEvent) == events_before


async def test_bad_update_input_changes_nothing(client, factory: Factory):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject, content="keep-me")
    for change, field in (({"classification": "nope"}, "classification"), ({"title": None}, None),
                          ({"custodian_id": UNKNOWN}, "custodian_id"),
                          ({"review_due": "2030-01-01T00:00"}, "review_due"),
                          ({"access_requester_id": UNKNOWN}, "access_requester_id"), ({}, None)):
        r = await client.patch(f"/records/{rec['id']}", json=change, headers={**alice.headers, "If-Match": '"v1"'})
        assert r.status_code == 422, (change, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if field:
            assert _names_field(r.json(), field), r.json()
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    assert r.json()["version"] == 1 and r.json()["content"] == "keep-me"
    assert (await client.get(f"/records/{UNKNOWN}", headers=alice.headers)).status_code == 404
    assert (await client.get("/records/not-a-uuid", headers=alice.headers)).status_code == 422


GRANT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("longer than 72h", {"expires_at": timedelta(hours=72, seconds=1)}, "expires_at"),
    ("in the past", {"expires_at": timedelta(seconds=-1)}, "expires_at"),
    ("now", {"expires_at": timedelta(0)}, "expires_at"),
    ("naive expiry", {"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ("both targets", {"subject_id": "SUBJECT"}, "body"),
    ("no target", {"record_id": None}, "body"),
    ("unknown grantee", {"grantee_id": UNKNOWN}, "grantee_id"),
    ("unknown record", {"record_id": UNKNOWN}, "record_id"),
    ("unknown subject", {"record_id": None, "subject_id": UNKNOWN}, "subject_id"),
    ("no reason", {"reason": None}, "reason"),
    ("empty reason", {"reason": ""}, "reason"),
]


@pytest.mark.parametrize(("case", "change", "field"), GRANT_CASES, ids=[c[0] for c in GRANT_CASES])
async def test_bad_grant_input(client, factory: Factory, case: str, change: dict[str, Any], field: str):
    director = await factory.user("director")
    alice = await factory.user("colleague")
    subject = await factory.subject(by=director)
    rec = await factory.record(by=director, subject=subject)
    now = factory.state.clock.now()
    body: dict[str, Any] = {"grantee_id": str(alice.id), "record_id": rec["id"], "reason": "crisis",
                            "expires_at": (now + timedelta(hours=1)).isoformat()}
    for key, value in change.items():
        if isinstance(value, timedelta):
            value = (now + value).isoformat()
        if value == "SUBJECT":
            value = subject["id"]
        body[key] = value
    body = {k: v for k, v in body.items() if v is not None}
    r = await client.post("/emergency-grants", json=body, headers=director.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _names_field(r.json(), field), r.json()
    assert await count(factory, EmergencyGrant) == 0


async def test_grant_of_exactly_72_hours_is_allowed(client, factory: Factory):
    director = await factory.user("director")
    subject = await factory.subject(by=director)
    expires = factory.state.clock.now() + timedelta(hours=72)
    r = await client.post("/emergency-grants", headers=director.headers, json={
        "grantee_id": str(director.id), "subject_id": subject["id"], "reason": "r", "expires_at": expires.isoformat()})
    assert r.status_code == 201, r.text


async def test_subject_validation(client, factory: Factory):
    alice = await factory.user("colleague")
    trustee = await factory.user("trustee", login=False)
    cases = [
        ({"kind": "organisation", "name": "Org", "category": "member"}, "body"),
        ({"kind": "individual", "name": "P", "category": "organisation"}, "body"),
        ({"kind": "individual", "name": "P", "category": "member",
          "officers": [{"name": "A", "office": "chair"}]}, "body"),
        ({"kind": "organisation", "name": "Org", "category": "organisation",
          "officers": [{"name": "A", "office": "treasurer"}]}, "office"),
        ({"kind": "individual", "name": "P", "category": "employee"}, "body"),
        ({"kind": "individual", "name": "P", "category": "member", "user_id": str(alice.id)}, "body"),
        ({"kind": "individual", "name": "P", "category": "employee", "user_id": UNKNOWN}, "user_id"),
        ({"kind": "individual", "name": "P", "category": "employee", "user_id": str(trustee.id)}, "user_id"),
        ({"kind": "individual", "name": "", "category": "member"}, "name"),
        ({"kind": "individual", "name": "x" * 201, "category": "member"}, "name"),
        ({"kind": "robot", "name": "P", "category": "member"}, "kind"),
    ]
    for body, field in cases:
        r = await client.post("/subjects", json=body, headers=alice.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert _names_field(r.json(), field), (body, r.json())
    assert (await client.get("/subjects", headers=alice.headers)).json()["items"] == []
