"""Retention (§6.5): default dates, the sweep (dry run and real), legal holds, shredding (§4.6)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.workflows import retention
from tests import dataprot as dp


async def _team(factory):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    return director, manager, alice


async def _chosen(factory, manager, alice, subject_id, **kw):  # type: ignore[no-untyped-def]
    """Alice's record, with a retention date her line manager chose (§6.5)."""
    return await factory.record(by=manager, subject=subject_id, custodian_id=str(alice.id), **kw)


def _iso(dt) -> str:  # type: ignore[no-untyped-def]
    return dt.isoformat()


async def _snapshot(state) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    out = []
    for table in ("records", "record_contents", "audit_events"):
        out.append(sorted(await dp.raw_rows(state, table), key=lambda r: str(r.get("id", r.get("record_id")))))
    return tuple(out)


async def test_every_record_gets_a_retention_date_by_purpose(client, factory, settings, clock) -> None:  # type: ignore[no-untyped-def]
    _, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    now = clock.now()
    for purpose, days in settings.retention_days.items():
        for cls in ("confidential", "sensitive"):
            extra = {"access_requester_id": subj["id"]} if cls == "sensitive" else {}
            rec = await factory.record(by=alice, subject=subj, classification=cls, purpose=purpose, **extra)
            assert rec["retention_until"] is not None
            assert rec["retention_until"].replace("Z", "+00:00") == _iso(now + timedelta(days=days))
    general = await factory.record(by=alice, subject=subj, classification="general")  # general ones too
    assert general["retention_until"].replace("Z", "+00:00") == _iso(now + timedelta(days=settings.retention_days[
        "service_delivery"]))
    # another date is the custodian's line manager's choice (§6.5)
    given = now + timedelta(days=10)
    rec = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(given))
    assert rec["retention_until"].replace("Z", "+00:00") == _iso(given)
    # a year to the first review
    assert rec["review_due"].replace("Z", "+00:00") == _iso(now + timedelta(days=settings.review_interval_days))


@pytest.mark.parametrize("bad", ["2026-02-30T00:00:00Z", "not a date", "2026-13-01T00:00:00Z",
                                 "2026-01-01T00:00:00"])  # impossible, malformed, naive
async def test_malformed_or_impossible_dates_are_refused(client, factory, state, bad) -> None:  # type: ignore[no-untyped-def]
    _, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj)
    before = await _snapshot(state)
    for field in ("retention_until", "review_due"):
        r = await client.post("/records", headers=alice.headers, json={
            "subject_id": subj["id"], "title": "t", "content": "c", "classification": "confidential",
            "purpose": "service_delivery", field: bad})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        r = await client.patch(f"/records/{rec['id']}", headers={**alice.headers, "If-Match": '"v1"'},
                               json={field: bad})
        assert r.status_code == 422 and field in r.json()["detail"]
    assert await _snapshot(state) == before


async def test_dry_run_changes_nothing_and_the_real_run_destroys_what_it_listed(client, factory, state, clock) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    now = clock.now()
    # paper files brought in already past their date, at create and by an update
    past = [await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(now - timedelta(days=d)))
            for d in (1, 400)]
    changed = await factory.record(by=alice, subject=subj)
    r = await client.patch(f"/records/{changed['id']}", headers={**manager.headers, "If-Match": '"v1"'},
                           json={"retention_until": _iso(now - timedelta(seconds=1))})
    assert r.status_code == 200, r.text
    past.append(r.json())
    future = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(now + timedelta(days=1)))
    held = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(now - timedelta(days=3)))
    r = await client.post(f"/records/{held['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "litigation"})
    assert r.status_code == 200
    done = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(now - timedelta(days=3)))
    assert (await client.delete(f"/records/{done['id']}", headers=manager.headers,
                                params={"reason": "by hand"})).status_code == 200
    expected = sorted(r["id"] for r in past)

    before = await _snapshot(state)
    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": True})
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["dry_run"] is True and dry["count"] == 3 and sorted(dry["ids"]) == expected
    assert await _snapshot(state) == before  # nothing at all written

    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": False})
    assert r.status_code == 200, r.text
    real = r.json()
    assert real["dry_run"] is False and real["count"] == 3 and sorted(real["ids"]) == expected

    for rec in past:
        assert await dp.raw_rows(state, "record_contents", "WHERE record_id = :i", i=_db_id(state, rec)) == []
        r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
        assert r.status_code == 410
        tomb = r.json()["tombstone"]
        assert tomb["id"] == rec["id"] and tomb["subject_id"] == subj["id"]
        assert tomb["classification"] == "confidential" and tomb["destroyed_by"] == str(director.id)
        assert tomb["reason"] == f"retention period ended (sweep {real['sweep_id']})"
        (event,) = await dp.events(state, "record.destroy", rec["id"])
        assert event.detail["sweep"] is True and event.detail["sweep_id"] == real["sweep_id"]
        assert (event.rule, event.clause, event.actor_id) == ("retention", "§6.5", director.id)
    (summary,) = await dp.events(state, "retention.sweep")
    # no record count: the record.destroy events count them, for whoever may see each (§3.6)
    assert summary.detail == {"packages": 0, "by": "director"} and summary.resource_id == real["sweep_id"]
    for rec in (future, held):
        r = await client.get(f"/records/{rec['id']}", headers=alice.headers)
        assert r.status_code == 200
    # the next sweep finds nothing more
    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": False})
    assert r.json()["count"] == 0


