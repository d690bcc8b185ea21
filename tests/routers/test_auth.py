"""POST /auth/token, /auth/refresh, /auth/logout: every way a token must fail, lockout,
deactivation, refresh rotation with reuse detection, and client credentials."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.auth import AuthSession
from app.models.service_clients import ServiceClient
from tests.factory import PASSWORD, Factory, Person
from tests.oauth import assert_token_error

PROBLEM = "application/problem+json"


def assert_401(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    assert body["status"] == 401
    assert {"type", "title", "status", "detail"} <= set(body)


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _claims(token: str) -> dict[str, Any]:
    return jwt.get_unverified_claims(token)


def _access(person: Person) -> str:
    return person.headers["Authorization"].removeprefix("Bearer ")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _count(state, model) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def _events(state, action: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return list((await s.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


# -- logging in ------------------------------------------------------------------


async def test_password_login_returns_a_token_pair(client, factory: Factory, state):
    p = await factory.user("colleague", login=False)
    r = await client.post("/auth/token", data={"username": p.email.upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == state.settings.access_token_minutes * 60
    access, refresh = _claims(body["access_token"]), _claims(body["refresh_token"])
    assert access["typ"] == "access" and refresh["typ"] == "refresh"
    assert access["sub"] == refresh["sub"] == str(p.id)
    assert access["sid"] == refresh["sid"]
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert [e.decision for e in await _events(state, "auth.login")] == ["allow"]


@pytest.mark.parametrize("who", ["wrong-password", "unknown-email"])
async def test_bad_credentials_give_the_same_answer(client, factory: Factory, state, who):
    p = await factory.user("colleague", login=False)
    email = p.email if who == "wrong-password" else "nobody@test.kmm"
    r = await client.post("/auth/token", data={"username": email, "password": "not the password!"})
    assert assert_token_error(r, 400, error="invalid_grant")["error_description"] == "incorrect email or password"
    assert await _count(state, AuthSession) == 0
    assert [e.decision for e in await _events(state, "auth.login_failed")] == ["deny"]


async def test_login_needs_both_fields(client):
    r = await client.post("/auth/token", data={"username": "x@test.kmm"})
    assert_token_error(r, 400, error="invalid_request")


async def test_unknown_grant_type_is_400(client):
    r = await client.post("/auth/token", data={"grant_type": "implicit"})
    assert_token_error(r, 400, error="unsupported_grant_type")


# -- every way an access token must fail -------------------------------------------


def _forge(state, person: Person, how: str) -> str:  # type: ignore[no-untyped-def]
    """A token that must be refused, made from ``person``'s genuine access token."""
    good = _access(person)
    claims = _claims(good)
    key, alg = state.settings.signing_key, state.settings.jwt_algorithm
    header_b64, payload_b64, sig = good.split(".")
    if how == "alg-none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload_b64}."
    if how == "alg-none-no-dot":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload_b64}"
    if how == "bad-signature":
        flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
        return f"{header_b64}.{payload_b64}.{flipped}"
    if how == "other-secret":
        return jwt.encode(claims, "another secret of the same length as ours!!!!", algorithm="HS256")
    if how == "other-key-rs256":
        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return jwt.encode(claims, pem.decode(), algorithm="RS256")
    if how == "other-alg-same-key":
        return jwt.encode(claims, key, algorithm="HS512")
    if how == "tampered-payload":
        other = dict(claims, sub=str(uuid.uuid4()))
        return f"{header_b64}.{_b64(other)}.{sig}"
    if how == "wrong-issuer":
        return jwt.encode(dict(claims, iss="someone-else"), key, algorithm=alg)
    if how.startswith("missing-"):
        claim = how.removeprefix("missing-")
        return jwt.encode({k: v for k, v in claims.items() if k != claim}, key, algorithm=alg)
    if how == "sub-not-a-uuid":
        return jwt.encode(dict(claims, sub="director"), key, algorithm=alg)
    if how == "unknown-session":
        return jwt.encode(dict(claims, sid=str(uuid.uuid4())), key, algorithm=alg)
    if how == "refresh-as-access":
        assert person.refresh_token
        return person.refresh_token
    if how == "garbage":
        return "not-a-jwt"
    raise AssertionError(how)


