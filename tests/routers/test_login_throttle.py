"""Login throttling (§6.6): a per-address throttle checked before the per-account lock,
the same answer for a locked account and an unknown email, a director's unlock, and only
real wrong passwords counted (never concurrent correct logins, never a database fault)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.main import create_app
from app.models.audit import AuditEvent
from app.models.auth import AuthSession, LoginAttempt
from app.workflows import auth
from tests.factory import PASSWORD, Factory, Person

PROBLEM = "application/problem+json"
WRONG = "not the password at all"


@asynccontextmanager
async def from_address(app, address: str) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """A client whose requests come from ``address`` (the ASGI scope's client)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _login(c: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await c.post("/auth/token", data={"username": email, "password": password})


async def spread_failures(app, state, email: str, n: int, *, first: int = 0) -> None:  # type: ignore[no-untyped-def]
    """``n`` wrong passwords for ``email``, from addresses that each stay under their throttle."""
    per_address = state.settings.login_address_threshold - 1
    for i in range(n):
        async with from_address(app, f"10.1.{first + i // per_address}.1") as c:
            r = await _login(c, email, WRONG)
            assert r.status_code == 400, r.text  # invalid_grant (RFC 6749 §5.2)


async def _count(state, *where) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(LoginAttempt).where(*where))).scalar_one()


async def _events(state, action: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return list((await s.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


def _comparable(r: httpx.Response) -> tuple[int, dict[str, str], dict[str, object]]:
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "x-request-id", "content-length")}
    body = {k: v for k, v in r.json().items() if k != "request_id"}
    return r.status_code, headers, body


# -- the same answer for a locked account and an unknown email ---------------------------


async def test_a_locked_account_and_an_unknown_email_get_the_same_answer(client, factory: Factory, app, state):
    p = await factory.user("colleague", login=False)
    threshold = state.settings.lockout_threshold
    await spread_failures(app, state, p.email, threshold)
    await spread_failures(app, state, "nobody@test.kmm", threshold, first=100)
    async with from_address(app, "10.2.0.1") as c:
        locked = await _login(c, p.email, PASSWORD)  # even the right password
        unknown = await _login(c, "nobody@test.kmm", PASSWORD)
    assert locked.status_code == 429, locked.text
    assert locked.headers["content-type"] == "application/json"
    assert locked.json()["error"] == "invalid_grant"  # RFC 6749 has no code for throttling
    assert locked.headers["retry-after"] == str(state.settings.lockout_minutes * 60)
    assert locked.json()["rule"] == "lockout" and locked.json()["clause"] == "§6.6"
    assert _comparable(locked) == _comparable(unknown)
    assert await _count(state, LoginAttempt.outcome == "failed") == 2 * threshold
    assert await _count(state, LoginAttempt.outcome == "success") == 0
    async with state.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(AuthSession))).scalar_one() == 0


async def test_unknown_emails_are_not_stored_in_clear(client, factory: Factory, app, state):
    async with from_address(app, "10.2.0.2") as c:
        assert (await _login(c, "Somebody.Unknown@test.kmm", WRONG)).status_code == 400
    async with state.sessionmaker() as s:
        rows = list((await s.execute(select(LoginAttempt))).scalars())
    assert len(rows) == 1 and rows[0].user_id is None
    assert "somebody" not in repr(rows[0].model_dump()).lower()


# -- the per-address throttle, before the per-account lock --------------------------------


async def test_one_address_cannot_lock_an_account(client, factory: Factory, app, state):
    d = await factory.user("director", login=False)
    limit = state.settings.login_address_threshold
    async with from_address(app, "203.0.113.9") as attacker:
        statuses = [(await _login(attacker, d.email, WRONG)).status_code for _ in range(limit + 10)]
        throttled = await _login(attacker, d.email, PASSWORD)
    assert statuses == [400] * limit + [429] * 10
    assert throttled.status_code == 429
    body = throttled.json()
    assert body["rule"] == "login-throttle" and body["clause"] == "§6.6"
    assert throttled.headers["retry-after"] == str(state.settings.lockout_minutes * 60)
    # Throttled attempts are refused before the password is checked, and not counted.
    assert await _count(state, LoginAttempt.outcome == "failed") == limit
    assert len(await _events(state, "auth.login_throttled")) == 11
    # The director, elsewhere, logs in.
    async with from_address(app, "198.51.100.7") as office:
        assert (await _login(office, d.email, PASSWORD)).status_code == 200


