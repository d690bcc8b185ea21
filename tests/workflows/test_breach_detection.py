"""Detection of unauthorised access (§7.2): three denied reads of non-general records by
one account within 24 hours open one unauthorised_access report by themselves."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.breach_reports import BreachReport, BreachReportEvent
from app.models.records import Record
from app.policy.actor import Actor
from app.workflows.audit.trail import add_event
from app.workflows.breach_reports import detection
from tests.factory import Factory, Person


@pytest.fixture
async def org(factory: Factory, client):
    """director <- manager <- (alice, snoop); alice keeps records snoop may not read."""
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    snoop = await factory.user("colleague", manager=manager)
    subject = await factory.subject(by=alice)
    records = []
    for classification in ("confidential", "sensitive", "confidential", "sensitive", "confidential"):
        rec = await factory.record(by=alice, subject=subject, classification=classification,
                                   content="content-marker-5e1")
        records.append(rec["id"])
    return {"director": director, "manager": manager, "alice": alice, "snoop": snoop, "records": records}


async def deny(client, person: Person, record_id: str) -> None:
    r = await client.get(f"/records/{record_id}", headers=person.headers)
    assert r.status_code == 403, r.text
    assert r.json()["rule"] and "content-marker-5e1" not in r.text


async def reports(state, concerned: Person) -> list[tuple[BreachReport, list[int]]]:
    async with state.sessionmaker() as s:
        rows = (await s.execute(select(BreachReport).where(BreachReport.concerned_user_id == concerned.id)
                                .order_by(BreachReport.created_at))).scalars().all()
        out = []
        for r in rows:
            ids = (await s.execute(select(BreachReportEvent.audit_event_id)
                                   .where(BreachReportEvent.report_id == r.id)
                                   .order_by(BreachReportEvent.audit_event_id))).scalars().all()
            out.append((r, list(ids)))
        return out


async def denial_ids(state, person: Person) -> list[int]:
    async with state.sessionmaker() as s:
        rows = await s.execute(select(AuditEvent.id).where(AuditEvent.actor_id == person.id,
                                                           AuditEvent.action == "record.read",
                                                           AuditEvent.decision == "deny").order_by(AuditEvent.id))
        return list(rows.scalars())


async def test_two_denials_open_nothing(client, state, org):
    for record_id in org["records"][:2]:
        await deny(client, org["snoop"], record_id)
    assert await reports(state, org["snoop"]) == []


async def test_three_denials_open_one_report_handled_by_the_line_manager(client, state, org):
    snoop = org["snoop"]
    for record_id in org["records"][:3]:
        await deny(client, snoop, record_id)
    [(report, evidence)] = await reports(state, snoop)
    assert (report.kind, report.status, report.reporter_id) == ("unauthorised_access", "open", None)
    assert report.handler_id == org["manager"].id
    assert evidence == await denial_ids(state, snoop) and len(evidence) == 3
    # the handler sees the evidence; the account concerned does not know the report exists
    r = await client.get(f"/breach-reports/{report.id}", headers=org["manager"].headers)
    assert r.status_code == 200 and r.json()["evidence_event_ids"] == evidence
    assert (await client.get(f"/breach-reports/{report.id}", headers=snoop.headers)).status_code == 404
    async with state.sessionmaker() as s:
        opened = (await s.execute(select(AuditEvent).where(AuditEvent.action == "breach_report.create"))).scalar_one()
    assert opened.actor_id is None and opened.clause == "§7.2" and opened.detail["audit_event_ids"] == evidence


async def test_a_fourth_denial_adds_evidence_to_the_open_report(client, state, factory, org, clock):
    snoop = org["snoop"]
    for record_id in org["records"][:4]:
        await deny(client, snoop, record_id)
    [(report, evidence)] = await reports(state, snoop)
    assert evidence == await denial_ids(state, snoop) and len(evidence) == 4
    # still one report, even two days later, while it is open
    clock.advance(days=2)
    await factory.login(snoop)
    await deny(client, snoop, org["records"][4])
    [(_, evidence)] = await reports(state, snoop)
    assert len(evidence) == 5


async def test_denials_spread_over_more_than_24_hours_open_nothing(client, state, factory, org, clock):
    snoop = org["snoop"]
    await deny(client, snoop, org["records"][0])
    clock.advance(hours=13)
    await factory.login(snoop)
    await deny(client, snoop, org["records"][1])
    clock.advance(hours=11, minutes=1)  # the first denial is now more than 24 hours old
    await factory.login(snoop)
    await deny(client, snoop, org["records"][2])
    assert await reports(state, snoop) == []
    # one more within 24 hours of the second: now three are
    await deny(client, snoop, org["records"][3])
    [(_, evidence)] = await reports(state, snoop)
    assert evidence == (await denial_ids(state, snoop))[1:]


async def test_denials_of_general_records_do_not_count(client, state, org, clock):
    """A user is never denied a general record (§4.1), so write the events as if they had been."""
    snoop = org["snoop"]
    actor = Actor.for_user(snoop.user)
    general = Record(id=uuid.uuid4(), subject_id=uuid.uuid4(), classification="general", purpose="service_delivery",
                     custodian_id=org["alice"].id)
    async with state.sessionmaker() as s:
        for _ in range(3):
            add_event(s, now=clock.now(), actor=actor, action="record.read", resource_type="record",
                      resource_id=general.id, decision="deny", rule="general", clause="§4.1",
                      detail={"classification": "general"})
        await s.commit()
        await detection.detect_unauthorised_access(s, actor=actor, record=general, action="read",
                                                        now=clock.now())
        # even when the hook is given a non-general record, general denials are not counted
        general.classification = "confidential"
        await detection.detect_unauthorised_access(s, actor=actor, record=general, action="read",
                                                        now=clock.now())
    assert await reports(state, snoop) == []


async def test_other_denied_actions_do_not_count(client, state, org):
    snoop = org["snoop"]
    for record_id in org["records"][:3]:
        r = await client.delete(f"/records/{record_id}", headers=snoop.headers, params={"reason": "x"})
        assert r.status_code == 403
    assert await reports(state, snoop) == []


async def test_an_account_without_a_line_manager_is_handled_by_a_director(client, state, factory, org):
    loner = await factory.user("colleague")
    for record_id in org["records"][:3]:
        await deny(client, loner, record_id)
    [(report, _)] = await reports(state, loner)
    assert report.handler_id == org["director"].id


async def test_after_the_report_closes_three_fresh_denials_open_another(client, state, org):
    snoop, manager = org["snoop"], org["manager"]
    for record_id in org["records"][:3]:
        await deny(client, snoop, record_id)
    [(report, _)] = await reports(state, snoop)
    r = await client.post(f"/breach-reports/{report.id}/finding", headers=manager.headers,
                          json={"finding": "malicious"})
    assert r.status_code == 422  # the service has no reporter to find malicious
    r = await client.post(f"/breach-reports/{report.id}/finding", headers=manager.headers,
                          json={"finding": "substantiated"})
    assert r.status_code == 200 and r.json()["outcome"] == "disciplinary_action"
    # denials already counted do not count again
    await deny(client, snoop, org["records"][3])
    assert len(await reports(state, snoop)) == 1
    await deny(client, snoop, org["records"][4])
    await deny(client, snoop, org["records"][0])
    first, second = await reports(state, snoop)
    assert first[0].status == "closed" and second[0].status == "open"
    assert len(second[1]) == 3 and not set(first[1]) & set(second[1])


async def test_simultaneous_third_denials_open_one_report(client, state, org):
    snoop = org["snoop"]
    for record_id in org["records"][:2]:
        await deny(client, snoop, record_id)
    await asyncio.gather(*(deny(client, snoop, record_id) for record_id in org["records"][2:5]))
    [(report, evidence)] = await reports(state, snoop)
    assert evidence == await denial_ids(state, snoop) and len(evidence) == 5
    async with state.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(BreachReport))).scalar_one() == 1


async def test_a_failing_detection_never_breaks_the_denial(client, state, org, monkeypatch, caplog):
    async def broken(session, user_id, now):
        raise RuntimeError("content-marker-5e1")

    monkeypatch.setattr(detection, "_detect", broken)
    with caplog.at_level(logging.ERROR, logger="kmm.breach_reports"):
        for record_id in org["records"][:3]:
            await deny(client, org["snoop"], record_id)
    assert await reports(state, org["snoop"]) == []
    [entry, *_] = [r for r in caplog.records if r.name == "kmm.breach_reports"]
    assert entry.error == "RuntimeError" and "content-marker-5e1" not in entry.getMessage()
    assert len(await denial_ids(state, org["snoop"])) == 3


async def test_only_denied_reads_by_accounts_are_looked_at(state, org, clock, monkeypatch):
    from app.policy.actor import Actor

    calls: list[uuid.UUID] = []

    async def spy(session, user_id, now):
        calls.append(user_id)

    monkeypatch.setattr(detection, "_detect", spy)
    bot = Actor(id=uuid.uuid4(), kind="client", role=None, scopes=frozenset({"records:read"}))
    person = Actor.for_user(org["snoop"].user)
    async with state.sessionmaker() as s:
        record = await s.get(Record, uuid.UUID(org["records"][0]))
        assert record is not None
        hook = detection.detect_unauthorised_access
        await hook(s, actor=bot, record=record, action="read", now=clock.now())  # a service client
        await hook(s, actor=person, record=record, action="update", now=clock.now())  # not a read
        record.classification = "general"
        await hook(s, actor=person, record=record, action="read", now=clock.now())  # a general record
        assert calls == []
        record.classification = "confidential"
        await hook(s, actor=person, record=record, action="read", now=clock.now())
        assert calls == [person.id]
