"""`Cache-Control: no-store` (and `Pragma: no-cache`) is the default on every response:
tokens (RFC 6749 §5.1) and everything about people that an authenticated call returns
(§3.7, §4.4, §6.6). A response opts out only where it holds nothing personal: the docs
explorer's files. Health answers are never stored either: a cached one is a wrong one."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.factory import Factory


def assert_no_store(r: httpx.Response, status: int, what: str) -> None:
    assert r.status_code == status, f"{what}: {r.status_code} {r.text[:200]}"
    assert r.headers.get("cache-control") == "no-store", f"{what}: cache-control {r.headers.get('cache-control')}"
    assert r.headers.get("pragma") == "no-cache", what


async def test_tokens_are_never_stored(client: httpx.AsyncClient, factory: Factory):
    someone = await factory.user("colleague", login=False)
    r = await factory.login(someone)
    assert_no_store(r, 200, "POST /auth/token")
    assert "access_token" in r.json()
    r = await client.post("/auth/refresh", json={"refresh_token": someone.refresh_token})
    assert_no_store(r, 200, "POST /auth/refresh")
    assert_no_store(await factory.login(someone, "not the password"), 400, "a refused login")


async def test_every_authenticated_answer_about_people_is_never_stored(client: httpx.AsyncClient,
                                                                       factory: Factory):
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    ben = await factory.user("colleague", manager=director)
    carol = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    sens = await factory.record(by=alice, subject=subject, classification="sensitive")
    conf = await factory.record(by=alice, subject=subject)
    share = {"user_id": str(ben.id), "reason": "covering the case while away"}
    named = {"user_id": str(ben.id), "consent_reference": "letter 12"}
    expires = (factory.state.clock.now() + timedelta(hours=2)).isoformat()
    grant = {"grantee_id": str(ben.id), "record_id": sens["id"], "reason": "crisis call", "expires_at": expires}
    calls = [
        ("POST", f"/records/{conf['id']}/shares", alice, share, 201),
        ("GET", f"/records/{conf['id']}/shares", alice, None, 200),
        ("POST", f"/records/{sens['id']}/named-access", alice, named, 201),
        ("GET", f"/records/{sens['id']}/named-access", alice, None, 200),
        ("POST", "/emergency-grants", director, grant, 201),
        ("GET", "/emergency-grants", director, None, 200),
        ("GET", "/subjects", alice, None, 200),
        ("GET", f"/subjects/{subject['id']}", alice, None, 200),
        ("GET", "/users/me", alice, None, 200),
        ("GET", "/users", director, None, 200),
        ("GET", f"/users/{alice.id}", director, None, 200),
        ("GET", "/audit-events", director, None, 200),
        ("GET", "/compliance/summary", director, None, 200),
        ("POST", f"/records/{conf['id']}/review", alice, {"note": "address checked"}, 200),
        ("GET", f"/records/{conf['id']}", alice, None, 200),
        ("GET", "/records", alice, None, 200),
        ("GET", "/records", alice, {"classification": "general"}, 200),
        # refusals too: they name people and records
        ("GET", "/audit-events", alice, None, 403),
        ("GET", f"/records/{sens['id']}", carol, None, 403),
    ]
    await factory.record(by=alice, subject=subject, classification="general")
    for method, path, who, body, status in calls:
        if method == "GET":
            r = await client.request(method, path, headers=who.headers, params=body)
        else:
            r = await client.request(method, path, headers=who.headers, json=body)
        assert_no_store(r, status, f"{method} {path}")


async def test_only_what_holds_nothing_personal_may_be_cached(client: httpx.AsyncClient):
    for path in ("/healthz", "/readyz", "/no/such/path"):
        assert (await client.get(path)).headers.get("cache-control") == "no-store", path
    page = await client.get("/docs")
    assert page.status_code == 200
    r = await client.get("/docs/init.js")
    assert r.headers["cache-control"] == "no-cache" and "pragma" not in r.headers
    asset = next(line.split('src="', 1)[1].split('"', 1)[0] for line in page.text.splitlines()
                 if 'src="/docs/assets/' in line)
    r = await client.get(asset)
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=86400"
    assert "pragma" not in r.headers
