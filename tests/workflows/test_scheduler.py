"""Scheduled work inside `kmm serve`: one runner per job across processes, intervals, off switches,
access-request flags (once each), review reminders and the retention sweep. Housekeeping's
own tests are in test_housekeeping.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from app.core.config import Settings
from app.core.state import AppState
from app.models.webhooks import ScheduledJob, WebhookDelivery, WebhookEvent
from app.workflows import scheduler
from tests import dataprot as dp
from tests.factory import Factory, Person


def _work(state: AppState, name: str) -> scheduler.ScheduledWork:
    [work] = [w for w in scheduler.jobs(state.settings) if w.name == name]
    return work


async def _events(state: AppState, kind: str) -> list[dict]:  # type: ignore[type-arg]
    async with state.sessionmaker() as s:
        rows = (await s.execute(select(WebhookEvent.payload).where(col(WebhookEvent.kind) == kind)
                                .order_by(col(WebhookEvent.created_at)))).scalars()
        return [json.loads(p)["data"] for p in rows]


async def _deliveries(state: AppState) -> list[str]:
    async with state.sessionmaker() as s:
        return list((await s.execute(select(WebhookDelivery.kind).order_by(col(WebhookDelivery.kind)))).scalars())


async def _job(state: AppState, name: str) -> ScheduledJob | None:
    async with state.sessionmaker() as s:
        row = await s.get(ScheduledJob, name)
        s.expunge_all()
        return row


@pytest.fixture
async def team(factory: Factory) -> dict[str, Person]:
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    return {"director": director, "manager": manager, "alice": alice}


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "seconds"), [
    ("off", None), ("OFF", None), ("false", None), ("0", None), ("90", 90.0), ("90s", 90.0), ("15m", 900.0),
    ("1h", 3600.0), ("1d", 86400.0), ("1.5h", 5400.0),
])
def test_intervals_are_seconds_with_units_or_off(monkeypatch, given, seconds):
    monkeypatch.setenv("KMM_SCHEDULE_RETENTION_SWEEP", given)
    assert Settings().schedule_retention_sweep == seconds


@pytest.mark.parametrize("given", ["soon", "1w", "h"])
def test_a_malformed_interval_stops_the_service(monkeypatch, given):
    monkeypatch.setenv("KMM_SCHEDULE_REVIEW_REMINDERS", given)
    with pytest.raises(ValidationError, match="not an interval"):
        Settings()


def test_defaults_flag_and_remind_but_never_shred_unasked():
    """Shredding is for good (§4.6): the scheduled sweep runs only once an operator turns it on,
    after a dry run (`kmm retention-sweep --dry-run`) shows what it would destroy."""
    s = Settings()
    assert s.scheduler is True
    assert (s.schedule_retention_sweep, s.schedule_access_request_flags, s.schedule_review_reminders,
            s.schedule_housekeeping) == (None, 3600.0, 86400.0, 86400.0)


# -- one runner ------------------------------------------------------------------------------------


async def test_one_process_runs_a_job_and_the_next_run_waits_for_its_interval(client, state, clock):
    now = clock.now()
    won = await asyncio.gather(*(scheduler.claim(state, name="review_reminders", interval=3600, holder=f"p{i}",
                                                 now=now) for i in range(4)))
    assert sorted(won) == [False, False, False, True]
    holder = (await _job(state, "review_reminders")).lease_holder  # type: ignore[union-attr]
    await scheduler.release(state, name="review_reminders", holder=holder, outcome="ok")  # type: ignore[arg-type]
    # Free again, but not due: it started less than an interval ago.
    assert not await scheduler.claim(state, name="review_reminders", interval=3600, holder="p9", now=now)
    assert not await scheduler.claim(state, name="review_reminders", interval=3600, holder="p9",
                                     now=now + timedelta(seconds=3599))
    assert await scheduler.claim(state, name="review_reminders", interval=3600, holder="p9",
                                 now=now + timedelta(seconds=3600))


async def test_a_dead_runner_s_lease_runs_out_before_another_takes_the_job(client, state, clock):
    now = clock.now()
    lease = state.settings.scheduler_lease_seconds
    assert await scheduler.claim(state, name="retention_sweep", interval=60, holder="dead", now=now)
    # The holder dies without releasing: the job stays taken until its lease ends, though due.
    later = now + timedelta(seconds=lease - 1)
    assert not await scheduler.claim(state, name="retention_sweep", interval=60, holder="alive", now=later)
    assert await scheduler.claim(state, name="retention_sweep", interval=60, holder="alive",
                                 now=now + timedelta(seconds=lease + 1))
    assert (await _job(state, "retention_sweep")).lease_holder == "alive"  # type: ignore[union-attr]


async def test_two_replicas_run_each_job_once(client, state, settings, clock, tmp_path):
    """Two service processes' schedulers on one database, ticking fast: every job runs once."""
    fast = {"scheduler_tick_seconds": 0.02, "schedule_retention_sweep": "1h", "schedule_access_request_flags": "1h",
            "schedule_review_reminders": "1h", "schedule_housekeeping": "1h"}
    replicas = [AppState.build(dp.settings_with(settings, **fast), clock=clock) for _ in range(2)]
    try:
        tasks = [asyncio.create_task(scheduler.run_scheduler(r)) for r in replicas]
        # Until every job has run (however slow the machine), then ten more ticks of both.
        for _ in range(3000):
            if len(await dp.events(state, "scheduler.run")) >= len(scheduler.jobs(replicas[0].settings)):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for r in replicas:
            await r.rows.close()
            await r.engine.dispose()
    runs = await dp.events(state, "scheduler.run")
    names = ["access_request_flags", "housekeeping", "retention_sweep", "review_reminders"]
    assert sorted(e.resource_id for e in runs) == names
    assert len(await dp.events(state, "housekeeping.run")) == 1
    for name in names:
        job = await _job(state, name)
        assert job is not None and job.last_outcome == "ok" and job.lease_holder is None


