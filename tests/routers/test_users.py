"""/users: directors manage accounts; every account reads /users/me; bad input is a 422
naming the field with nothing written; director-only endpoints refuse everyone else."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.users import User
from tests.factory import PASSWORD, Factory, Person

PROBLEM = "application/problem+json"


async def _count_users(state) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(User))).scalar_one()


async def _stored(state, user_id) -> User:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        user = await s.get(User, user_id)
        assert user is not None
        return user


def _new(**over: Any) -> dict[str, Any]:
    body = {"email": f"new-{uuid.uuid4().hex[:8]}@test.kmm", "full_name": "New Person", "role": "colleague",
            "staff_type": "volunteer", "password": "a long enough password"}
    body.update(over)
    return body


def assert_422(r, field: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422
    assert field in body["detail"]
    assert any(e["loc"][-1] == field for e in body["errors"]), body


# -- /users/me ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["colleague", "director", "trustee"])
async def test_me_for_every_role(client, factory: Factory, role):
    manager = await factory.user("director", login=False)
    p = await factory.user(role, manager=manager if role == "colleague" else None)
    r = await client.get("/users/me", headers=p.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == str(p.id)
    assert body["role"] == role
    assert body["active"] is True
    assert body["line_manager_id"] == (str(manager.id) if role == "colleague" else None)
    assert "password" not in body and "password_hash" not in body


# -- director only -------------------------------------------------------------------------


async def _client_headers(client, factory: Factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    d = await factory.user("director")
    c = (await client.post("/service-clients", json={"name": "Other system", "scopes": ["reports:read"]},
                           headers=d.headers)).json()
    token = (await client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": c["client_id"],
                                                    "client_secret": c["client_secret"]})).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("who", ["colleague", "trustee", "service-client"])
async def test_director_only_endpoints_refuse_others(client, factory: Factory, state, who):
    target = await factory.user("colleague", login=False)
    if who == "service-client":
        headers = await _client_headers(client, factory)
        rule = "accounts-only"
    else:
        headers = (await factory.user(who)).headers
        rule = "director-only"
    before = await _count_users(state)
    calls = [
        ("POST", "/users", _new()),
        ("GET", "/users", None),
        ("GET", f"/users/{target.id}", None),
        ("PATCH", f"/users/{target.id}", {"active": False, "role": "director"}),
        ("POST", "/service-clients", {"name": "x", "scopes": []}),
        ("GET", "/service-clients", None),
        ("DELETE", f"/service-clients/{uuid.uuid4()}", None),
    ]
    for method, url, body in calls:
        r = await client.request(method, url, json=body, headers=headers)
        assert r.status_code == 403, (method, url, r.text)
        assert r.headers["content-type"] == PROBLEM
        problem = r.json()
        assert problem["rule"] == rule and problem["clause"], problem
        assert problem["type"].endswith("/policy-denied")
        assert target.email not in r.text
    assert await _count_users(state) == before
    stored = await _stored(state, target.id)
    assert stored.active is True and stored.role == "colleague"


# -- creating -----------------------------------------------------------------------------


async def test_director_creates_an_account_that_can_log_in(client, factory: Factory, state):
    d = await factory.user("director")
    body = _new(email="New.Person@Test.KMM", line_manager_id=str(d.id))
    r = await client.post("/users", json=body, headers=d.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == "new.person@test.kmm"
    assert created["line_manager_id"] == str(d.id)
    assert created["staff_type"] == "volunteer"
    assert "password" not in created
    stored = await _stored(state, uuid.UUID(created["id"]))
    assert stored.password_hash.startswith("$argon2") and body["password"] not in stored.password_hash
    r = await client.post("/auth/token", data={"username": "new.person@test.kmm", "password": body["password"]})
    assert r.status_code == 200
    async with state.sessionmaker() as s:
        events = list((await s.execute(select(AuditEvent).where(AuditEvent.action == "account.create",
                                                                AuditEvent.actor_id == d.id))).scalars())
    assert [e.resource_id for e in events] == [created["id"]]


async def _bad_create_cases(factory: Factory) -> dict[str, tuple[dict[str, Any], str]]:
    d = await factory.user("director", login=False)
    inactive = await factory.user("colleague", login=False)
    async with factory.state.sessionmaker() as s:
        row = await s.get(User, inactive.id)
        assert row is not None
        row.active = False
        await s.commit()
    trustee = await factory.user("trustee", login=False)
    return {
        "unknown-manager": (_new(line_manager_id=str(uuid.uuid4())), "line_manager_id"),
        "inactive-manager": (_new(line_manager_id=str(inactive.id)), "line_manager_id"),
        "trustee-manager": (_new(line_manager_id=str(trustee.id)), "line_manager_id"),
        "duplicate-email": (_new(email=d.email.upper()), "email"),
        "short-password": (_new(password="elevenchars"), "password"),
        "unknown-role": (_new(role="superuser"), "role"),
        "unknown-staff-type": (_new(staff_type="contractor"), "staff_type"),
        "bad-email": (_new(email="not-an-email"), "email"),
        "missing-name": ({k: v for k, v in _new().items() if k != "full_name"}, "full_name"),
    }


CREATE_CASES = ["unknown-manager", "inactive-manager", "trustee-manager", "duplicate-email", "short-password",
                "unknown-role", "unknown-staff-type", "bad-email", "missing-name"]


@pytest.mark.parametrize("case", CREATE_CASES)
async def test_bad_accounts_are_422_naming_the_field_and_nothing_is_written(client, factory: Factory, state, case):
    director = await factory.user("director")
    body, field = (await _bad_create_cases(factory))[case]
    before = await _count_users(state)
    r = await client.post("/users", json=body, headers=director.headers)
    assert_422(r, field)
    assert body["password"] not in r.text  # the input is never echoed
    assert await _count_users(state) == before


# -- updating -----------------------------------------------------------------------------


async def _chain(factory: Factory, n: int) -> list[Person]:
    """n accounts, each the line manager of the next: chain[0] manages chain[1] ..."""
    people = [await factory.user("colleague", login=False)]
    for _ in range(n - 1):
        people.append(await factory.user("colleague", manager=people[-1], login=False))
    return people


@pytest.mark.parametrize("length", [2, 3, 5])
async def test_a_line_management_cycle_is_refused(client, factory: Factory, state, length):
    d = await factory.user("director")
    chain = await _chain(factory, length)
    top, bottom = chain[0], chain[-1]
    r = await client.patch(f"/users/{top.id}", json={"line_manager_id": str(bottom.id)}, headers=d.headers)
    assert_422(r, "line_manager_id")
    assert "cycle" in r.json()["detail"]
    assert (await _stored(state, top.id)).line_manager_id is None


async def test_self_as_line_manager_is_refused(client, factory: Factory, state):
    d = await factory.user("director")
    p = await factory.user("colleague", manager=d, login=False)
    r = await client.patch(f"/users/{p.id}", json={"line_manager_id": str(p.id)}, headers=d.headers)
    assert_422(r, "line_manager_id")
    assert (await _stored(state, p.id)).line_manager_id == d.id


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"line_manager_id": "00000000-0000-0000-0000-000000000000"}, "line_manager_id"),
        ({"role": "superuser"}, "role"),
        ({"role": None}, "role"),
        ({"active": None}, "active"),
        ({"staff_type": "contractor"}, "staff_type"),
        ({"full_name": ""}, "full_name"),
    ],
)
async def test_bad_patches_change_nothing(client, factory: Factory, state, patch, field):
    d = await factory.user("director")
    p = await factory.user("colleague", manager=d, login=False)
    r = await client.patch(f"/users/{p.id}", json=patch, headers=d.headers)
    assert_422(r, field)
    stored = await _stored(state, p.id)
    assert (stored.role, stored.active, stored.line_manager_id, stored.staff_type, stored.full_name) == (
        "colleague", True, d.id, "employee", p.user.full_name)


async def test_director_changes_role_line_manager_and_staff_type(client, factory: Factory, state):
    d = await factory.user("director")
    m = await factory.user("colleague", login=False)
    p = await factory.user("colleague", manager=d, login=False)
    r = await client.patch(f"/users/{p.id}", json={"line_manager_id": str(m.id), "staff_type": "intern"},
                           headers=d.headers)
    assert r.status_code == 200, r.text
    assert r.json()["line_manager_id"] == str(m.id) and r.json()["staff_type"] == "intern"
    r = await client.patch(f"/users/{p.id}", json={"line_manager_id": None, "role": "director"}, headers=d.headers)
    assert r.status_code == 200
    assert r.json()["line_manager_id"] is None and r.json()["role"] == "director"


async def test_a_line_manager_cannot_become_a_trustee(client, factory: Factory, state):
    d = await factory.user("director")
    m = await factory.user("colleague", login=False)
    await factory.user("colleague", manager=m, login=False)
    r = await client.patch(f"/users/{m.id}", json={"role": "trustee"}, headers=d.headers)
    assert_422(r, "role")
    assert (await _stored(state, m.id)).role == "colleague"


@pytest.mark.parametrize(("patch", "field"), [({"active": False}, "active"), ({"role": "colleague"}, "role")])
async def test_a_director_cannot_deactivate_or_demote_themself(client, factory: Factory, state, patch, field):
    d = await factory.user("director")
    assert_422(await client.patch(f"/users/{d.id}", json=patch, headers=d.headers), field)
    stored = await _stored(state, d.id)
    assert stored.active and stored.role == "director"


async def test_unknown_account_is_404(client, factory: Factory):
    d = await factory.user("director")
    for method, body in (("GET", None), ("PATCH", {"active": False})):
        r = await client.request(method, f"/users/{uuid.uuid4()}", json=body, headers=d.headers)
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = await client.get("/users/not-a-uuid", headers=d.headers)
    assert r.status_code == 422


async def test_director_gets_one_account(client, factory: Factory):
    d = await factory.user("director")
    p = await factory.user("colleague", login=False)
    r = await client.get(f"/users/{p.id}", headers=d.headers)
    assert r.status_code == 200 and r.json()["email"] == p.email


# -- listing ------------------------------------------------------------------------------


async def test_list_pages_through_every_account_once(client, factory: Factory):
    d = await factory.user("director")
    for _ in range(6):
        await factory.user("colleague", login=False)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/users", params=params, headers=d.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 3
        seen += [u["email"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 7 and seen == sorted(seen) and len(set(seen)) == 7


async def test_list_filters_by_active(client, factory: Factory):
    d = await factory.user("director")
    p = await factory.user("colleague", login=False)
    await client.patch(f"/users/{p.id}", json={"active": False}, headers=d.headers)
    r = await client.get("/users", params={"active": "false"}, headers=d.headers)
    assert [u["id"] for u in r.json()["items"]] == [str(p.id)]


async def test_a_forged_cursor_is_400(client, factory: Factory, state):
    d = await factory.user("director")
    genuine = state.cursors.encode("users", ["a@test.kmm"])
    body, mac = genuine.split(".")
    other_list = state.cursors.encode("service-clients", ["a"])
    for cursor in ("nonsense", f"{body}.{mac[:-1]}A" if mac[-1] != "A" else f"{body}.{mac[:-1]}B", other_list,
                   "eyJ4Ijoxfq.AAAA"):
        r = await client.get("/users", params={"cursor": cursor}, headers=d.headers)
        assert r.status_code == 400, (cursor, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/invalid-cursor")


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
async def test_bad_limits_are_422(client, factory: Factory, limit):
    d = await factory.user("director")
    r = await client.get("/users", params={"limit": limit}, headers=d.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM


async def test_limit_bounds_are_allowed(client, factory: Factory):
    d = await factory.user("director")
    for limit in ("1", "200"):
        assert (await client.get("/users", params={"limit": limit}, headers=d.headers)).status_code == 200


async def test_the_password_is_never_in_any_response(client, factory: Factory):
    d = await factory.user("director")
    r = await client.get("/users", headers=d.headers)
    assert PASSWORD not in r.text and "password_hash" not in r.text and "$argon2" not in r.text



async def test_a_refused_director_only_call_is_audited(client, factory, state):
    from sqlmodel import select

    from app.models.audit import AuditEvent

    colleague = await factory.user("colleague")
    r = await client.get("/users", headers=colleague.headers)
    assert r.status_code == 403
    assert (r.json()["rule"], r.json()["clause"]) == ("director-only", "§4.5")
    async with state.sessionmaker() as session:
        events = list((await session.execute(
            select(AuditEvent).where(AuditEvent.action == "endpoint.denied"))).scalars())
    assert [(e.actor_id, e.decision, e.rule, e.resource_id) for e in events] == [
        (colleague.id, "deny", "director-only", "/users")]
