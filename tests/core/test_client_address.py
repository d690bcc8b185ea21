"""What a request says about itself reaches the audit trail only when it can be trusted:
the client address as a parsed IP (forwarded headers count only from KMM_TRUSTED_PROXIES,
see app/serving.py), the request id bounded, or replaced by a generated one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.models.audit import AuditEvent
from tests.factory import Factory

PROXY = "10.9.9.9"


async def _failed_logins(state) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as session:
        query = select(AuditEvent).where(AuditEvent.action == "auth.login_failed").order_by(col(AuditEvent.id))
        return list((await session.execute(query)).scalars())


async def _fail_login(c: httpx.AsyncClient, email: str, headers: dict[str, Any] | None = None) -> httpx.Response:
    return await c.post("/auth/token", data={"username": email, "password": "not the password"},
                        headers=headers or {})


@pytest.fixture
async def from_peer(app, client) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client on the test app whose connection comes from the given peer address,
    optionally through uvicorn's proxy-header handling as `kmm serve` sets it up."""
    opened: list[httpx.AsyncClient] = []

    async def make(peer: str, *, trusted: list[str] | None = None) -> httpx.AsyncClient:
        asgi = ProxyHeadersMiddleware(app, trusted_hosts=trusted) if trusted is not None else app
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi, client=(peer, 40001)), base_url="http://test")
        opened.append(c)
        return c

    yield make
    for c in opened:
        await c.aclose()


@pytest.mark.parametrize("peer", ["x" * 100, "not-an-address", "203.0.113.7; DROP", ""])
async def test_a_client_address_that_is_not_an_ip_is_never_stored(from_peer, factory: Factory, state, peer):
    someone = await factory.user("colleague", login=False)
    c = await from_peer(peer)
    r = await _fail_login(c, someone.email)
    assert r.status_code == 400, r.text
    (event,) = await _failed_logins(state)
    assert event.client_ip is None


@pytest.mark.parametrize(("peer", "stored"), [("2001:DB8:0:0::0001", "2001:db8::1"), ("198.51.100.4", "198.51.100.4")])
async def test_client_addresses_are_stored_in_normal_form(from_peer, factory: Factory, state, peer, stored):
    someone = await factory.user("colleague", login=False)
    assert (await _fail_login(await from_peer(peer), someone.email)).status_code == 400
    (event,) = await _failed_logins(state)
    assert event.client_ip == stored


async def test_forwarded_for_counts_only_from_a_trusted_proxy(from_peer, factory: Factory, state):
    someone = await factory.user("colleague", login=False)
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    # through the trusted proxy: the address it forwards
    assert (await _fail_login(await from_peer(PROXY, trusted=[PROXY]), someone.email, forwarded)).status_code == 400
    # from anyone else the header is ignored (and with no proxy trusted, uvicorn does not even read it)
    untrusted = await from_peer("198.51.100.4", trusted=[PROXY])
    assert (await _fail_login(untrusted, someone.email, forwarded)).status_code == 400
    # a trusted proxy forwarding garbage: no address rather than the garbage
    garbage = {"X-Forwarded-For": "<script>" * 20}
    assert (await _fail_login(await from_peer(PROXY, trusted=[PROXY]), someone.email, garbage)).status_code == 400
    assert [e.client_ip for e in await _failed_logins(state)] == ["203.0.113.7", "198.51.100.4", None]


@pytest.mark.parametrize("hostile", ["a" * 65, "a" * 5000, "<script>", "id\u00e9", "x y"])
async def test_a_hostile_request_id_never_reaches_the_audit_trail(client, factory: Factory, state, hostile):
    someone = await factory.user("colleague", login=False)
    r = await _fail_login(client, someone.email, {"X-Request-ID": hostile.encode()})
    assert r.status_code == 400
    (event,) = await _failed_logins(state)
    assert event.request_id == r.headers["x-request-id"] != hostile
    assert len(event.request_id) == 32 and int(event.request_id, 16) >= 0