async def test_a_scheduler_stopped_mid_job_lets_the_job_end_its_transaction(client, state, settings, clock,
                                                                            monkeypatch):
    """Cancelled while a job works (the process stopping), the pass ends what it is doing: the
    job's work and its audit event commit, its lease is released, and no connection is left
    holding a transaction (on SQLite the one write lock) for the next writer."""
    started = asyncio.Event()

    async def slow(session, now, settings):  # type: ignore[no-untyped-def]
        started.set()
        await session.execute(select(ScheduledJob.name))  # a transaction is open
        await asyncio.sleep(0.3)
        return {"done": 1}

    monkeypatch.setattr(scheduler, "jobs", lambda s: [scheduler.ScheduledWork("review_reminders", slow, 3600.0)])
    replica = AppState.build(dp.settings_with(settings, scheduler_tick_seconds=0.01), clock=clock)
    try:
        task = asyncio.create_task(scheduler.run_scheduler(replica))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await replica.rows.close()
        await replica.engine.dispose()
    [run] = await dp.events(state, "scheduler.run")
    assert run.detail == {"done": 1}
    job = await _job(state, "review_reminders")
    assert job is not None and job.last_outcome == "ok" and job.lease_holder is None


async def test_off_switches(client, state, settings, clock):
    off = AppState.build(dp.settings_with(settings, schedule_retention_sweep="off"), clock=clock)
    none = AppState.build(dp.settings_with(settings, scheduler=False, scheduler_tick_seconds=0.01), clock=clock)
    try:
        assert await scheduler.run_job(off, _work(off, "retention_sweep"), holder="h") is None
        await asyncio.wait_for(scheduler.run_scheduler(none), 1)  # returns at once: nothing scheduled
    finally:
        for r in (off, none):
            await r.rows.close()
            await r.engine.dispose()
    assert await dp.events(state, "scheduler.run") == [] and await _job(state, "retention_sweep") is None


async def test_a_failing_job_releases_its_lease_and_says_so(client, state, monkeypatch):
    async def broken(session, now, settings):  # type: ignore[no-untyped-def]
        raise RuntimeError("content that must not be logged")

    work = scheduler.ScheduledWork("review_reminders", broken, 60.0)
    assert await scheduler.run_job(state, work, holder="h") is None
    job = await _job(state, "review_reminders")
    assert job is not None and job.last_outcome == "error: RuntimeError" and job.lease_holder is None


# -- the jobs ---------------------------------------------------------------------------------------