async def test_the_address_throttle_covers_every_email_and_clears_with_time(client, factory: Factory, app, state,
                                                                            clock):
    p = await factory.user("colleague", login=False)
    q = await factory.user("colleague", login=False)
    limit = state.settings.login_address_threshold
    async with from_address(app, "203.0.113.10") as sprayer:
        for i in range(limit):
            email = [p.email, q.email, f"guess{i}@test.kmm"][i % 3]
            assert (await _login(sprayer, email, WRONG)).status_code == 400
        # Every login from that address waits, right password or not, known email or not.
        assert (await _login(sprayer, q.email, PASSWORD)).status_code == 429
        assert (await _login(sprayer, "other@test.kmm", WRONG)).status_code == 429
        clock.advance(minutes=state.settings.lockout_minutes)
        assert (await _login(sprayer, q.email, PASSWORD)).status_code == 200
    async with from_address(app, "203.0.113.11") as other:
        assert (await _login(other, p.email, PASSWORD)).status_code == 200


async def test_the_throttle_holds_across_workers(client, factory: Factory, app, state, settings, clock):
    """Counted in the database: a second app (another worker or replica) sees the same count."""
    p = await factory.user("colleague", login=False)
    other = create_app(settings, clock=clock, configure_logs=False)
    try:
        limit = state.settings.login_address_threshold
        async with from_address(app, "203.0.113.12") as first:
            for _ in range(limit):
                assert (await _login(first, p.email, WRONG)).status_code == 400
        async with from_address(other, "203.0.113.12") as second:
            r = await _login(second, p.email, PASSWORD)
        assert r.status_code == 429 and r.json()["rule"] == "login-throttle"
    finally:
        await other.state.kmm.engine.dispose()


async def test_failures_from_many_addresses_lock_the_account(client, factory: Factory, app, state, clock):
    p = await factory.user("colleague", login=False)
    threshold = state.settings.lockout_threshold
    await spread_failures(app, state, p.email, threshold - 1)
    async with from_address(app, "10.3.0.1") as c:
        assert (await _login(c, p.email, PASSWORD)).status_code == 200  # under the threshold; resets it
    await spread_failures(app, state, p.email, threshold - 1, first=10)
    assert await _events(state, "auth.lockout") == []
    await spread_failures(app, state, p.email, 1, first=20)
    assert len(await _events(state, "auth.lockout")) == 1
    async with from_address(app, "10.3.0.2") as c:
        r = await _login(c, p.email, PASSWORD)
        assert r.status_code == 429 and r.json()["rule"] == "lockout"
        clock.advance(minutes=state.settings.lockout_minutes, seconds=-1)
        r = await _login(c, p.email, PASSWORD)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        clock.advance(seconds=1)
        assert (await _login(c, p.email, PASSWORD)).status_code == 200
    # Locked attempts were refused before any password check, and not counted.
    assert await _count(state, LoginAttempt.outcome == "failed") == 2 * threshold - 1
    async with state.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(AuthSession))).scalar_one() == 2


async def test_failures_spread_beyond_the_window_do_not_lock(client, factory: Factory, app, state, clock):
    p = await factory.user("colleague", login=False)
    await spread_failures(app, state, p.email, 1)
    clock.advance(minutes=state.settings.lockout_window_minutes, seconds=1)
    await spread_failures(app, state, p.email, state.settings.lockout_threshold - 1, first=10)
    async with from_address(app, "10.3.1.1") as c:
        assert (await _login(c, p.email, PASSWORD)).status_code == 200


async def test_the_lock_is_per_email(client, factory: Factory, app, state):
    p = await factory.user("colleague", login=False)
    q = await factory.user("colleague", login=False)
    await spread_failures(app, state, p.email, state.settings.lockout_threshold)
    async with from_address(app, "10.3.2.1") as c:
        assert (await _login(c, q.email, PASSWORD)).status_code == 200
        assert (await _login(c, p.email, PASSWORD)).status_code == 429


# -- only real wrong passwords count ----------------------------------------------------------


async def test_concurrent_correct_logins_never_lock(client, factory: Factory, app, state):
    p = await factory.user("colleague", login=False)
    n = 2 * state.settings.lockout_threshold
    rs = await asyncio.gather(*[_login(client, p.email, PASSWORD) for _ in range(n)])
    assert [r.status_code for r in rs] == [200] * n, [r.text for r in rs if r.status_code != 200]
    assert await _count(state, LoginAttempt.outcome == "failed") == 0
    assert await _count(state, LoginAttempt.outcome == "success") == n


