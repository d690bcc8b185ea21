"""Retention and review dates (§6.4, §6.5): every record has both, nobody removes them, and
only the custodian's line manager or a director moves retention off the per-purpose schedule."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests import dataprot as dp
from tests.factory import Factory, Person

MARKER = "Rt-Marker-9e1f-Content"


async def _team(factory: Factory) -> tuple[Person, Person, Person, Person]:
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    bob = await factory.user("colleague", manager=manager)
    return director, manager, alice, bob


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _schedule(settings: Any, rec: dict[str, Any]) -> datetime:
    return _at(rec["created_at"]) + timedelta(days=settings.retention_days[rec["purpose"]])


async def _snapshot(state: Any) -> tuple[Any, ...]:
    out = []
    for table in ("records", "record_contents", "audit_events"):
        out.append(sorted(await dp.raw_rows(state, table), key=lambda r: str(r.get("id", r.get("record_id")))))
    return tuple(out)


async def _patch(client: Any, person: Person, rec: dict[str, Any], body: dict[str, Any]) -> Any:
    return await client.patch(f"/records/{rec['id']}", json=body,
                              headers={**person.headers, "If-Match": f'"v{rec["version"]}"'})


def _assert_refused(r: Any) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["rule"], body["clause"]) == ("retention-schedule", "§6.5")
    assert MARKER not in r.text


@pytest.mark.parametrize("classification", ["general", "confidential"])
async def test_every_record_gets_both_dates_from_the_schedule(client, factory, settings, classification) -> None:
    _, _, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    for purpose in settings.retention_days:
        rec = await factory.record(by=alice, subject=subj, classification=classification, purpose=purpose)
        assert _at(rec["retention_until"]) == _schedule(settings, rec)
        assert _at(rec["review_due"]) == _at(rec["created_at"]) + timedelta(days=settings.review_interval_days)


@pytest.mark.parametrize("field", ["retention_until", "review_due"])
async def test_neither_date_can_be_removed(client, factory, state, field) -> None:
    director, manager, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, content=MARKER)
    before = await _snapshot(state)
    for person in (alice, manager, director):
        r = await _patch(client, person, rec, {field: None})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.json()["detail"] and MARKER not in r.text
    assert await _snapshot(state) == before


@pytest.mark.parametrize("shift", [timedelta(days=-30), timedelta(days=30)], ids=["earlier", "later"])
async def test_the_custodian_cannot_move_retention_off_the_schedule(client, factory, state, settings, shift) -> None:
    _, _, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, content=MARKER)
    records_before = await dp.raw_rows(state, "records")
    r = await _patch(client, alice, rec, {"retention_until": (_schedule(settings, rec) + shift).isoformat(),
                                          "title": f"{MARKER} new title"})
    _assert_refused(r)
    assert await dp.raw_rows(state, "records") == records_before  # nothing changed
    assert await dp.events(state, "record.update") == []
    (denied,) = await dp.events(state, "record.retention", rec["id"])
    assert (denied.decision, denied.rule, denied.clause, denied.actor_id) == (
        "deny", "retention-schedule", "§6.5", alice.id)
    assert MARKER not in denied.model_dump_json()
    r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
    assert r.json()["retention_until"] == rec["retention_until"] and r.json()["version"] == 1


async def test_the_custodian_may_keep_or_restore_the_schedule_date(client, factory, state, settings) -> None:
    _, manager, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj)
    # sending the date unchanged (a full form) is no move
    r = await _patch(client, alice, rec, {"title": "renamed", "retention_until": rec["retention_until"],
                                          "review_due": rec["review_due"]})
    assert r.status_code == 200, r.text
    rec = r.json()
    # the line manager moves it; the custodian may keep that date, or put it back on the schedule
    moved = _schedule(settings, rec) - timedelta(days=100)
    r = await _patch(client, manager, rec, {"retention_until": moved.isoformat()})
    assert r.status_code == 200, r.text
    rec = r.json()
    r = await _patch(client, alice, rec, {"title": "again", "retention_until": rec["retention_until"]})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert _at(rec["retention_until"]) == moved
    r = await _patch(client, alice, rec, {"retention_until": _schedule(settings, rec).isoformat()})
    assert r.status_code == 200, r.text
    assert _at(r.json()["retention_until"]) == _schedule(settings, rec)


async def test_the_line_manager_or_a_director_moves_retention_and_the_event_has_both_dates(
        client, factory, state, settings) -> None:
    director, manager, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, content=MARKER)
    old_retention, old_review = _at(rec["retention_until"]), _at(rec["review_due"])
    earlier = _schedule(settings, rec) - timedelta(days=365)
    r = await _patch(client, manager, rec, {"retention_until": earlier.isoformat()})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert _at(rec["retention_until"]) == earlier
    later = _schedule(settings, rec) + timedelta(days=365)
    new_review = old_review + timedelta(days=10)
    r = await _patch(client, director, rec,
                     {"retention_until": later.isoformat(), "review_due": new_review.isoformat()})
    assert r.status_code == 200, r.text
    first, second = await dp.events(state, "record.update", rec["id"])
    assert first.actor_id == manager.id and second.actor_id == director.id
    as_dates = {k: [_at(v) for v in first.detail[k]] for k in ("retention_until", "review_due")}
    assert as_dates == {"retention_until": [old_retention, earlier], "review_due": [old_review, old_review]}
    as_dates = {k: [_at(v) for v in second.detail[k]] for k in ("retention_until", "review_due")}
    assert as_dates == {"retention_until": [earlier, later], "review_due": [old_review, new_review]}
    assert MARKER not in second.model_dump_json()


async def test_the_custodian_moves_the_review_date_and_the_event_has_both_dates(client, factory, state) -> None:
    _, _, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj)
    due = _at(rec["review_due"]) - timedelta(days=200)
    r = await _patch(client, alice, rec, {"review_due": due.isoformat()})
    assert r.status_code == 200, r.text
    (event,) = await dp.events(state, "record.update", rec["id"])
    assert [_at(v) for v in event.detail["review_due"]] == [_at(rec["review_due"]), due]
    assert [_at(v) for v in event.detail["retention_until"]] == [_at(rec["retention_until"])] * 2


async def test_a_custodian_who_is_a_peer_of_the_creator_cannot_move_it(client, factory, settings) -> None:
    """Bob, the custodian, shares alice's line manager: neither of them chooses the date."""
    _, _, alice, bob = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, custodian_id=str(bob.id))
    later = {"retention_until": (_schedule(settings, rec) + timedelta(days=1)).isoformat()}
    assert (await _patch(client, alice, rec, later)).status_code == 403  # not hers to update at all
    _assert_refused(await _patch(client, bob, rec, later))