BAD_TOKENS = [
    "alg-none", "alg-none-no-dot", "bad-signature", "other-secret", "other-key-rs256",
    "other-alg-same-key", "tampered-payload", "wrong-issuer", "missing-jti", "missing-typ",
    "missing-sid", "missing-exp", "missing-sub", "missing-iat", "sub-not-a-uuid",
    "unknown-session", "refresh-as-access", "garbage",
]


@pytest.mark.parametrize("how", BAD_TOKENS)
async def test_bad_access_tokens_get_401(client, factory: Factory, state, how):
    p = await factory.user("director")
    # The genuine token works, so the 401 below is the forgery's doing.
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    r = await client.get("/users/me", headers=_bearer(_forge(state, p, how)))
    assert_401(r)
    assert "Traceback" not in r.text


async def test_no_token_gets_401(client):
    assert_401(await client.get("/users/me"))
    assert_401(await client.get("/users/me", headers={"Authorization": "Basic eDp5"}))


async def test_access_token_expires_on_the_service_clock(client, factory: Factory, clock, state):
    p = await factory.user("colleague")
    clock.advance(minutes=state.settings.access_token_minutes, seconds=-1)
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    clock.advance(seconds=1)
    r = await client.get("/users/me", headers=p.headers)
    assert_401(r)
    assert r.json()["detail"] == "token expired"


# -- lockout: tests/routers/test_login_throttle.py ---------------------------------------------


# -- deactivation (§7.2) ------------------------------------------------------------------


async def test_deactivated_account_token_fails_on_next_call_and_cannot_log_in(client, factory: Factory, state):
    d = await factory.user("director")
    p = await factory.user("colleague")
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200
    r = await client.patch(f"/users/{p.id}", json={"active": False}, headers=d.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert_401(await client.get("/users/me", headers=p.headers))
    assert_token_error(await client.post("/auth/refresh", json={"refresh_token": p.refresh_token}), 400,
                       error="invalid_grant")
    assert_token_error(await factory.login(p), 400, error="invalid_grant")
    failed = await _events(state, "auth.login_failed")
    assert [(e.rule, e.clause) for e in failed] == [("former", "§7.2")]
    # Reactivated, the account logs in again; the old tokens stay dead.
    old = dict(p.headers)
    assert (await client.patch(f"/users/{p.id}", json={"active": True}, headers=d.headers)).status_code == 200
    assert (await factory.login(p)).status_code == 200
    assert_401(await client.get("/users/me", headers=old))


# -- refresh rotation and reuse ------------------------------------------------------------


async def test_refresh_rotates(client, factory: Factory, clock):
    p = await factory.user("colleague")
    clock.advance(seconds=5)
    r = await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["refresh_token"] != p.refresh_token
    assert _claims(pair["refresh_token"])["sid"] == _claims(p.refresh_token)["sid"]
    assert (await client.get("/users/me", headers=_bearer(pair["access_token"]))).status_code == 200
    # The rotated one can be rotated again.
    r2 = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r2.status_code == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_family(client, factory: Factory, state):
    p = await factory.user("colleague")
    first_access = dict(p.headers)
    new = (await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})).json()
    # The old refresh token comes back: someone holds a copy.
    assert_token_error(await client.post("/auth/refresh", json={"refresh_token": p.refresh_token}), 400,
                       error="invalid_grant")
    assert_token_error(await client.post("/auth/refresh", json={"refresh_token": new["refresh_token"]}), 400,
                       error="invalid_grant")
    assert_401(await client.get("/users/me", headers=_bearer(new["access_token"])))
    assert_401(await client.get("/users/me", headers=first_access))
    assert [e.decision for e in await _events(state, "auth.refresh_reuse")] == ["deny"]
    # Other sessions of the same account are not touched.
    assert (await factory.login(p)).status_code == 200
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200


async def test_refresh_refuses_access_tokens_and_expired_refresh_tokens(client, factory: Factory, clock, state):
    p = await factory.user("colleague")
    for token in (_access(p), "nonsense"):
        assert_token_error(await client.post("/auth/refresh", json={"refresh_token": token}), 400,
                           error="invalid_grant")
    clock.advance(days=state.settings.refresh_token_days)
    assert_token_error(await client.post("/auth/refresh", json={"refresh_token": p.refresh_token}), 400,
                       error="invalid_grant")


