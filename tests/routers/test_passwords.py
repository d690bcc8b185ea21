"""Passwords (§6.6, NIST SP 800-63B): weak ones refused everywhere one is set; users change
their own (ending their other sessions); a director resets one, and the account may then
only change it; refresh sessions end at an absolute age."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
from jose import jwt
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.auth import LoginAttempt
from app.models.users import User
from tests.factory import PASSWORD, Factory, Person
from tests.routers.test_login_throttle import spread_failures

PROBLEM = "application/problem+json"
NEW = "a brand new passphrase for me"
NEWER = "yet another passphrase, longer"


async def _events(state, action: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return list((await s.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


async def _count(state, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_weak(r, field: str, msg: str, password: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    errors = r.json()["errors"]
    assert [(e["loc"], e["msg"]) for e in errors] == [(["body", field], msg)]
    assert password not in r.text


# -- weak passwords are refused ------------------------------------------------------------------

WEAK = {
    "spaces": (" " * 16, "must not be only spaces"),
    "whitespace": (" \t \u00a0  \n       ", "must not be only spaces"),
    "common": ("Password1234", "is one of the most common passwords"),
    "common-keyboard": ("qwertyuiop123", "is one of the most common passwords"),
    "common-padded": ("Sunshine2024!!", "is a common password with digits or symbols added"),
    "repeated": ("abcabcabcabcabc", "is a repeated pattern"),
    "one-character": ("xxxxxxxxxxxxxxxx", "is a repeated pattern"),
    "service-name": ("KMM-records-2026", "names this service"),
    "own-name": ("alexandra richardson", "must not be the account's email address or name"),
}


@pytest.mark.parametrize("case", sorted(WEAK))
async def test_post_users_refuses_weak_passwords(client, factory: Factory, state, case):
    d = await factory.user("director")
    password, msg = WEAK[case]
    before = await _count(state, User), len(await _events(state, "account.create"))
    r = await client.post("/users", headers=d.headers, json={
        "email": "alexandra.r@test.kmm", "full_name": "Alexandra Richardson", "role": "colleague",
        "staff_type": "volunteer", "password": password})
    assert_weak(r, "password", msg, password.strip() or "\u00a0")
    assert (await _count(state, User), len(await _events(state, "account.create"))) == before


async def test_the_email_as_password_is_refused(client, factory: Factory, state):
    d = await factory.user("director")
    email = "someone.long@test.kmm"
    r = await client.post("/users", headers=d.headers, json={
        "email": email, "full_name": "S", "role": "colleague", "staff_type": "volunteer", "password": email.upper()})
    assert_weak(r, "password", "must not be the account's email address or name", email.upper())


@pytest.mark.parametrize("password", [PASSWORD, "Tr0ub4dor&3-horse", secrets.token_urlsafe(12),
                                      "ünïcödé pässwörd"],
                         ids=["passphrase", "mixed", "random", "unicode"])  # same ids in every process
async def test_good_passwords_are_accepted(client, factory: Factory, password):
    d = await factory.user("director")
    r = await client.post("/users", headers=d.headers, json={
        "email": f"g-{uuid.uuid4().hex[:6]}@test.kmm", "full_name": "G", "role": "colleague",
        "staff_type": "volunteer", "password": password})
    assert r.status_code == 201, r.text
    login = await client.post("/auth/token", data={"username": r.json()["email"], "password": password})
    assert login.status_code == 200


# -- changing one's own password --------------------------------------------------------------------


async def _two_sessions(factory: Factory) -> tuple[Person, dict[str, str], str]:
    """An account logged in twice: returns it (holding the second session) and the first's tokens."""
    p = await factory.user("colleague")
    first, first_refresh = dict(p.headers), p.refresh_token
    assert first_refresh
    assert (await factory.login(p)).status_code == 200
    return p, first, first_refresh


