"""Idempotency-Key on the POSTs that create (records, access requests, disclosures, breach
reports): a retry gets the first result and creates nothing; the key table holds no content;
the same letter logged twice for one subject is a duplicate."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.models.access_requests import AccessRequest
from app.models.audit import AuditEvent
from app.models.breach_reports import BreachReport
from app.models.disclosures import Disclosure
from app.models.records import Record
from tests.factory import Factory, Person

PROBLEM = "application/problem+json"
CONTENT = "Idempotent secret content 7f3a"
TITLE = "Idempotent title 9c1b"
SUMMARY = "Idempotent disclosure summary 4d2e"
DESCRIPTION = "Idempotent breach description 8b6f"
MODELS = {"/records": Record, "/access-requests": AccessRequest, "/disclosures": Disclosure,
          "/breach-reports": BreachReport}
CREATE_ACTIONS = {"/records": "record.create", "/access-requests": "access_request.create",
                  "/disclosures": "disclosure.raise", "/breach-reports": "breach_report.create"}


async def _count(state, model) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def _creations(state, action: str) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(AuditEvent)
                                .where(AuditEvent.action == action, AuditEvent.decision == "allow"))).scalar_one()


@pytest.fixture
async def org(factory: Factory, client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    r = await client.post("/subjects", headers=alice.headers,
                          json={"kind": "individual", "name": "Sam Service-User", "category": "service_user"})
    assert r.status_code == 201, r.text
    return {"director": director, "manager": manager, "alice": alice, "bob": bob, "subject": r.json()}


def body_for(path: str, org: dict[str, Any], clock, n: int = 1) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    sid = org["subject"]["id"]
    if path == "/records":
        return {"subject_id": sid, "title": TITLE, "content": f"{CONTENT} {n}", "classification": "confidential",
                "purpose": "service_delivery"}
    if path == "/access-requests":
        return {"kind": "subject_access", "subject_id": sid, "requester_subject_id": sid,
                "signed_by": "Sam Service-User", "signatory_capacity": "individual", "in_writing": True,
                "letter_reference": f"LTR-{n}", "received_at": (clock.now() - timedelta(days=1)).isoformat()}
    if path == "/disclosures":
        return {"subject_id": sid, "category": "child_abuse", "summary": f"{SUMMARY} {n}"}
    return {"kind": "colleague_conduct", "concerned_user_id": str(org["bob"].id),
            "description": f"{DESCRIPTION} {n}", "evidence": "seen on the rota"}


def _key(person: Person, key: str) -> dict[str, str]:
    return {**person.headers, "Idempotency-Key": key}


@pytest.mark.parametrize("path", list(MODELS))
async def test_a_retry_returns_the_first_result_and_creates_nothing(client, org, state, clock, path):
    alice = org["alice"]
    body = body_for(path, org, clock)
    first = await client.post(path, json=body, headers=_key(alice, "create-1"))
    assert first.status_code == 201, first.text
    clock.advance(minutes=5)
    again = await client.post(path, json=body, headers=_key(alice, "create-1"))
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"{path}/{first.json()['id']}"
    assert again.headers["idempotency-replayed"] == "true" and "idempotency-replayed" not in first.headers
    assert again.headers["cache-control"] == "no-store"
    assert await _count(state, MODELS[path]) == 1
    assert await _creations(state, CREATE_ACTIONS[path]) == 1
    # Without the key, the same body is a new request (a duplicate letter is refused instead).
    other = await client.post(path, json=body_for(path, org, clock, n=2), headers=alice.headers)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize("path", list(MODELS))
async def test_the_same_key_with_another_body_is_422_and_changes_nothing(client, org, state, clock, path):
    alice = org["alice"]
    first = await client.post(path, json=body_for(path, org, clock), headers=_key(alice, "k"))
    assert first.status_code == 201, first.text
    r = await client.post(path, json=body_for(path, org, clock, n=2), headers=_key(alice, "k"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("/idempotency-key-reused")
    assert CONTENT not in r.text and SUMMARY not in r.text and DESCRIPTION not in r.text
    assert first.json()["id"] not in r.text
    assert await _count(state, MODELS[path]) == 1


async def test_keys_belong_to_one_actor_and_one_endpoint(client, org, state, clock):
    alice, manager = org["alice"], org["manager"]
    a = await client.post("/records", json=body_for("/records", org, clock), headers=_key(alice, "shared"))
    b = await client.post("/records", json=body_for("/records", org, clock), headers=_key(manager, "shared"))
    c = await client.post("/disclosures", json=body_for("/disclosures", org, clock), headers=_key(alice, "shared"))
    assert (a.status_code, b.status_code, c.status_code) == (201, 201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert "idempotency-replayed" not in b.headers and "idempotency-replayed" not in c.headers
    assert await _count(state, Record) == 2


async def test_keys_expire_after_a_day(client, org, state, clock):
    alice = org["alice"]
    body = body_for("/records", org, clock)
    first = await client.post("/records", json=body, headers=_key(alice, "daily"))
    clock.advance(hours=state.settings.idempotency_key_hours, seconds=1)
    await factory_login(client, alice)
    later = await client.post("/records", json=body, headers=_key(alice, "daily"))
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert "idempotency-replayed" not in later.headers
    assert await _count(state, Record) == 2


async def factory_login(client, person: Person) -> None:  # type: ignore[no-untyped-def]
    from tests.factory import PASSWORD

    r = await client.post("/auth/token", data={"username": person.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    person.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_the_key_table_holds_no_content(client, org, state, clock):
    alice = org["alice"]
    for path in MODELS:
        r = await client.post(path, json=body_for(path, org, clock), headers=_key(alice, f"k-{path}"))
        assert r.status_code == 201, r.text
    async with state.sessionmaker() as s:
        rows = (await s.execute(text("SELECT * FROM idempotency_keys"))).all()
    assert len(rows) == 4
    dump = repr(rows)
    for secret in (CONTENT, TITLE, SUMMARY, DESCRIPTION, "LTR-1", "seen on the rota"):
        assert secret not in dump


async def test_a_replay_goes_through_the_read_policy(client, org, state, clock):
    """The replay is rebuilt by the normal read path: one who may no longer read gets no content."""
    alice, bob = org["alice"], org["bob"]
    body = {**body_for("/records", org, clock), "custodian_id": str(bob.id)}
    first = await client.post("/records", json=body, headers=_key(alice, "handed-over"))
    assert first.status_code == 201, first.text
    again = await client.post("/records", json=body, headers=_key(alice, "handed-over"))
    assert again.status_code == 403, again.text
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["clause"] and again.json()["rule"]
    assert CONTENT not in again.text and TITLE not in again.text
    assert await _count(state, Record) == 1


async def test_a_replay_of_a_destroyed_record_is_gone(client, org, state, clock):
    alice, manager = org["alice"], org["manager"]
    body = body_for("/records", org, clock)
    first = await client.post("/records", json=body, headers=_key(alice, "shredded"))
    r = await client.request("DELETE", f"/records/{first.json()['id']}", headers=manager.headers,
                             json={"reason": "entered in error"})
    assert r.status_code == 200, r.text
    again = await client.post("/records", json=body, headers=_key(alice, "shredded"))
    assert again.status_code == 410 and CONTENT not in again.text
    assert await _count(state, Record) == 1


async def test_concurrent_requests_with_one_key_create_once(client, org, state, clock):
    alice = org["alice"]
    body = body_for("/records", org, clock)
    rs = await asyncio.gather(*(client.post("/records", json=body, headers=_key(alice, "race")) for _ in range(4)))
    assert {r.status_code for r in rs} == {201}, [r.text for r in rs]
    assert len({r.json()["id"] for r in rs}) == 1
    assert await _count(state, Record) == 1
    assert await _creations(state, "record.create") == 1


async def test_a_refused_create_keeps_no_key(client, org, state, clock):
    """A refusal stores nothing under the key: the corrected retry with it is a new request."""
    alice = org["alice"]
    bad = {**body_for("/records", org, clock), "subject_id": str(uuid.uuid4())}
    r = await client.post("/records", json=bad, headers=_key(alice, "fix-and-retry"))
    assert r.status_code == 422, r.text
    assert await _count_keys(state) == 0
    ok = await client.post("/records", json=bad | {"subject_id": org["subject"]["id"]},
                           headers=_key(alice, "fix-and-retry"))
    assert ok.status_code == 201, ok.text


async def _count_keys(state) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar_one()


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve".encode()])
async def test_a_malformed_key_is_refused(client, org, state, clock, key: str | bytes):
    r = await client.post("/records", json=body_for("/records", org, clock),
                          headers={**org["alice"].headers, "Idempotency-Key": key})
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == PROBLEM
    assert await _count(state, Record) == 0


# -- the same letter twice ---------------------------------------------------------------


async def test_the_same_letter_for_the_same_subject_is_a_duplicate(client, org, state, clock):
    """The duplicate names the request it repeats only to whoever may see that request (§3.4):
    the colleague who logged it and directors; another colleague, holding the same letter,
    learns only that it is logged, never which request it is."""
    alice, manager, director = org["alice"], org["manager"], org["director"]
    body = body_for("/access-requests", org, clock)
    first = await client.post("/access-requests", json=body, headers=alice.headers)
    assert first.status_code == 201, first.text
    assert (await client.get(f"/access-requests/{first.json()['id']}", headers=manager.headers)).status_code == 404
    for who, letter, named in ((alice, body, True), (manager, {**body, "letter_reference": " ltr-1 "}, False),
                               (director, body, True)):
        r = await client.post("/access-requests", json=letter, headers=who.headers)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == PROBLEM
        problem = r.json()
        assert problem["type"].endswith("/duplicate-request")
        assert problem["rule"] == "one-letter-one-request" and problem["clause"] == "§3.4"
        if named:
            assert problem["existing_id"] == first.json()["id"]
        else:
            assert "existing_id" not in problem and first.json()["id"] not in r.text
    assert await _count(state, AccessRequest) == 1
    # Another subject's letter with the same reference is its own request.
    r = await client.post("/subjects", headers=alice.headers,
                          json={"kind": "individual", "name": "Pat Other", "category": "service_user"})
    pat = r.json()
    other = {**body, "subject_id": pat["id"], "requester_subject_id": pat["id"], "signed_by": "Pat Other"}
    assert (await client.post("/access-requests", json=other, headers=alice.headers)).status_code == 201


async def test_a_withdrawn_letter_may_be_logged_again(client, org, state, clock):
    alice = org["alice"]
    body = body_for("/access-requests", org, clock)
    first = (await client.post("/access-requests", json=body, headers=alice.headers)).json()
    r = await client.post(f"/access-requests/{first['id']}/withdraw", headers=alice.headers,
                          json={"reason": "logged against the wrong file"})
    assert r.status_code == 200, r.text
    again = await client.post("/access-requests", json=body, headers=alice.headers)
    assert again.status_code == 201, again.text
