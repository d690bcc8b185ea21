"""The token endpoint as OAuth2 clients expect it (RFC 6749): the refresh_token grant,
§5.2 error bodies on /auth/token and /auth/refresh only, scopes asked for and granted."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from jose import jwt
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.auth import AuthSession
from tests.factory import PASSWORD, Factory, Person
from tests.oauth import assert_token_error

PROBLEM = "application/problem+json"


def assert_oauth_error(r, status: int, error: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return assert_token_error(r, status, error=error)


async def _sessions(state, *, clients: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Sessions started: of accounts, or (``clients``) of service clients."""
    column = AuthSession.client_id if clients else AuthSession.user_id
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(AuthSession)
                                .where(column.is_not(None)))).scalar_one()  # type: ignore[union-attr]


async def _events(state, action: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return list((await s.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


async def _client(client, director: Person, scopes: list[str]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await client.post("/service-clients", json={"name": "Reporting", "scopes": scopes}, headers=director.headers)
    assert r.status_code == 201, r.text
    return r.json()


def _cc(c: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": c["client_id"], "client_secret": c["client_secret"],
            **extra}


# -- the refresh_token grant --------------------------------------------------------------


async def test_refresh_token_grant_on_the_token_endpoint(client, factory: Factory, clock):
    p = await factory.user("colleague")
    clock.advance(seconds=5)
    r = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": p.refresh_token})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["token_type"] == "bearer" and pair["refresh_token"] != p.refresh_token
    assert pair["scope"] == ""
    assert (await client.get("/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
            ).status_code == 200
    # Rotated: the old one is spent (and its reuse ends the session), through either door.
    again = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": p.refresh_token})
    assert_oauth_error(again, 400, "invalid_grant")
    alias = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_oauth_error(alias, 400, "invalid_grant")


async def test_refresh_alias_still_rotates(client, factory: Factory):
    p = await factory.user("colleague")
    r = await client.post("/auth/refresh", json={"refresh_token": p.refresh_token})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == ""


@pytest.mark.parametrize("data", [{"grant_type": "refresh_token"},
                                  {"grant_type": "refresh_token", "refresh_token": "nonsense"}])
async def test_refresh_grant_without_a_good_token(client, factory: Factory, data):
    r = await client.post("/auth/token", data=data)
    assert_oauth_error(r, 400, "invalid_request" if "refresh_token" not in data else "invalid_grant")


async def test_refresh_alias_errors_are_rfc_shaped(client, factory: Factory):
    p = await factory.user("colleague")
    access = p.headers["Authorization"].removeprefix("Bearer ")
    assert_oauth_error(await client.post("/auth/refresh", json={"refresh_token": access}), 400, "invalid_grant")
    assert_oauth_error(await client.post("/auth/refresh", json={}), 400, "invalid_request")


# -- §5.2 errors on the token endpoint --------------------------------------------------------


@pytest.mark.parametrize("who", ["wrong-password", "unknown-email"])
async def test_bad_password_is_invalid_grant(client, factory: Factory, state, who):
    p = await factory.user("colleague", login=False)
    email = p.email if who == "wrong-password" else "nobody@test.kmm"
    r = await client.post("/auth/token", data={"username": email, "password": "not the password!"})
    body = assert_oauth_error(r, 400, "invalid_grant")
    assert body["error_description"] == "incorrect email or password"
    assert await _sessions(state) == 0


async def test_bad_client_is_invalid_client_with_www_authenticate(client, factory: Factory, state):
    d = await factory.user("director")
    c = await _client(client, d, ["reports:read"])
    r = await client.post("/auth/token", data=_cc(c, client_secret="wrong" * 8))
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic")
    basic = base64.b64encode(f"{c['client_id']}:wrong".encode()).decode()
    r = await client.post("/auth/token", data={"grant_type": "client_credentials"},
                          headers={"Authorization": f"Basic {basic}"})
    assert_oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic")
    assert await _sessions(state, clients=True) == 0


async def test_unknown_grant_type(client):
    assert_oauth_error(await client.post("/auth/token", data={"grant_type": "implicit"}),
                       400, "unsupported_grant_type")


async def test_missing_fields_are_invalid_request(client):
    assert_oauth_error(await client.post("/auth/token", data={"username": "x@test.kmm"}), 400, "invalid_request")
    assert_oauth_error(await client.post("/auth/token", data={"grant_type": "client_credentials"}),
                       400, "invalid_request")
    r = await client.post("/auth/token", data={"username": "x@test.kmm", "password": "p" * 300})
    body = assert_oauth_error(r, 400, "invalid_request")
    assert "p" * 20 not in r.text and body["error_description"]


async def test_json_posted_to_the_form_endpoint_says_to_send_a_form(client, factory: Factory, state):
    p = await factory.user("colleague", login=False)
    r = await client.post("/auth/token", json={"username": p.email, "password": PASSWORD})
    body = assert_oauth_error(r, 400, "invalid_request")
    assert "application/x-www-form-urlencoded" in body["error_description"]
    assert PASSWORD not in r.text
    assert await _sessions(state) == 0


async def test_other_endpoints_keep_problem_json(client, factory: Factory):
    r = await client.post("/auth/logout")
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"] == "Bearer"


# -- scopes ------------------------------------------------------------------------------------


async def test_client_token_carries_its_scopes(client, factory: Factory):
    d = await factory.user("director")
    c = await _client(client, d, ["subjects:read", "reports:read"])
    r = await client.post("/auth/token", data=_cc(c))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "reports:read subjects:read"


async def test_a_client_may_ask_for_fewer_scopes_and_gets_only_those(client, factory: Factory):
    d = await factory.user("director")
    c = await _client(client, d, ["subjects:read", "reports:read"])
    r = await client.post("/auth/token", data=_cc(c, scope="reports:read"))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "reports:read"
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert jwt.get_unverified_claims(r.json()["access_token"])["scp"] == "reports:read"
    refused = await client.get("/subjects", headers=headers)
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    full = (await client.post("/auth/token", data=_cc(c))).json()
    assert (await client.get("/subjects", headers={"Authorization": f"Bearer {full['access_token']}"})
            ).status_code == 200


@pytest.mark.parametrize("scope", ["records:write", "reports:read records:write", "no-such-scope"])
async def test_a_scope_the_client_does_not_hold_is_invalid_scope(client, factory: Factory, state, scope):
    d = await factory.user("director")
    c = await _client(client, d, ["reports:read"])
    r = await client.post("/auth/token", data=_cc(c, scope=scope))
    assert_oauth_error(r, 400, "invalid_scope")
    assert await _sessions(state, clients=True) == 0
    refused = await _events(state, "auth.client_login_failed")
    assert [(e.decision, e.rule, e.clause) for e in refused] == [("deny", "scopes", "§6.6")]


async def test_accounts_hold_no_scopes(client, factory: Factory, state):
    p = await factory.user("colleague", login=False)
    r = await client.post("/auth/token", data={"username": p.email, "password": PASSWORD, "scope": "reports:read"})
    assert_oauth_error(r, 400, "invalid_scope")
    assert await _sessions(state) == 0
    ok = await client.post("/auth/token", data={"username": p.email, "password": PASSWORD, "scope": ""})
    assert ok.status_code == 200 and ok.json()["scope"] == ""


# -- the documented contract ---------------------------------------------------------------


async def test_openapi_lists_both_flows_and_every_scope(client):
    from app.policy.scopes import SCOPES

    doc = (await client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert list(schemes) == ["OAuth2"]
    flows = schemes["OAuth2"]["flows"]
    assert flows["password"]["tokenUrl"] == "/auth/token"
    assert flows["password"]["refreshUrl"] == "/auth/token"
    assert flows["clientCredentials"]["tokenUrl"] == "/auth/token"
    assert flows["clientCredentials"]["scopes"] == SCOPES
    assert all(text.endswith(".") and len(text) > 20 for text in SCOPES.values())
    assert flows["password"]["scopes"] == {}  # accounts act under their role
    assert doc["paths"]["/users/me"]["get"]["security"] == [{"OAuth2": []}]