# -- logout -------------------------------------------------------------------------------


async def test_logout_ends_the_session_at_once(client, factory: Factory):
    p = await factory.user("colleague")
    other = await factory.user("colleague")
    r = await client.post("/auth/logout", headers=p.headers)
    assert r.status_code == 204
    assert_401(await client.get("/users/me", headers=p.headers))
    assert_token_error(await client.post("/auth/refresh", json={"refresh_token": p.refresh_token}), 400,
                       error="invalid_grant")
    assert_401(await client.post("/auth/logout", headers=p.headers))
    # Only that session: another account is still logged in.
    assert (await client.get("/users/me", headers=other.headers)).status_code == 200


async def test_logout_ends_only_that_session(client, factory: Factory):
    p = await factory.user("colleague")
    first = dict(p.headers)
    await factory.login(p)
    assert (await client.post("/auth/logout", headers=first)).status_code == 204
    assert (await client.get("/users/me", headers=p.headers)).status_code == 200


# -- client credentials ----------------------------------------------------------------------


async def _new_client(client, director: Person, scopes: list[str] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.post("/service-clients", json={"name": "Reporting", "scopes": scopes or ["reports:read"]},
                          headers=director.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_client_credentials_with_form_fields(client, factory: Factory, state):
    d = await factory.user("director")
    c = await _new_client(client, d)
    r = await client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": c["client_id"],
                                               "client_secret": c["client_secret"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refresh_token"] is None
    assert _claims(body["access_token"])["knd"] == "client"
    # Its token works where accounts are not required; /users/me is for accounts only.
    r = await client.get("/users/me", headers=_bearer(body["access_token"]))
    assert r.status_code == 403 and r.json()["rule"] == "accounts-only"
    assert (await client.post("/auth/logout", headers=_bearer(body["access_token"]))).status_code == 204
    assert_401(await client.get("/users/me", headers=_bearer(body["access_token"])))


async def test_client_credentials_with_http_basic(client, factory: Factory):
    d = await factory.user("director")
    c = await _new_client(client, d)
    basic = base64.b64encode(f"{c['client_id']}:{c['client_secret']}".encode()).decode()
    r = await client.post("/auth/token", data={"grant_type": "client_credentials"},
                          headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("how", ["wrong-secret", "unknown-client", "deactivated"])
async def test_client_credentials_refused(client, factory: Factory, state, how):
    d = await factory.user("director")
    c = await _new_client(client, d)
    secret, client_id = c["client_secret"], c["client_id"]
    if how == "wrong-secret":
        secret = secret[:-1] + ("x" if secret[-1] != "x" else "y")
    elif how == "unknown-client":
        client_id = "kmm-0000000000000000"
    else:
        assert (await client.delete(f"/service-clients/{c['id']}", headers=d.headers)).status_code == 204
    r = await client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                               "client_secret": secret})
    body = assert_token_error(r, 401, error="invalid_client")
    assert body["error_description"] == "invalid client credentials"
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_deactivating_a_client_ends_its_tokens(client, factory: Factory):
    d = await factory.user("director")
    c = await _new_client(client, d)
    token = (await client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": c["client_id"],
                                                    "client_secret": c["client_secret"]})).json()["access_token"]
    assert (await client.delete(f"/service-clients/{c['id']}", headers=d.headers)).status_code == 204
    assert_401(await client.post("/auth/logout", headers=_bearer(token)))


async def test_client_secret_is_shown_once_and_stored_hashed(client, factory: Factory, state):
    d = await factory.user("director")
    c = await _new_client(client, d)
    listed = (await client.get("/service-clients", headers=d.headers)).json()["items"]
    assert [x["client_id"] for x in listed] == [c["client_id"]]
    assert "client_secret" not in listed[0]
    assert c["client_secret"] not in json.dumps(listed)
    async with state.sessionmaker() as s:
        stored = (await s.execute(select(ServiceClient))).scalar_one()
    assert c["client_secret"] not in stored.secret_hash
    assert len(stored.secret_hash) == 64  # a SHA-256 digest, not the secret