async def test_concurrent_guesses_cannot_exceed_the_threshold(client, factory: Factory, app, state):
    """Each guess is counted in flight before its password is checked, so a burst of parallel
    guesses from many addresses gets exactly the threshold of tries; the rest are refused."""
    p = await factory.user("colleague", login=False)
    threshold = state.settings.lockout_threshold
    per_address = state.settings.login_address_threshold - 1
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(f"10.4.{i}.1", 1)),
                                 base_url="http://test") for i in range(threshold)]
    try:
        rs = await asyncio.gather(*[_login(clients[i // per_address], p.email, f"guess number {i}")
                                    for i in range(threshold + 6)])
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in rs) == [400] * threshold + [429] * 6
    assert await _count(state, LoginAttempt.outcome == "failed") == threshold


async def test_a_database_error_during_login_is_503_and_counts_nothing(client, factory: Factory, app, state,
                                                                        monkeypatch, clock):
    p = await factory.user("colleague", login=False)

    def database_gone(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))

    # The database goes away after the password is checked: the outcome is never written.
    monkeypatch.setattr(auth, "add_event", database_gone)
    cut_off = state.settings.login_address_threshold - 1
    for password in ([PASSWORD, WRONG] * cut_off)[:cut_off]:
        r = await _login(client, p.email, password)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"]
        assert r.json()["type"].endswith("/database-unavailable")
    monkeypatch.undo()
    assert await _count(state, LoginAttempt.outcome == "failed") == 0
    assert await _count(state, LoginAttempt.outcome == "pending") == cut_off
    assert (await _login(client, p.email, PASSWORD)).status_code == 200


async def test_checks_cut_off_in_flight_stop_counting_after_a_while(client, factory: Factory, app, state,
                                                                     monkeypatch, clock):
    """So many checks cut off that one more could pass the lock: logins wait for them, then
    answer 503; once they are old enough to be dead they count no more."""
    p = await factory.user("colleague", login=False)

    def database_gone(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(auth, "add_event", database_gone)
    per_address = state.settings.login_address_threshold - 1
    for i in range(state.settings.lockout_threshold):
        async with from_address(app, f"10.6.{i // per_address}.1") as c:
            assert (await _login(c, p.email, PASSWORD)).status_code == 503
    monkeypatch.undo()
    async with from_address(app, "10.6.9.1") as c:
        r = await _login(c, p.email, PASSWORD)
        assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable", r.text
        clock.advance(seconds=auth.IN_FLIGHT_SECONDS + 1)
        assert (await _login(c, p.email, PASSWORD)).status_code == 200
    assert await _count(state, LoginAttempt.outcome == "failed") == 0


# -- a director unlocks ---------------------------------------------------------------------------


async def _locked(app, state, factory: Factory) -> Person:  # type: ignore[no-untyped-def]
    p = await factory.user("colleague", login=False)
    await spread_failures(app, state, p.email, state.settings.lockout_threshold)
    async with from_address(app, "10.5.0.1") as c:
        assert (await _login(c, p.email, PASSWORD)).status_code == 429
    return p


async def test_a_director_unlocks_an_account(client, factory: Factory, app, state):
    d = await factory.user("director")
    p = await _locked(app, state, factory)
    r = await client.post(f"/users/{p.id}/unlock", headers=d.headers)
    assert r.status_code == 204, r.text
    events = await _events(state, "account.unlock")
    assert [(e.actor_id, e.resource_id, e.rule, e.clause) for e in events] == [
        (d.id, str(p.id), "director", "§6.6")]
    async with from_address(app, "10.5.0.2") as c:
        assert (await _login(c, p.email, PASSWORD)).status_code == 200


async def test_only_a_director_unlocks(client, factory: Factory, app, state):
    colleague = await factory.user("colleague")
    p = await _locked(app, state, factory)
    r = await client.post(f"/users/{p.id}/unlock", headers=colleague.headers)
    assert r.status_code == 403 and r.json()["rule"] == "director-only"
    assert await _events(state, "account.unlock") == []
    async with from_address(app, "10.5.0.3") as c:
        assert (await _login(c, p.email, PASSWORD)).status_code == 429


async def test_unlocking_an_unknown_account_is_404(client, factory: Factory, state):
    d = await factory.user("director")
    r = await client.post("/users/00000000-0000-4000-8000-000000000000/unlock", headers=d.headers)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert await _events(state, "account.unlock") == []