async def test_legal_hold_blocks_sweep_and_manual_destruction_until_lifted(client, factory, state, clock) -> None:  # type: ignore[no-untyped-def]
    director, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(clock.now() - timedelta(days=1)))
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "subject access dispute"})
    assert r.status_code == 200 and r.json()["legal_hold"] is True
    for person in (manager, director):
        r = await client.delete(f"/records/{rec['id']}", headers=person.headers, params={"reason": "tidy"})
        assert r.status_code == 409 and r.json()["rule"] == "legal-hold" and r.json()["clause"] == "§6.5"
    result = await _sweep(state, clock)
    assert result.count == 0
    assert len(await dp.raw_rows(state, "record_contents", "WHERE record_id = :i", i=_db_id(state, rec))) == 1
    r = await client.post(f"/records/{rec['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": False, "reason": "dispute settled"})
    assert r.status_code == 200 and r.json()["legal_hold"] is False
    result = await _sweep(state, clock)
    assert result.ids == [uuid.UUID(rec["id"])]
    (event,) = await dp.events(state, "record.destroy", rec["id"])
    assert event.actor_id is None and event.detail["sweep"] is True  # the command, not a person


async def test_the_sweep_works_in_batches(client, factory, state, clock) -> None:  # type: ignore[no-untyped-def]
    _, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    ids = []
    for _ in range(5):
        rec = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(clock.now() - timedelta(days=1)))
        ids.append(uuid.UUID(rec["id"]))
    ids.sort()
    result = await _sweep(state, clock, batch_size=2)
    assert result.ids == ids and result.count == 5
    assert await dp.raw_rows(state, "record_contents") == []


@pytest.mark.parametrize("role", ["colleague", "trustee"])
async def test_only_a_director_sweeps(client, factory, state, clock, role) -> None:  # type: ignore[no-untyped-def]
    _, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(clock.now() - timedelta(days=1)))
    person = manager if role == "colleague" else await factory.user("trustee")
    before = await _snapshot(state)
    for dry in (True, False):
        r = await client.post("/retention/sweep", headers=person.headers, json={"dry_run": dry})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert (r.json()["rule"], r.json()["clause"]) == ("retention", "§6.5")
    r = await client.post("/retention/sweep", json={"dry_run": False})
    assert r.status_code == 401
    records, contents, events = await _snapshot(state)
    assert (records, contents) == before[:2]
    # Each refusal is audited, and is all that was written.
    new = [e for e in events if e not in before[2]]
    assert [(str(e["actor_id"]).replace("-", ""), e["action"], e["decision"], e["rule"]) for e in new] == [
        (person.id.hex, "endpoint.denied", "deny", "retention")] * 2


async def test_the_sweep_needs_an_explicit_dry_run_flag(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    for body in ({}, {"dry_run": "perhaps"}, None):
        r = await client.post("/retention/sweep", headers=director.headers, json=body)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_kmm_retention_sweep_command(client, factory, state, settings, clock) -> None:  # type: ignore[no-untyped-def]
    _, manager, alice = await _team(factory)
    subj = await factory.subject(by=alice)
    rec = await _chosen(factory, manager, alice, subj["id"], retention_until=_iso(clock.now() - timedelta(days=2)))
    env = {"KMM_ENV": "test", "DATABASE_URL": settings.database_url, "KMM_SECRETS_FILE": str(settings.secrets_file),
           "KMM_DATABASE_SCHEMA": settings.database_schema or ""}
    if not settings.database_schema:
        env.pop("KMM_DATABASE_SCHEMA")
    runner = CliRunner()
    with dp.restore_keyring(state):
        out = await asyncio.to_thread(runner.invoke, cli, ["retention-sweep", "--dry-run"], env=env)
        assert out.exit_code == 0, out.output
        assert "would destroy 1 record(s)" in out.output and rec["id"] in out.output
        assert len(await dp.raw_rows(state, "record_contents")) == 1
        out = await asyncio.to_thread(runner.invoke, cli, ["retention-sweep"], env=env)
        assert out.exit_code == 0, out.output
        assert "destroyed 1 record(s)" in out.output
    assert await dp.raw_rows(state, "record_contents") == []


async def _sweep(state, clock, **kw):  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as session:
        return await retention.sweep(session, now=clock.now(), actor=None, dry_run=False, **kw)


def _db_id(state, rec) -> object:  # type: ignore[no-untyped-def]
    """The id as the raw SQL parameter for this backend."""
    rid = uuid.UUID(rec["id"])
    return rid.hex if state.settings.is_sqlite else rid