async def test_a_purpose_change_moves_a_scheduled_date_and_keeps_an_authorised_one(client, factory, settings) -> None:
    _, manager, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, purpose="service_delivery")
    r = await _patch(client, alice, rec, {"purpose": "equal_opportunities_monitoring"})
    assert r.status_code == 200, r.text
    assert _at(r.json()["retention_until"]) == _schedule(settings, r.json())
    assert _schedule(settings, r.json()) != _schedule(settings, rec)
    # the custodian may not keep the old purpose's date with the new purpose
    rec = await factory.record(by=alice, subject=subj, purpose="service_delivery")
    _assert_refused(await _patch(client, alice, rec, {"purpose": "equal_opportunities_monitoring",
                                                      "retention_until": rec["retention_until"]}))
    # an authorised date stays
    held = _schedule(settings, rec) + timedelta(days=50)
    r = await _patch(client, manager, rec, {"retention_until": held.isoformat()})
    assert r.status_code == 200, r.text
    r = await _patch(client, alice, r.json(), {"purpose": "funder_reporting"})
    assert r.status_code == 200, r.text
    assert _at(r.json()["retention_until"]) == held


async def test_creating_with_a_custom_retention_date_follows_the_same_rule(
        client, factory, state, settings, clock) -> None:
    director, manager, alice, _ = await _team(factory)
    subj = await factory.subject(by=alice)
    now = clock.now()
    scheduled = now + timedelta(days=settings.retention_days["service_delivery"])
    body = {"subject_id": subj["id"], "title": f"{MARKER} t", "content": MARKER, "classification": "confidential",
            "purpose": "service_delivery"}
    before = await _snapshot(state)
    for custom in (now - timedelta(days=1), scheduled + timedelta(days=1)):
        r = await client.post("/records", headers=alice.headers, json={**body, "retention_until": custom.isoformat()})
        _assert_refused(r)
    assert await _snapshot(state) == before  # no record, no content, no event
    # exactly the schedule date is no choice at all
    r = await client.post("/records", headers=alice.headers, json={**body, "retention_until": scheduled.isoformat()})
    assert r.status_code == 201, r.text
    # the custodian's line manager, or a director, may choose another date
    for person in (manager, director):
        custom = now - timedelta(days=3)
        r = await client.post("/records", headers=person.headers,
                              json={**body, "custodian_id": str(alice.id), "retention_until": custom.isoformat()})
        assert r.status_code == 201, r.text
        assert _at(r.json()["retention_until"]) == custom
    # a colleague naming someone else as custodian is not that custodian's line manager
    r = await client.post("/records", headers=alice.headers, json={
        **body, "custodian_id": str(manager.id), "retention_until": (now - timedelta(days=3)).isoformat()})
    _assert_refused(r)


async def test_for_personnel_records_only_a_director_chooses_the_date(client, factory, settings, clock) -> None:
    """The employee's line manager keeps personnel records (§4.3) as a custodian keeps others,
    even when also the line manager of the colleague named custodian."""
    director, manager, alice, bob = await _team(factory)
    subject = await factory.employee_subject(by=director, employee=alice)
    body = {"subject_id": subject["id"], "title": "probation", "content": MARKER, "classification": "personnel",
            "purpose": "personnel_administration", "custodian_id": str(bob.id)}
    custom = (clock.now() + timedelta(days=30)).isoformat()
    _assert_refused(await client.post("/records", headers=manager.headers, json={**body, "retention_until": custom}))
    rec = (await client.post("/records", headers=manager.headers, json=body)).json()
    _assert_refused(await _patch(client, manager, rec, {"retention_until": custom}))
    r = await _patch(client, director, rec, {"retention_until": custom})
    assert r.status_code == 200, r.text
    r = await client.post("/records", headers=director.headers, json={**body, "retention_until": custom})
    assert r.status_code == 201, r.text