async def _request(client, clock, person: Person, subject: dict, days_ago: int) -> dict:  # type: ignore[type-arg]
    r = await client.post("/access-requests", headers=person.headers, json={
        "kind": "subject_access", "subject_id": subject["id"], "requester_subject_id": subject["id"],
        "signed_by": subject["name"], "signatory_capacity": "individual", "in_writing": True,
        "letter_reference": f"L-{days_ago}",  # one letter is one request (§3.4)
        "received_at": (clock.now() - timedelta(days=days_ago)).isoformat()})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_access_requests_are_flagged_due_soon_then_overdue_once_each(client, state, clock, factory, team):
    director, alice = team["director"], team["alice"]
    r = await client.post("/webhooks", headers=director.headers, json={
        "url": "https://hooks.kmm.example/h", "events": ["access_request.due_soon", "access_request.overdue"]})
    assert r.status_code == 201
    subj = await factory.subject(by=alice)
    soon = await _request(client, clock, alice, subj, days_ago=12)  # due in 2 days
    later = await _request(client, clock, alice, subj, days_ago=5)  # due in 9 days
    withdrawn = await _request(client, clock, alice, subj, days_ago=13)
    r = await client.post(f"/access-requests/{withdrawn['id']}/decision", headers=director.headers,
                          json={"approve": False, "reason": "not signed by the subject"})
    assert r.status_code == 200, r.text
    work = _work(state, "access_request_flags")

    assert await scheduler.run_job(state, work, holder="h") == {"overdue": 0, "due_soon": 1}
    assert await _events(state, "access_request.due_soon") == [
        {"access_request_id": soon["id"], "kind": "subject_access", "due_at": soon["due_at"]}]
    clock.advance(hours=2)
    assert await scheduler.run_job(state, work, holder="h") == {"overdue": 0, "due_soon": 0}
    clock.advance(days=3)  # the first is overdue now
    assert await scheduler.run_job(state, work, holder="h") == {"overdue": 1, "due_soon": 0}
    clock.advance(days=4)  # the second is due in 2 days
    assert await scheduler.run_job(state, work, holder="h") == {"overdue": 0, "due_soon": 1}
    clock.advance(days=3)
    assert await scheduler.run_job(state, work, holder="h") == {"overdue": 1, "due_soon": 0}
    clock.advance(days=1)
    assert await scheduler.run_job(state, work, holder="h") == {"overdue": 0, "due_soon": 0}
    assert [e["access_request_id"] for e in await _events(state, "access_request.overdue")] == [
        soon["id"], later["id"]]
    assert await _deliveries(state) == ["access_request.due_soon"] * 2 + ["access_request.overdue"] * 2
    flags = await dp.events(state, "access_request.overdue")
    assert [e.resource_id for e in flags] == [soon["id"], later["id"]]
    assert all(e.actor_id is None and e.clause == "§3.4" for e in flags)
    assert withdrawn["id"] not in json.dumps(await _events(state, "access_request.overdue"))


async def test_review_reminders_once_per_review_date(client, factory, state, clock, team):
    director, alice = team["director"], team["alice"]
    r = await client.post("/webhooks", headers=director.headers, json={
        "url": "https://hooks.kmm.example/h", "events": ["record.review_due"]})
    assert r.status_code == 201
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subj, title="Secret title", content="secret content",
                               review_due=(clock.now() + timedelta(days=1)).isoformat())
    await factory.record(by=alice, subject=subj)  # reviewed in a year
    work = _work(state, "review_reminders")
    assert await scheduler.run_job(state, work, holder="h") == {"count": 0}
    clock.advance(days=2)
    assert await scheduler.run_job(state, work, holder="h") == {"count": 1}
    [notice] = await _events(state, "record.review_due")
    assert notice == {"record_id": rec["id"], "classification": "confidential", "review_due": rec["review_due"]}
    clock.advance(days=1, seconds=1)
    assert await scheduler.run_job(state, work, holder="h") == {"count": 0}  # once per review date
    assert await _deliveries(state) == ["record.review_due"]
    runs = [e for e in await dp.events(state, "scheduler.run") if e.resource_id == "review_reminders"]
    assert len(runs) == 3 and all(run.clause == "§6.4" for run in runs)
    # No count: set against a director's delivery log, it would tell them that a record kept
    # from them (their own personnel file, §3.6) came due.
    assert [run.detail for run in runs] == [{}, {}, {}]


async def test_the_scheduled_sweep_destroys_what_is_past_retention(client, factory, state, clock, team):
    manager, alice = team["manager"], team["alice"]
    subj = await factory.subject(by=alice)
    rec = await factory.record(by=manager, subject=subj, custodian_id=str(alice.id),
                               retention_until=(clock.now() + timedelta(days=1)).isoformat())
    clock.advance(days=2)
    off = _work(state, "retention_sweep")
    assert await scheduler.run_job(state, off, holder="h") is None  # off unless turned on
    turned_on = dataclasses.replace(off, interval=86400.0)
    result = await scheduler.run_job(state, turned_on, holder="h")
    assert result is not None and set(result) == {"sweep_id", "packages"} and result["packages"] == 0
    [destroyed] = await dp.events(state, "record.destroy", rec["id"])
    assert destroyed.actor_id is None and destroyed.detail["sweep"] is True
    assert destroyed.detail["sweep_id"] == result["sweep_id"]  # no record count in the run's event (§3.6)