async def test_changing_ones_password_ends_the_other_sessions(client, factory: Factory, state):
    p, other, other_refresh = await _two_sessions(factory)
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 204, r.text
    # This session goes on; the other has ended.
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    assert (await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})).status_code == 200
    assert (await client.get("/users/me", headers=other)).status_code == 401
    assert (await client.post("/auth/refresh", json={"refresh_token": other_refresh})).status_code == 400
    assert (await factory.login(p, PASSWORD)).status_code == 400
    assert (await factory.login(p, NEW)).status_code == 200
    events = await _events(state, "account.password_change")
    assert [(e.actor_id, e.resource_id, e.decision, e.clause) for e in events] == [(p.id, str(p.id), "allow", "§6.6")]
    assert NEW not in str(events[0].detail)


async def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failure(client, factory: Factory, state):
    p, other, _ = await _two_sessions(factory)
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": "not my password", "new_password": NEW})
    assert r.status_code == 403, r.text
    assert r.json()["rule"] == "credentials" and r.json()["clause"] == "§6.6"
    assert await _count(state, LoginAttempt, LoginAttempt.outcome == "failed") == 1
    assert (await client.get("/users/me", headers=other)).status_code == 200
    assert (await factory.login(p, PASSWORD)).status_code == 200
    assert await _events(state, "account.password_change") == []


async def test_a_wrong_current_password_counts_towards_the_lock(client, factory: Factory, state, app):
    p = await factory.user("colleague")
    await spread_failures(app, state, p.email, state.settings.lockout_threshold - 1)
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": "not my password", "new_password": NEW})
    assert r.status_code == 403
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 429 and r.json()["rule"] == "lockout"
    assert (await factory.login(p)).status_code == 429
    assert await _events(state, "account.password_change") == []


async def test_the_address_throttle_covers_password_changes(client, factory: Factory, state):
    p = await factory.user("colleague")
    for _ in range(state.settings.login_address_threshold):
        r = await client.post("/users/me/password", headers=p.headers,
                              json={"current_password": "not my password", "new_password": NEW})
        assert r.status_code == 403
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 429 and r.json()["rule"] == "login-throttle"
    assert await _events(state, "account.password_change") == []


@pytest.mark.parametrize(("new", "msg"), [
    (PASSWORD, "must differ from the current password"),
    ("Password1234", "is one of the most common passwords"),
    (" " * 14, "must not be only spaces"),
])
async def test_a_weak_new_password_is_refused(client, factory: Factory, state, new, msg):
    p, other, _ = await _two_sessions(factory)
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": PASSWORD, "new_password": new})
    assert_weak(r, "new_password", msg, new.strip() or "\u00a0")
    assert (await client.get("/users/me", headers=other)).status_code == 200
    assert (await factory.login(p, PASSWORD)).status_code == 200


# -- a director's reset -----------------------------------------------------------------------------


async def test_a_director_resets_a_password_and_it_must_be_changed(client, factory: Factory, state):
    d = await factory.user("director")
    p = await factory.user("colleague")
    old = dict(p.headers)
    r = await client.post(f"/users/{p.id}/password", headers=d.headers, json={"new_password": NEW})
    assert r.status_code == 204, r.text
    assert (await client.get("/users/me", headers=old)).status_code == 401  # every session ends
    assert (await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})).status_code == 400
    assert (await factory.login(p, PASSWORD)).status_code == 400
    login = await factory.login(p, NEW)
    assert login.status_code == 200 and login.json()["password_change_required"] is True

    # Until it is changed, the account may only read itself, change it, or log out.
    r = await client.get("/records", headers=p.headers)
    assert r.status_code == 403, r.text
    assert r.json()["rule"] == "password-change-required" and r.json()["clause"] == "§6.6"
    assert "items" not in r.json()
    assert (await client.get("/subjects", headers=p.headers)).status_code == 403
    r = await client.get(f"/records/{uuid.uuid4()}", headers=p.headers)  # the read's hot path
    assert r.status_code == 403 and r.json()["rule"] == "password-change-required"
    assert (await client.post("/auth/token", data={"username": p.email, "password": NEW})).status_code == 200
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    r = await client.post("/users/me/password", headers=p.headers,
                          json={"current_password": NEW, "new_password": NEWER})
    assert r.status_code == 204, r.text
    refreshed = await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})
    assert refreshed.status_code == 200 and refreshed.json()["password_change_required"] is False
    assert (await client.get("/records", headers=_bearer(refreshed.json()["access_token"]))).status_code == 200
    again = await factory.login(p, NEWER)
    assert again.json()["password_change_required"] is False
    events = await _events(state, "account.password_reset")
    assert [(e.actor_id, e.resource_id, e.rule, e.clause) for e in events] == [(d.id, str(p.id), "director", "§6.6")]


