"""Stored access-request packages: shredding reaches them (§4.6), they have a retention date
and are swept (§6.5), a director's download of sensitive items is a flagged export (§3.2, §3.5),
and a personnel package holds personnel records only (§3.6)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, col, select

from app.core.crypto import decrypt
from app.models.access_requests import AccessPackageSealed, AccessRequest
from app.policy.actor import Actor
from app.workflows.access_requests import package as package_flow
from tests import dataprot as dp
from tests.factory import Factory, Person
from tests.routers.test_access_requests import (
    PROBLEM,
    _decide,
    _employee_subject,
    _log,
    _record,
    _subject,
    letter,
)


@pytest.fixture
async def people(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    colleague = await factory.user("colleague", manager=manager)
    other = await factory.user("colleague", manager=manager)
    return {"director": director, "manager": manager, "colleague": colleague, "other": other}


async def _fulfilled(client, people, subject: dict, clock, logged_by: str = "colleague", **kw) -> dict:
    director = people["director"]
    made = await _log(client, people[logged_by], letter(subject, clock, **kw))
    assert (await _decide(client, director, made["id"])).status_code == 200
    r = await client.post(f"/access-requests/{made['id']}/fulfil", headers=director.headers)
    assert r.status_code == 200, r.text
    return made


async def _package(client, person: Person, rid: str) -> dict:
    r = await client.get(f"/access-requests/{rid}/package", headers=person.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _stored_plaintexts(state) -> list[bytes]:
    """Everything stored for packages, decrypted with the service's keys, whatever the layout."""
    out: list[bytes] = []
    items = "access_package_items" in SQLModel.metadata.tables
    async with state.sessionmaker() as s:
        for sealed in (await s.execute(select(AccessPackageSealed))).scalars():
            rid = sealed.request_id
            key = state.keyring.unwrap(sealed.key_id, sealed.wrapped_key, aad=package_flow.aad(rid, "key"))
            out.append(decrypt(key, sealed.package_ct, package_flow.aad(rid, "package")))
            if items:
                rows = await s.execute(text("SELECT record_id, item_ct FROM access_package_items "
                                            "WHERE request_id = :r AND item_ct IS NOT NULL"),
                                       {"r": rid.hex if state.settings.is_sqlite else rid})
                for record_id, ct in rows:
                    record_uuid = uuid.UUID(str(record_id)) if not isinstance(record_id, uuid.UUID) else record_id
                    out.append(decrypt(key, bytes(ct), package_flow.item_aad(rid, record_uuid)))
    return out


async def _content_stored(state, marker: str) -> bool:
    return any(marker.encode() in p for p in await _stored_plaintexts(state))


# -- shredding reaches every stored package (§4.6, §6.5) ----------------------------------------


async def test_destroying_a_record_replaces_it_with_its_tombstone_in_every_package(client, factory, people, state,
                                                                                   clock):
    director, colleague, manager = people["director"], people["colleague"], people["manager"]
    sam = await _subject(factory, colleague)
    keep = await _record(factory, colleague, sam, "Sam: contact", "general")
    doomed = await _record(factory, colleague, sam, "Sam: housing notes", "confidential")
    first = await _fulfilled(client, people, sam, clock)
    second = await _fulfilled(client, people, sam, clock)
    assert await _content_stored(state, "content of Sam: housing notes")

    r = await client.delete(f"/records/{doomed['id']}", params={"reason": "no longer needed"},
                            headers=manager.headers)
    assert r.status_code == 200, r.text
    tomb = r.json()

    assert not await _content_stored(state, "content of Sam: housing notes")
    assert not await _content_stored(state, "Sam: housing notes")  # the title too
    assert await _content_stored(state, "content of Sam: contact")
    for made in (first, second):
        r = await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)
        assert r.status_code == 200, r.text
        assert "housing notes" not in r.text
        package = r.json()
        assert [x["id"] for x in package["records"]] == [keep["id"]]
        assert package["destroyed"] == [{
            "id": doomed["id"], "subject_id": sam["id"], "classification": "confidential",
            "destroyed_at": tomb["destroyed_at"], "destroyed_by": str(manager.id), "reason": "no longer needed"}]


