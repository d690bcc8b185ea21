"""/service-clients: directors create, list and deactivate other KMM systems."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.models.audit import AuditEvent
from app.models.service_clients import ServiceClient
from tests.factory import Factory

PROBLEM = "application/problem+json"


async def _count(state) -> int:  # type: ignore[no-untyped-def]
    async with state.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(ServiceClient))).scalar_one()


async def test_create_returns_the_secret_and_audits_without_it(client, factory: Factory, state):
    d = await factory.user("director")
    body = {"name": "Funder reports", "scopes": ["reports:read", "reports:read"]}
    r = await client.post("/service-clients", json=body, headers=d.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["client_id"].startswith("kmm-") and len(body["client_secret"]) >= 40
    assert body["scopes"] == ["reports:read"] and body["active"] is True
    async with state.sessionmaker() as s:
        events = list((await s.execute(select(AuditEvent).where(AuditEvent.action == "service_client.create")))
                      .scalars())
    assert len(events) == 1 and events[0].actor_id == d.id
    assert body["client_secret"] not in str(events[0].detail)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["records:destroy"]}, "scopes"),
        ({"name": "", "scopes": []}, "name"),
        ({"scopes": []}, "name"),
        ({"name": "x", "scopes": "reports:read"}, "scopes"),
    ],
)
async def test_bad_clients_are_422_and_nothing_is_written(client, factory: Factory, state, body, field):
    d = await factory.user("director")
    r = await client.post("/service-clients", json=body, headers=d.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert any(e["loc"][-1] == field for e in r.json()["errors"])
    assert await _count(state) == 0


async def test_list_pages(client, factory: Factory, state):
    d = await factory.user("director")
    for i in range(3):
        assert (await client.post("/service-clients", json={"name": f"c{i}", "scopes": []},
                                  headers=d.headers)).status_code == 201
    r1 = (await client.get("/service-clients", params={"limit": 2}, headers=d.headers)).json()
    r2 = (await client.get("/service-clients", params={"limit": 2, "cursor": r1["next_cursor"]},
                           headers=d.headers)).json()
    assert len(r1["items"]) == 2 and len(r2["items"]) == 1 and r2["next_cursor"] is None
    ids = [c["client_id"] for c in r1["items"] + r2["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    r = await client.get("/service-clients", params={"cursor": "forged.cursor"}, headers=d.headers)
    assert r.status_code == 400


async def test_deactivate(client, factory: Factory, state):
    d = await factory.user("director")
    c = (await client.post("/service-clients", json={"name": "c", "scopes": []}, headers=d.headers)).json()
    assert (await client.delete(f"/service-clients/{c['id']}", headers=d.headers)).status_code == 204
    listed = (await client.get("/service-clients", headers=d.headers)).json()["items"]
    assert [x["active"] for x in listed] == [False]
    r = await client.delete(f"/service-clients/{uuid.uuid4()}", headers=d.headers)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


# -- rotating a secret -------------------------------------------------------------------------


def _cc(c: dict, secret: str) -> dict[str, str]:  # type: ignore[type-arg]
    return {"grant_type": "client_credentials", "client_id": c["client_id"], "client_secret": secret}


async def test_a_director_rotates_a_secret_and_the_old_one_stops_at_once(client, factory: Factory, state):
    d = await factory.user("director")
    c = (await client.post("/service-clients", json={"name": "c", "scopes": ["reports:read"]},
                           headers=d.headers)).json()
    old_token = (await client.post("/auth/token", data=_cc(c, c["client_secret"]))).json()["access_token"]
    r = await client.post(f"/service-clients/{c['id']}/secret", headers=d.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client_id"] == c["client_id"] and body["id"] == c["id"]
    assert body["client_secret"] != c["client_secret"] and len(body["client_secret"]) >= 40
    assert r.headers["cache-control"] == "no-store"
    refused = await client.post("/auth/token", data=_cc(c, c["client_secret"]))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    # Tokens got with the old secret end too: it may have leaked.
    stale = await client.get("/reports/monitoring", headers={"Authorization": f"Bearer {old_token}"})
    assert stale.status_code == 401
    ok = await client.post("/auth/token", data=_cc(c, body["client_secret"]))
    assert ok.status_code == 200, ok.text
    # Shown once: never listed, never in the audit trail.
    listed = (await client.get("/service-clients", headers=d.headers)).text
    assert body["client_secret"] not in listed
    async with state.sessionmaker() as s:
        events = list((await s.execute(select(AuditEvent).where(AuditEvent.action == "service_client.rotate_secret")))
                      .scalars())
        stored = (await s.execute(select(ServiceClient))).scalar_one()
    assert [(e.actor_id, str(e.resource_id), e.decision) for e in events] == [(d.id, c["id"], "allow")]
    assert body["client_secret"] not in str(events[0].detail) and body["client_secret"] not in stored.secret_hash


async def test_only_a_director_rotates_and_nothing_changes_otherwise(client, factory: Factory, state):
    d = await factory.user("director")
    p = await factory.user("colleague", manager=d)
    c = (await client.post("/service-clients", json={"name": "c", "scopes": []}, headers=d.headers)).json()
    r = await client.post(f"/service-clients/{c['id']}/secret", headers=p.headers)
    assert r.status_code == 403 and r.json()["rule"] == "director-only" and r.json()["clause"] == "§4.5"
    assert "client_secret" not in r.text
    r = await client.post(f"/service-clients/{uuid.uuid4()}/secret", headers=d.headers)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert (await client.post("/auth/token", data=_cc(c, c["client_secret"]))).status_code == 200