async def test_a_refresh_keeps_the_restriction(client, factory: Factory):
    d = await factory.user("director")
    p = await factory.user("colleague", login=False)
    r = await client.post(f"/users/{p.id}/password", headers=d.headers, json={"new_password": NEW})
    assert r.status_code == 204
    await factory.login(p, NEW)
    r = await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})
    assert r.status_code == 200 and r.json()["password_change_required"] is True
    assert (await client.get("/records", headers=_bearer(r.json()["access_token"]))).status_code == 403


async def test_only_a_director_resets(client, factory: Factory, state):
    c = await factory.user("colleague")
    p = await factory.user("colleague")
    r = await client.post(f"/users/{p.id}/password", headers=c.headers, json={"new_password": NEW})
    assert r.status_code == 403 and r.json()["rule"] == "director-only"
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    assert (await factory.login(p, PASSWORD)).status_code == 200
    assert await _events(state, "account.password_reset") == []


async def test_a_director_changes_their_own_password_with_the_current_one(client, factory: Factory, state):
    d = await factory.user("director")
    r = await client.post(f"/users/{d.id}/password", headers=d.headers, json={"new_password": NEW})
    assert r.status_code == 403 and r.json()["rule"] == "own-password" and r.json()["clause"] == "§6.6"
    assert (await factory.login(d, PASSWORD)).status_code == 200
    assert await _events(state, "account.password_reset") == []


@pytest.mark.parametrize("case", ["weak", "unknown"])
async def test_a_bad_reset_changes_nothing(client, factory: Factory, state, case):
    d = await factory.user("director")
    p = await factory.user("colleague")
    target: Any = p.id if case == "weak" else uuid.uuid4()
    r = await client.post(f"/users/{target}/password", headers=d.headers,
                          json={"new_password": "Password1234" if case == "weak" else NEW})
    if case == "weak":
        assert_weak(r, "new_password", "is one of the most common passwords", "Password1234")
    else:
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    assert await _events(state, "account.password_reset") == []


# -- refresh sessions end at an absolute age ---------------------------------------------------------


async def test_a_session_ends_at_its_absolute_lifetime(client, factory: Factory, state, clock):
    p = await factory.user("colleague")
    start = clock.now()
    end = start + timedelta(days=state.settings.session_max_days)
    step = timedelta(days=state.settings.refresh_token_days - 1)
    token = p.refresh_token
    while clock.now() + step < end:
        clock.advance(seconds=step.total_seconds())
        r = await client.post("/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
        for t in (token, r.json()["access_token"]):
            assert jwt.get_unverified_claims(t)["exp"] <= int(end.timestamp())
    clock.set(end - timedelta(seconds=1))
    r = await client.post("/auth/refresh", json={"refresh_token": token})
    assert r.status_code == 200
    access, token = r.json()["access_token"], r.json()["refresh_token"]
    clock.set(end)
    assert (await client.post("/auth/refresh", json={"refresh_token": token})).status_code == 400
    assert (await client.get("/users/me", headers=_bearer(access))).status_code == 401
    assert (await factory.login(p)).status_code == 200  # a new login starts a new session