async def test_the_retention_sweep_removes_what_it_shreds_from_packages(client, factory, people, state, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    soon = (clock.now() + timedelta(days=2)).isoformat()
    # A date off the schedule is the custodian's line manager's choice (§6.5).
    expiring = await _record(factory, people["manager"], sam, "Sam: benefits letter", "confidential",
                             retention_until=soon, custodian_id=str(colleague.id))
    lasting = await _record(factory, colleague, sam, "Sam: support plan", "confidential")
    made = await _fulfilled(client, people, sam, clock)
    clock.advance(days=3)
    await dp_login(client, director)

    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": False})
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == [expiring["id"]]
    assert not await _content_stored(state, "Sam: benefits letter")
    package = await _package(client, director, made["id"])
    assert [x["id"] for x in package["records"]] == [lasting["id"]]
    assert [(t["id"], t["destroyed_by"]) for t in package["destroyed"]] == [(expiring["id"], str(director.id))]


async def test_a_refused_destroy_leaves_every_package_whole(client, factory, people, state, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    held = await _record(factory, colleague, sam, "Sam: disputed tenancy", "confidential")
    made = await _fulfilled(client, people, sam, clock)
    r = await client.post(f"/records/{held['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "litigation"})
    assert r.status_code == 200
    before = await _stored_plaintexts(state)
    r = await client.delete(f"/records/{held['id']}", params={"reason": "tidy"}, headers=director.headers)
    assert r.status_code == 409 and r.json()["rule"] == "legal-hold"
    assert await _stored_plaintexts(state) == before
    assert [x["id"] for x in (await _package(client, director, made["id"]))["records"]] == [held["id"]]


# -- packages have a retention date and are swept (§6.5) -------------------------------------------


async def dp_login(client, *people: Person) -> None:
    """Access tokens live 15 minutes of the service clock: log in again after moving it."""
    from tests.factory import PASSWORD

    for person in people:
        r = await client.post("/auth/token", data={"username": person.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        person.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_package_is_kept_until_its_retention_date_then_swept(client, factory, people, state, settings, clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    await _record(factory, colleague, sam, "Sam: support plan", "confidential")
    made = await _fulfilled(client, people, sam, clock)
    fulfilled_at = clock.now()
    days = settings.package_retention_days
    package = await _package(client, director, made["id"])
    assert datetime.fromisoformat(package["retention_until"]) == fulfilled_at + timedelta(days=days)
    async with state.sessionmaker() as s:
        sealed = await s.get(AccessPackageSealed, uuid.UUID(made["id"]))
        assert sealed is not None and sealed.retention_until == fulfilled_at + timedelta(days=days)

    # Not yet due: the sweep leaves it.
    clock.advance(days=days - 1)
    await dp_login(client, director)
    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": True})
    assert r.status_code == 200 and (r.json()["package_count"], r.json()["package_ids"]) == (0, [])

    clock.advance(days=2)
    await dp_login(client, director)
    before = await _stored_plaintexts(state)
    events_before = len(await dp.events(state, "access_request.package_destroy"))
    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": True})
    assert r.status_code == 200, r.text
    assert (r.json()["package_count"], r.json()["package_ids"]) == (1, [made["id"]])
    assert r.json()["count"] == 0  # no record is past its date
    assert await _stored_plaintexts(state) == before
    assert len(await dp.events(state, "access_request.package_destroy")) == events_before == 0

    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": False})
    assert r.status_code == 200, r.text
    assert (r.json()["package_count"], r.json()["package_ids"]) == (1, [made["id"]])
    assert await _stored_plaintexts(state) == []
    assert await dp.raw_rows(state, "access_package_items") == []
    (event,) = await dp.events(state, "access_request.package_destroy")
    assert (event.resource_type, event.resource_id, event.rule, event.clause, event.actor_id) == (
        "access_request", made["id"], "retention", "§6.5", director.id)
    (summary,) = await dp.events(state, "retention.sweep")
    assert summary.detail["packages"] == 1

    r = await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)
    assert r.status_code == 410 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["type"].endswith("package-destroyed") and r.json()["clause"] == "§6.5"
    assert "support plan" not in r.text
    r = await client.get(f"/access-requests/{made['id']}", headers=director.headers)
    assert r.status_code == 200 and r.json()["status"] == "fulfilled"  # the request itself stays
    r = await client.post("/retention/sweep", headers=director.headers, json={"dry_run": False})
    assert r.json()["package_count"] == 0


# -- a director's download of sensitive items is a flagged export (§3.2, §3.5) ---------------------


async def test_a_directors_download_of_sensitive_items_is_a_flagged_export_of_each(client, factory, people, state,
                                                                                   clock):
    director, colleague = people["director"], people["colleague"]
    sam = await _subject(factory, colleague)
    sens = await _record(factory, colleague, sam, "Sam: tenancy dispute", "sensitive", access_requester_id=sam["id"])
    conf = await _record(factory, colleague, sam, "Sam: support plan", "confidential")
    # The director may not read the sensitive record directly (§3.2).
    r = await client.get(f"/records/{sens['id']}", headers=director.headers)
    assert r.status_code == 403
    made = await _fulfilled(client, people, sam, clock)
    fulfil_exports = await dp.events(state, "record.export")
    assert all(e.emergency is False for e in fulfil_exports)  # building it shows nobody anything

    package = await _package(client, director, made["id"])
    assert {x["id"] for x in package["records"]} == {sens["id"], conf["id"]}
    seen = {e.id for e in fulfil_exports}
    flagged = [e for e in await dp.events(state, "record.export") if e.id not in seen]
    assert [(e.resource_type, e.resource_id, e.actor_id, e.decision, e.emergency, e.rule, e.clause)
            for e in flagged] == [("record", sens["id"], director.id, "allow", True, "access-request", "§3.5")]
    assert flagged[0].detail == {"access_request_id": made["id"], "classification": "sensitive",
                                 "via": "package_download"}
    assert "tenancy" not in json.dumps(flagged[0].detail)
    # Each download is its own flagged read.
    await _package(client, director, made["id"])
    assert len([e for e in await dp.events(state, "record.export", sens["id"]) if e.emergency]) == 2


async def test_a_refused_download_writes_no_export(client, factory, people, state, clock):
    colleague, manager = people["colleague"], people["manager"]
    me = await _employee_subject(factory, people["director"], colleague)
    await _record(factory, manager, me, "probation review", "personnel", purpose="personnel_administration")
    made = await _fulfilled(client, people, me, clock, logged_by="manager", kind="personnel_access")
    before = [e.id for e in await dp.events(state, "record.export")]
    r = await client.get(f"/access-requests/{made['id']}/package", headers=manager.headers)
    assert r.status_code == 403 and r.json()["rule"] == "director-only"
    assert [e.id for e in await dp.events(state, "record.export")] == before
    # The employee's own download of their personnel package is no director's read: nothing flagged.
    assert (await client.get(f"/access-requests/{made['id']}/package", headers=colleague.headers)).status_code == 200
    assert [e.id for e in await dp.events(state, "record.export")] == before


# -- a personnel package holds personnel records only (§3.6) ---------------------------------------


async def test_a_personnel_package_holds_only_the_employees_personnel_records(client, factory, people, state, clock):
    director, manager, colleague, other = people["director"], people["manager"], people["colleague"], people["other"]
    me = await _employee_subject(factory, director, colleague)
    review = await _record(factory, manager, me, "probation review", "personnel", purpose="personnel_administration")
    gossip = await _record(factory, other, me, "a colleague's note about them", "confidential")
    general = await _record(factory, manager, me, "desk location", "general")
    sensitive = await _record(factory, other, me, "grievance against them", "sensitive", access_requester_id=me["id"])
    made = await _fulfilled(client, people, me, clock, kind="personnel_access")
    r = await client.get(f"/access-requests/{made['id']}/package", headers=colleague.headers)
    assert r.status_code == 200, r.text
    package = r.json()
    assert [x["id"] for x in package["records"]] == [review["id"]]
    assert package["withheld_count"] == 0  # the rest is not asked for, not withheld
    for other_record in (gossip, general, sensitive):
        assert other_record["id"] not in r.text
    for text_ in ("colleague's note", "desk location", "grievance"):
        assert text_ not in r.text
    exports = await dp.events(state, "record.export")
    assert [e.resource_id for e in exports] == [review["id"]]
    async with state.sessionmaker() as s:
        sealed = (await s.execute(select(AccessPackageSealed)
                                  .where(col(AccessPackageSealed.request_id) == uuid.UUID(made["id"])))).scalar_one()
    assert (sealed.record_count, sealed.withheld_count) == (1, 0)


# -- the access history tells who read, and nothing else -------------------------------------------


async def test_the_access_history_shows_no_denied_reads_or_breach_reports(client, factory, people, state, clock):
    director, colleague, manager, other = people["director"], people["colleague"], people["manager"], people["other"]
    sam = await _subject(factory, colleague)
    recs = [await _record(factory, colleague, sam, f"Sam: note {n}", "confidential") for n in range(3)]
    assert (await client.get(f"/records/{recs[0]['id']}", headers=manager.headers)).status_code == 200
    for rec in recs:  # three denials open an unauthorised-access report about `other` (§7.2)
        assert (await client.get(f"/records/{rec['id']}", headers=other.headers)).status_code == 403
    r = await client.get("/breach-reports", headers=director.headers)
    assert r.status_code == 200, r.text
    reports = [b for b in r.json()["items"] if b["kind"] == "unauthorised_access"]
    assert len(reports) == 1
    made = await _fulfilled(client, people, sam, clock)
    r = await client.get(f"/access-requests/{made['id']}/package", headers=director.headers)
    assert r.status_code == 200, r.text
    history = r.json()["access_history"]
    assert [(h["record_id"], h["actor_id"]) for h in history] == [(recs[0]["id"], str(manager.id))]
    assert str(other.id) not in r.text and reports[0]["id"] not in r.text
    assert "unauthorised" not in r.text and "breach" not in r.text


@pytest.mark.postgres_only
async def test_a_record_shredded_while_its_package_is_being_built_leaves_no_content(client, factory, people, state,
                                                                                    clock):
    """Fulfilment locks the records it packs; the shredding waits, then clears the new items."""
    director, colleague, manager = people["director"], people["colleague"], people["manager"]
    sam = await _subject(factory, colleague)
    doomed = await _record(factory, colleague, sam, "Sam: racing notes", "confidential")
    made = await _log(client, colleague, letter(sam, clock))
    assert (await _decide(client, director, made["id"])).status_code == 200
    async with state.sessionmaker() as s:
        request = await s.get(AccessRequest, uuid.UUID(made["id"]))
        assert request is not None
        package = await package_flow.build_package(
            s, request=request, actor=Actor.for_user(director.user), now=clock.now(), keyring=state.keyring,
            retention_until=clock.now() + timedelta(days=1))
        sealed, items = package_flow.seal_package(state.keyring, package)
        s.add(sealed)
        await s.flush()
        s.add_all(items)
        await s.flush()
        shredding = asyncio.create_task(client.delete(f"/records/{doomed['id']}", params={"reason": "done"},
                                                      headers=manager.headers))
        await asyncio.sleep(0.5)  # the shredding reaches the record's lock and waits
        assert not shredding.done()
        await s.commit()
    r = await shredding
    assert r.status_code == 200, r.text
    assert not await _content_stored(state, "racing notes")


async def test_kmm_retention_sweep_destroys_expired_packages(client, factory, people, state, settings, clock):
    from typer.testing import CliRunner

    from app.cli import cli
    from tests.databases import env_for

    sam = await _subject(factory, people["colleague"])
    await _record(factory, people["colleague"], sam, "Sam: support plan", "confidential")
    made = await _fulfilled(client, people, sam, clock)
    rid = uuid.UUID(made["id"])
    async with state.engine.begin() as conn:  # the command runs on the real clock: date the package back
        await conn.execute(text("UPDATE access_request_packages SET retention_until = :at WHERE request_id = :r"),
                           {"at": datetime.now(UTC) - timedelta(days=1), "r": rid.hex if settings.is_sqlite else rid})
    env = {**env_for(settings), "KMM_ENV": "test"}
    runner = CliRunner()
    with dp.restore_keyring(state):
        out = await asyncio.to_thread(runner.invoke, cli, ["retention-sweep", "--dry-run"], env=env)
        assert out.exit_code == 0, out.output
        assert "would destroy 1 access-request package(s)" in out.output and made["id"] in out.output
        assert len(await dp.raw_rows(state, "access_request_packages")) == 1
        out = await asyncio.to_thread(runner.invoke, cli, ["retention-sweep"], env=env)
        assert out.exit_code == 0, out.output
        assert "destroyed 1 access-request package(s)" in out.output
    assert await dp.raw_rows(state, "access_request_packages") == []
