"""POST /records/{id}/legal-hold (§6.5), POST /records/{id}/review (§6.4), consent changes (§1.2)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from app.models.lifecycle import RecordReview
from tests import dataprot as dp

PROBLEM = "application/problem+json"


async def _setup(client, factory):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    other = await factory.user("colleague", manager=manager)
    trustee = await factory.user("trustee")
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj)
    return director, manager, alice, other, trustee, subj, rec


async def _state_of(client, person, rid):  # type: ignore[no-untyped-def]
    r = await client.get(f"/records/{rid}", headers=person.headers)
    assert r.status_code == 200
    body = r.json()
    return {k: body[k] for k in ("legal_hold", "version", "review_due", "last_verified_at", "updated_at")}


# -- legal hold ----------------------------------------------------------------------


async def test_a_director_places_and_lifts_a_legal_hold(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    director, _, alice, *_rest, rec = await _setup(client, factory)
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "claim from Mr Example"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["legal_hold"] is True and body["reason"] == "claim from Mr Example"
    assert body["version"] == 2 and body["changed_by"] == str(director.id)
    assert (await _state_of(client, alice, rec["id"]))["legal_hold"] is True
    (event,) = await dp.events(state, "record.legal_hold", rec["id"])
    assert (event.decision, event.rule, event.clause) == ("allow", "legal-hold", "§6.5")
    assert event.detail == {"legal_hold": True}  # the reason stays out of the audit log
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": False, "reason": "settled"})
    assert r.status_code == 200 and r.json()["legal_hold"] is False
    assert (await _state_of(client, alice, rec["id"]))["legal_hold"] is False


@pytest.mark.parametrize("who", ["custodian", "line_manager", "other", "trustee"])
async def test_only_a_director_sets_a_legal_hold(client, factory, state, who) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice, other, trustee, _, rec = await _setup(client, factory)
    person = {"custodian": alice, "line_manager": manager, "other": other, "trustee": trustee}[who]
    before = await _state_of(client, alice, rec["id"])
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=person.headers,
                          json={"legal_hold": True, "reason": "r"})
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert (r.json()["rule"], r.json()["clause"]) == ("legal-hold", "§6.5")
    assert await _state_of(client, alice, rec["id"]) == before
    (event,) = await dp.events(state, "record.legal_hold", rec["id"])
    assert event.decision == "deny" and event.actor_id == person.id


async def test_legal_hold_bad_input(client, factory) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice, *_rest, rec = await _setup(client, factory)
    before = await _state_of(client, alice, rec["id"])
    for body in ({"legal_hold": True}, {"legal_hold": True, "reason": ""}, {"reason": "x"},
                 {"legal_hold": "maybe", "reason": "x"}, {"legal_hold": True, "reason": "x" * 501}):
        r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers, json=body)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert await _state_of(client, alice, rec["id"]) == before
    r = await client.post(f"/records/{uuid.uuid4()}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "x"})
    assert r.status_code == 404
    assert (await client.delete(f"/records/{rec['id']}", headers=manager.headers,
                                params={"reason": "done"})).status_code == 200
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "too late"})
    assert r.status_code == 410 and r.json()["tombstone"]["id"] == rec["id"]


# -- review --------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["custodian", "line_manager", "director"])
async def test_custodian_line_manager_or_director_verifies(client, factory, state, clock, settings, who) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice, *_rest, rec = await _setup(client, factory)
    person = {"custodian": alice, "line_manager": manager, "director": director}[who]
    clock.advance(days=400)  # overdue now; tokens have expired meanwhile
    for p in (person, alice):
        await factory.login(p)
    r = await client.post(f"/records/{rec['id']}/review", headers=person.headers, json={"note": "address checked"})
    assert r.status_code == 200, r.text
    body = r.json()
    now = clock.now()
    due = now + timedelta(days=settings.review_interval_days)
    assert body["note"] == "address checked" and body["reviewed_by"] == str(person.id)
    after = await _state_of(client, alice, rec["id"])
    assert after["last_verified_at"].replace("Z", "+00:00") == now.isoformat()
    assert after["review_due"].replace("Z", "+00:00") == due.isoformat()
    assert after["version"] == 2 == body["version"]
    (event,) = await dp.events(state, "record.review", rec["id"])
    assert event.decision == "allow" and event.detail["note"] is True and "address" not in str(event.detail)
    async with state.sessionmaker() as session:
        review = await session.get(RecordReview, uuid.UUID(body["id"]))
        assert review is not None and review.note_ct and b"address" not in review.note_ct


async def test_review_without_a_note_and_a_director_on_a_sensitive_record(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    director, _, alice, *_rest, subj, _ = await _setup(client, factory)
    rec = await factory.record(by=alice, subject=subj, classification="sensitive", access_requester_id=subj["id"])
    assert (await client.get(f"/records/{rec['id']}", headers=director.headers)).status_code == 403
    r = await client.post(f"/records/{rec['id']}/review", headers=director.headers)
    assert r.status_code == 200, r.text
    assert r.json()["note"] is None and r.json()["version"] == 2


@pytest.mark.parametrize("who", ["other", "shared_with", "trustee"])
async def test_others_may_not_verify(client, factory, state, who) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice, other, trustee, _, rec = await _setup(client, factory)
    if who == "shared_with":
        await factory.share(by=alice, record=rec, to=other)
    person = trustee if who == "trustee" else other
    before = await _state_of(client, alice, rec["id"])
    r = await client.post(f"/records/{rec['id']}/review", headers=person.headers, json={"note": "looks fine"})
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert (r.json()["rule"], r.json()["clause"]) == ("review", "§6.4")
    assert await _state_of(client, alice, rec["id"]) == before
    assert await dp.raw_rows(state, "record_reviews") == []
    (event,) = await dp.events(state, "record.review", rec["id"])
    assert event.decision == "deny"


async def test_review_bad_input_and_destroyed_record(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    _, manager, alice, *_rest, rec = await _setup(client, factory)
    before = await _state_of(client, alice, rec["id"])
    for body in ({"note": "x" * 2001}, {"note": ""}, {"note": 5}):
        r = await client.post(f"/records/{rec['id']}/review", headers=alice.headers, json=body)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert await _state_of(client, alice, rec["id"]) == before
    assert (await client.post(f"/records/{uuid.uuid4()}/review", headers=alice.headers)).status_code == 404
    await client.delete(f"/records/{rec['id']}", headers=manager.headers, params={"reason": "done"})
    r = await client.post(f"/records/{rec['id']}/review", headers=manager.headers)
    assert r.status_code == 410
    assert await dp.raw_rows(state, "record_reviews") == []


# -- consent (§1.2) ------------------------------------------------------------------


async def test_changing_consent_is_audited_as_a_field_change(client, factory, state, clock) -> None:  # type: ignore[no-untyped-def]
    *_rest, alice, _, _, _, rec = await _setup(client, factory)
    assert rec["consent"]["status"] == "pending"
    consent = {"status": "obtained", "obtained_at": clock.now().isoformat(), "purpose_explained": True}
    r = await client.patch(f"/records/{rec['id']}", headers={**alice.headers, "If-Match": '"v1"'},
                           json={"consent": consent})
    assert r.status_code == 200, r.text
    assert r.json()["consent"]["status"] == "obtained" and r.json()["consent"]["purpose_explained"] is True
    (event,) = await dp.events(state, "record.update", rec["id"])
    assert event.detail["fields"] == ["consent"] and event.actor_id == alice.id
    r = await client.patch(f"/records/{rec['id']}", headers={**alice.headers, "If-Match": '"v2"'},
                           json={"consent": {"status": "withdrawn"}})
    assert r.status_code == 422


async def test_destroying_a_record_shreds_its_review_notes_and_bumps_the_version(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice, *_rest, rec = await _setup(client, factory)
    assert (await client.post(f"/records/{rec['id']}/review", headers=alice.headers,
                              json={"note": "address checked"})).status_code == 200
    version = (await _state_of(client, alice, rec["id"]))["version"]
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "no longer needed"}, headers=manager.headers)
    assert r.status_code == 200, r.text
    (review,) = await dp.raw_rows(state, "record_reviews")
    assert review["note_ct"] is None
    assert await dp.raw_rows(state, "record_contents") == []
    (row,) = await dp.raw_rows(state, "records")
    assert row["version"] == version + 1 and row["destroyed_at"] is not None
    # a second destroy finds only the tombstone
    r = await client.delete(f"/records/{rec['id']}", params={"reason": "again"}, headers=manager.headers)
    assert r.status_code == 410
