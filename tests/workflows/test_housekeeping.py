"""Housekeeping (§6.5 "not kept longer than necessary"): what the service keeps only for a while
goes once it has been kept long enough, and what is still needed stays: pending deliveries,
scheduled notices, unexpired idempotency keys, the login attempts a lock reads, live sessions.
Batches of their own transactions; one audit event of counts; the scheduled job, `kmm prune`
and the settings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event, func, update
from sqlmodel import SQLModel, col, select
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings
from app.core.state import AppState
from app.models.audit import AuditEvent
from app.models.auth import AuthSession, LoginAttempt, RefreshToken
from app.models.idempotency import IdempotencyKey
from app.models.webhooks import (
    DeliveryStatus,
    ScheduledJob,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventKind,
)
from app.workflows import housekeeping, scheduler
from app.workflows.auth import email_key
from tests import dataprot as dp
from tests.databases import env_for
from tests.factory import Factory, Person

TABLES = list(housekeeping.TABLES)


def _counts(**given: int) -> dict[str, int]:
    return {table: given.get(table, 0) for table in TABLES}


async def _prune(state: AppState, now: datetime, *, dry_run: bool = False, batch_size: int = housekeeping.BATCH,
                 **settings: Any) -> dict[str, int]:
    s = dp.settings_with(state.settings, **settings) if settings else state.settings
    async with state.sessionmaker() as session:
        return await housekeeping.prune(session, now=now, settings=s, dry_run=dry_run, batch_size=batch_size)


async def _ids(state: AppState, model: type[SQLModel]) -> set[Any]:
    async with state.sessionmaker() as s:
        return set((await s.execute(select(model.id))).scalars())  # type: ignore[attr-defined]


async def _count(state: AppState, model: type[SQLModel]) -> int:
    async with state.sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def _add(state: AppState, *rows: SQLModel) -> None:
    async with state.sessionmaker() as s:
        for row in rows:  # one at a time: the deliveries' foreign keys name the events before them
            s.add(row)
            await s.flush()
        await s.commit()


def _work(state: AppState, name: str) -> scheduler.ScheduledWork:
    [work] = [w for w in scheduler.jobs(state.settings) if w.name == name]
    return work


# -- webhook deliveries, their attempts and events --------------------------------------------


@pytest.fixture
async def hook(client, factory: Factory) -> uuid.UUID:
    director = await factory.user("director")
    r = await client.post("/webhooks", headers=director.headers, json={
        "url": "https://hooks.kmm.example/h", "events": ["disclosure.raised", "record.review_due"]})
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


def _event(made: datetime, *, occurrence: datetime | None = None) -> WebhookEvent:
    kind = WebhookEventKind.record_review_due if occurrence else WebhookEventKind.disclosure_raised
    return WebhookEvent(kind=kind, resource_id=uuid.uuid4(), occurrence_at=occurrence, payload="{}", created_at=made)


def _delivery(hook: uuid.UUID, ev: WebhookEvent, status: DeliveryStatus, *, made: datetime,
              last_tried: datetime | None = None, attempts: int = 0) -> list[SQLModel]:
    """A delivery of ``ev`` and its ``attempts`` (the last at ``last_tried``)."""
    last_tried = last_tried or made
    d = WebhookDelivery(subscription_id=hook, event_id=ev.id, kind=ev.kind, status=status, attempts=attempts,
                        created_at=made, next_attempt_at=last_tried,
                        delivered_at=last_tried if status == DeliveryStatus.delivered else None)
    return [d, *(WebhookAttempt(delivery_id=d.id, attempt=n, at=last_tried, status_code=500 if n < attempts else 200)
                 for n in range(1, attempts + 1))]


async def test_finished_deliveries_go_after_the_log_days_with_their_attempts_then_their_events(
        client, state, clock, hook):
    now = clock.now()
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    gone_events = [_event(old) for _ in range(3)]
    delivered, failed, cancelled = (
        _delivery(hook, gone_events[0], DeliveryStatus.delivered, made=old, attempts=2),
        _delivery(hook, gone_events[1], DeliveryStatus.failed, made=old, attempts=8),
        _delivery(hook, gone_events[2], DeliveryStatus.cancelled, made=old),  # never tried
    )
    # Still needed: a pending delivery (retrying, or new), a recent one, one made long ago but
    # retried until lately, a delivery left of an event, and scheduled notices.
    stuck, new, lately, shared, notice = (_event(old), _event(now), _event(old), _event(old),
                                          _event(old, occurrence=old))
    kept = [
        *_delivery(hook, stuck, DeliveryStatus.pending, made=old, attempts=3),
        *_delivery(hook, new, DeliveryStatus.pending, made=now),
        *_delivery(hook, lately, DeliveryStatus.failed, made=now - timedelta(days=40), last_tried=recent, attempts=8),
        *_delivery(hook, shared, DeliveryStatus.failed, made=old, last_tried=recent, attempts=8),
    ]
    gone_with_kept_event = [*_delivery(hook, shared, DeliveryStatus.delivered, made=old, attempts=1),
                            *_delivery(hook, notice, DeliveryStatus.delivered, made=old, attempts=1)]
    await _add(state, *gone_events, stuck, new, lately, shared, notice, *delivered, *failed, *cancelled, *kept,
               *gone_with_kept_event)
    kept_deliveries = {r.id for r in kept if isinstance(r, WebhookDelivery)}
    attempts_before = await _count(state, WebhookAttempt)

    expected = _counts(webhook_attempts=2 + 8 + 1 + 1, webhook_deliveries=5, webhook_events=3)
    assert await _prune(state, now, dry_run=True) == expected
    assert await _count(state, WebhookAttempt) == attempts_before  # a dry run changes nothing
    assert await _prune(state, now) == expected
    assert await _ids(state, WebhookDelivery) == kept_deliveries
    assert await _ids(state, WebhookEvent) == {e.id for e in (stuck, new, lately, shared, notice)}
    assert await _count(state, WebhookAttempt) == 3 + 8 + 8
    assert await _prune(state, now) == _counts()  # nothing more to do


async def test_a_scheduled_notice_is_still_made_only_once_after_housekeeping(client, factory, state, clock, hook):
    """The once-only rule reads the notices: housekeeping removes their deliveries, never them."""
    alice = await factory.user("colleague")
    subj = await factory.subject(by=alice)
    await factory.record(by=alice, subject=subj, review_due=(clock.now() + timedelta(days=1)).isoformat())
    clock.advance(days=2)
    assert await scheduler.run_job(state, _work(state, "review_reminders"), holder="h") == {"count": 1}
    async with state.sessionmaker() as s:  # delivered, as the delivery worker records it
        await s.execute(update(WebhookDelivery).values(status=DeliveryStatus.delivered, attempts=1))
        await s.commit()
    clock.advance(days=state.settings.webhook_log_days + 1)
    counts = await scheduler.run_job(state, _work(state, "housekeeping"), holder="h")
    assert counts is not None and counts["webhook_deliveries"] == 1 and counts["webhook_events"] == 0
    assert await _count(state, WebhookDelivery) == 0 and await _count(state, WebhookEvent) == 1
    clock.advance(days=1)  # a day later, and the review reminders run again
    assert await scheduler.run_job(state, _work(state, "review_reminders"), holder="h") == {"count": 0}
    assert await _count(state, WebhookEvent) == 1


# -- idempotency keys -------------------------------------------------------------------------


async def test_expired_idempotency_keys_go_and_a_retry_inside_the_window_still_replays(client, factory, state, clock):
    alice = await factory.user("colleague")
    subj = await factory.subject(by=alice)
    bodies = {k: {"subject_id": subj["id"], "title": f"Note {k}", "content": "c", "classification": "confidential",
                  "purpose": "service_delivery"} for k in ("early", "later")}

    async def post(key: str) -> Any:
        return await client.post("/records", json=bodies[key], headers={**alice.headers, "Idempotency-Key": key})

    first = await post("early")
    clock.advance(hours=2)
    assert (await factory.login(alice)).status_code == 200  # a fresh access token
    second = await post("later")
    assert first.status_code == second.status_code == 201
    clock.advance(hours=state.settings.idempotency_key_hours - 1)  # "early" has expired, "later" has not
    assert await _prune(state, clock.now()) == _counts(idempotency_keys=1)
    async with state.sessionmaker() as s:
        assert list((await s.execute(select(IdempotencyKey.key))).scalars()) == ["later"]
    assert (await factory.login(alice)).status_code == 200  # the access token has expired meanwhile
    again = await post("later")
    assert again.status_code == 201 and again.headers["idempotency-replayed"] == "true"
    assert again.json()["id"] == second.json()["id"]
    anew = await post("early")  # as without housekeeping: an expired key replays nothing
    assert anew.status_code == 201 and "idempotency-replayed" not in anew.headers
    assert anew.json()["id"] != first.json()["id"]


# -- login attempts --------------------------------------------------------------------------


async def test_old_login_attempts_go_and_a_lock_in_force_stays_in_force(client, factory, state, clock):
    p = await factory.user("colleague", login=False)
    key, now = email_key(state, p.email), clock.now()
    threshold = state.settings.lockout_threshold
    # Locked: threshold wrong passwords (from addresses under their own throttle) within the window.
    lock = [LoginAttempt(user_id=p.id, email_key=key, client_address=f"10.3.{n}.1", outcome="failed",
                         at=now - timedelta(minutes=10) + timedelta(seconds=n)) for n in range(threshold)]
    old = [LoginAttempt(user_id=p.id, email_key=key, client_address="10.4.0.1", outcome=outcome,
                        at=now - timedelta(days=2, minutes=n)) for n, outcome in enumerate(("failed", "success") * 3)]
    await _add(state, *lock, *old)

    assert await _prune(state, now, login_attempts_days=1) == _counts(login_attempts=6)
    assert await _ids(state, LoginAttempt) == {a.id for a in lock}
    r = await factory.login(p)  # the right password, and still locked
    assert r.status_code == 429, r.text
    assert r.json()["rule"] == "lockout"


def test_login_attempts_are_kept_at_least_as_long_as_the_lockout_reads_them(monkeypatch):
    monkeypatch.setenv("KMM_LOCKOUT_MINUTES", str(2 * 24 * 60))  # a two-day lock, counted over 15 minutes
    monkeypatch.setenv("KMM_LOGIN_ATTEMPTS_DAYS", "2")
    with pytest.raises(ValidationError, match=r"KMM_LOGIN_ATTEMPTS_DAYS must be at least 3") as caught:
        Settings()
    assert "2895 minutes" in str(caught.value)
    monkeypatch.setenv("KMM_LOGIN_ATTEMPTS_DAYS", "3")
    s = Settings()
    assert s.lockout_horizon == timedelta(days=2, minutes=15)
    assert housekeeping.Cutoffs.at(datetime(2030, 1, 10), s).login_attempts == datetime(2030, 1, 7)


# -- sessions --------------------------------------------------------------------------------


async def _sessions(state: AppState, person: Person) -> set[uuid.UUID]:
    async with state.sessionmaker() as s:
        return set((await s.execute(select(AuthSession.id).where(col(AuthSession.user_id) == person.id))).scalars())


async def _logout(client, person: Person) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/auth/logout", headers=person.headers)).status_code in (200, 204)


async def test_sessions_that_ended_long_ago_go_with_their_refresh_tokens_and_live_ones_stay(
        client, factory, state, clock):
    days = {"login_attempts_days": 1}
    max_age = state.settings.session_max_days
    lifetime_over = await factory.user("colleague")  # never logged out: ends at its absolute lifetime
    revoked_early = await factory.user("colleague")
    await _logout(client, revoked_early)
    clock.advance(days=15)
    revoked_mid = await factory.user("colleague")
    await _logout(client, revoked_mid)
    clock.advance(days=max_age - 15 + 2)  # the first ended two days ago; revoked_mid's tokens have expired
    token_unexpired = await factory.user("colleague")  # revoked, but its refresh token is good for days
    await _logout(client, token_unexpired)
    clock.advance(days=5)
    revoked_lately = await factory.user("colleague")
    await _logout(client, revoked_lately)
    clock.advance(hours=12)
    live = await factory.user("colleague")
    logged_out = {*(await _sessions(state, revoked_early)), *(await _sessions(state, revoked_mid))}
    gone = logged_out | await _sessions(state, lifetime_over)
    kept = await _ids(state, AuthSession) - gone
    assert len(gone) == 3 and len(kept) == 3
    audit_before = await _count(state, AuditEvent)

    expected = _counts(auth_sessions=3, refresh_tokens=3)
    assert await _prune(state, clock.now(), dry_run=True, **days) == expected
    assert await _prune(state, clock.now(), **days) == expected
    assert await _ids(state, AuthSession) == kept
    async with state.sessionmaker() as s:
        tokens = set((await s.execute(select(RefreshToken.session_id))).scalars())
    assert tokens == kept
    # Audit events are never touched: the logouts that name the deleted sessions are all there.
    assert await _count(state, AuditEvent) == audit_before + 1
    assert {e.resource_id for e in await dp.events(state, "auth.logout")} >= {str(sid) for sid in logged_out}
    # The live session still works; the revoked ones still fail.
    assert (await client.get("/users/me", headers=live.headers)).status_code == 200
    assert (await client.post("/auth/refresh", json={"refresh_token": live.refresh_token})).status_code == 200
    r = await client.post("/auth/refresh", json={"refresh_token": token_unexpired.refresh_token})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # Once its refresh token has expired, that session goes too.
    clock.advance(days=state.settings.refresh_token_days, hours=1)
    assert (await _prune(state, clock.now(), **days))["auth_sessions"] == 2  # and revoked_lately's
    assert await _sessions(state, token_unexpired) == set()


# -- the run ---------------------------------------------------------------------------------


async def test_a_run_is_one_audit_event_of_counts_only(client, factory, state, clock):
    p = await factory.user("colleague", login=False)
    now = clock.now()
    await _add(state, *(LoginAttempt(user_id=p.id, email_key="k" * 64, client_address="10.5.0.1", outcome="failed",
                                     at=now - timedelta(days=40)) for _ in range(2)))
    assert await _prune(state, now) == _counts(login_attempts=2)
    [run] = await dp.events(state, "housekeeping.run")
    assert run.detail == _counts(login_attempts=2)
    assert (run.actor_id, run.rule, run.clause, run.decision) == (None, "scheduler", "§6.5", "allow")
    await _prune(state, now, dry_run=True)
    assert len(await dp.events(state, "housekeeping.run")) == 1  # a dry run writes nothing


@contextmanager
def _statements(state: AppState) -> Iterator[list[str]]:
    """Every DELETE the engine runs and every commit, in order."""
    seen: list[str] = []
    engine = state.engine.sync_engine

    def on_execute(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("DELETE"):
            seen.append(statement.split()[2].split(".")[-1].strip('"'))  # DELETE FROM [schema.]<table>

    def on_commit(conn):  # type: ignore[no-untyped-def]
        seen.append("COMMIT")

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


async def test_rows_go_in_batches_each_its_own_transaction(client, factory, state, clock, hook):
    p = await factory.user("colleague", login=False)
    now, old = clock.now(), clock.now() - timedelta(days=40)
    events = [_event(old) for _ in range(3)]
    rows = [d for ev in events for d in _delivery(hook, ev, DeliveryStatus.delivered, made=old, attempts=2)]
    await _add(state, *events, *rows, *(LoginAttempt(user_id=p.id, email_key="k" * 64, client_address="10.6.0.1",
                                                     outcome="failed", at=old) for _ in range(5)))
    with _statements(state) as seen:
        counts = await _prune(state, now, batch_size=2)
    assert counts == _counts(webhook_attempts=6, webhook_deliveries=3, webhook_events=3, login_attempts=5)
    deletes = [s for s in seen if s != "COMMIT"]
    # Children first, and each batch of at most 2 committed before the next begins.
    assert deletes == ["webhook_attempts", "webhook_deliveries"] * 2 + ["webhook_events"] * 2 + ["login_attempts"] * 3
    assert seen[-1] == "COMMIT"
    batches = [b.split() for b in " ".join(seen).split("COMMIT")]
    assert [b for b in batches if b] == [
        ["webhook_attempts", "webhook_deliveries"], ["webhook_attempts", "webhook_deliveries"],
        ["webhook_events"], ["webhook_events"], ["login_attempts"], ["login_attempts"], ["login_attempts"]]
    assert await _count(state, LoginAttempt) == 0 and await _count(state, WebhookEvent) == 0


# -- the scheduled job, the command, the settings ----------------------------------------------


async def test_housekeeping_is_a_daily_job_that_the_setting_turns_off(client, factory, state, settings, clock):
    work = _work(state, "housekeeping")
    assert work.interval == 86400.0 and scheduler.CLAUSES["housekeeping"] == "§6.5"
    off = AppState.build(dp.settings_with(settings, schedule_housekeeping="off"), clock=clock)
    try:
        assert _work(off, "housekeeping").interval is None
        assert await scheduler.run_job(off, _work(off, "housekeeping"), holder="h") is None
    finally:
        await off.rows.close()
        await off.engine.dispose()
    assert await dp.events(state, "housekeeping.run") == []
    p = await factory.user("colleague", login=False)
    await _add(state, LoginAttempt(user_id=p.id, email_key="k" * 64, client_address="10.7.0.1", outcome="failed",
                                   at=clock.now() - timedelta(days=31)))
    assert await scheduler.run_job(state, work, holder="h") == _counts(login_attempts=1)
    [run] = await dp.events(state, "scheduler.run", "housekeeping")
    assert run.detail == _counts(login_attempts=1) and run.clause == "§6.5"
    async with state.sessionmaker() as s:
        job = await s.get(ScheduledJob, "housekeeping")
        assert job is not None and job.last_outcome == "ok"


@pytest.mark.parametrize(("variable", "value", "field"), [
    ("KMM_SCHEDULE_HOUSEKEEPING", "weekly", "schedule_housekeeping"),
    ("KMM_WEBHOOK_LOG_DAYS", "0", "webhook_log_days"),
    ("KMM_WEBHOOK_LOG_DAYS", "a month", "webhook_log_days"),
    ("KMM_LOGIN_ATTEMPTS_DAYS", "0", "login_attempts_days"),
])
def test_bad_settings_are_refused_by_name(monkeypatch, variable, value, field):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


@pytest.mark.parametrize(("given", "seconds"), [("off", None), ("0", None), ("12h", 43200.0), ("2d", 172800.0)])
def test_the_housekeeping_interval_reads_like_the_others(monkeypatch, given, seconds):
    monkeypatch.setenv("KMM_SCHEDULE_HOUSEKEEPING", given)
    assert Settings().schedule_housekeeping == seconds


def test_the_defaults():
    s = Settings()
    assert (s.webhook_log_days, s.login_attempts_days, s.schedule_housekeeping) == (30, 30, 86400.0)


async def test_kmm_prune_command(client, factory, state, settings, clock):
    p = await factory.user("colleague", login=False)
    await _add(state, *(LoginAttempt(user_id=p.id, email_key="k" * 64, client_address="10.8.0.1", outcome="failed",
                                     at=clock.now() - timedelta(days=60)) for _ in range(3)))
    env = {**env_for(settings), "KMM_PROGRESS_SECONDS": "0"}
    with dp.restore_keyring(state):
        out = await asyncio.to_thread(CliRunner().invoke, cli, ["prune", "--dry-run"], env=env)
        assert out.exit_code == 0, out.output
        assert "would delete 3 row(s)" in out.stdout and "  login_attempts: 3" in out.stdout
        assert await _count(state, LoginAttempt) == 3
        out = await asyncio.to_thread(CliRunner().invoke, cli, ["prune", "--batch-size", "2"], env=env)
        assert out.exit_code == 0, out.output
    assert "deleted 3 row(s)" in out.stdout and "  login_attempts: 3" in out.stdout
    progress = [line for line in out.stderr.splitlines() if line.startswith("prune: ")]
    assert progress[0] == "prune: started" and progress[-1].startswith("prune: finished, 3/3 rows (100%)")
    assert await _count(state, LoginAttempt) == 0
    [run] = await dp.events(state, "housekeeping.run")
    assert run.rule == "housekeeping" and run.detail == _counts(login_attempts=3)
