"""GET /audit-events and /audit-events/verify (directors only), and `kmm audit-verify`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from app import cli
from app.models.audit import AuditEvent
from app.workflows.audit.seal import seal_all
from app.workflows.audit.trail import add_event
from tests.audit_helpers import count, event_ids, tamper
from tests.factory import Factory


async def _events(state, specs: list[dict]) -> None:
    async with state.sessionmaker() as session:
        for spec in specs:
            add_event(session, now=spec.pop("now", state.clock.now()), **spec)
        await session.commit()


async def test_directors_list_events_newest_first_with_their_links(client, state, factory: Factory):
    director = await factory.user("director")
    await seal_all(state.engine, state.clock.now())
    await _events(state, [{"action": "test.unsealed"}])
    r = await client.get("/audit-events", headers=director.headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["action"] for i in items] == ["test.unsealed", "auth.login", "account.create"]
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)
    newest, login, created = items
    assert newest["hash"] is None and newest["prev_hash"] is None and newest["seq"] is None
    assert (created["seq"], login["seq"]) == (1, 2)
    assert created["prev_hash"] == "0" * 64 and login["prev_hash"] == created["hash"]
    assert login["actor_id"] == str(director.id) and login["actor_role"] == "director"
    assert login["decision"] == "allow" and login["rule"] == "credentials" and login["clause"] == "§6.6"
    assert r.json()["next_cursor"] is None


async def test_filters_combine(client, state, factory: Factory):
    director = await factory.user("director")
    other = await factory.user("colleague")
    record, elsewhere = uuid.uuid4(), uuid.uuid4()
    now = state.clock.now()
    await _events(state, [
        {"action": "record.read", "resource_type": "record", "resource_id": record, "decision": "allow",
         "now": now + timedelta(minutes=1)},
        {"action": "record.read", "resource_type": "record", "resource_id": record, "decision": "deny",
         "now": now + timedelta(minutes=2)},
        {"action": "record.read", "resource_type": "record", "resource_id": elsewhere, "decision": "deny",
         "now": now + timedelta(minutes=3)},
    ])

    async def actions(**params) -> list[tuple]:
        r = await client.get("/audit-events", params=params, headers=director.headers)
        assert r.status_code == 200, r.text
        return [(i["action"], i["resource_id"], i["decision"]) for i in r.json()["items"]]

    assert await actions(resource_type="record", resource_id=str(record)) == [
        ("record.read", str(record), "deny"), ("record.read", str(record), "allow")]
    assert await actions(resource_type="record", decision="deny") == [
        ("record.read", str(elsewhere), "deny"), ("record.read", str(record), "deny")]
    assert len(await actions(action="auth.login")) == 2
    assert await actions(actor_id=str(other.id)) == [("auth.login", str(other.id), "allow")]
    window = {"since": (now + timedelta(minutes=2)).isoformat(), "until": (now + timedelta(minutes=3)).isoformat()}
    assert await actions(**window) == [("record.read", str(record), "deny")]
    assert await actions(action="no.such.action") == []


async def test_cursor_pagination_visits_every_event_once(client, state, factory: Factory):
    director = await factory.user("director")
    await _events(state, [{"action": f"test.{i}"} for i in range(7)])
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/audit-events", params=params, headers=director.headers)
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) <= 3
        seen += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(await event_ids(state), reverse=True)
    assert len(seen) == 9  # account.create, auth.login, 7 test events


@pytest.mark.parametrize("role", ["colleague", "trustee"])
async def test_only_directors_read_or_verify_the_trail(client, state, factory: Factory, role):
    person = await factory.user(role)
    before = await count(state, AuditEvent)
    for path in ("/audit-events", "/audit-events/verify"):
        r = await client.get(path, headers=person.headers)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert (body["rule"], body["clause"]) == ("director-only", "§4.5")
        assert "items" not in body and "ok" not in body
    # only the two refusals themselves were written (endpoint.denied), nothing else
    assert await count(state, AuditEvent) == before + 2


async def test_the_trail_needs_a_login(client):
    for path in ("/audit-events", "/audit-events/verify"):
        r = await client.get(path)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("params", [
    {"actor_id": "not-a-uuid"},
    {"decision": "maybe"},
    {"since": "2026-01-01T00:00:00"},  # no timezone
    {"until": "yesterday"},
    {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    {"resource_id": "x" * 65},
    {"action": ""},
    {"limit": 0},
    {"limit": 201},
])
async def test_bad_filters_are_422(client, factory: Factory, params):
    director = await factory.user("director")
    r = await client.get("/audit-events", params=params, headers=director.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"]


async def test_a_forged_cursor_is_400(client, factory: Factory):
    director = await factory.user("director")
    r = await client.get("/audit-events", params={"cursor": "eyJ4Ijo.forged"}, headers=director.headers)
    assert r.status_code == 400
    assert r.json()["type"].endswith("invalid-cursor")


async def test_verify_seals_pending_events_and_names_a_tampered_one(client, state, factory: Factory):
    director = await factory.user("director")
    r = await client.get("/audit-events/verify", headers=director.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["ok"], body["checked"], body["first_broken_id"], body["pending"]) == (True, 2, None, 0)
    assert body["last_seq"] == 2 and len(body["head_hash"]) == 64
    first = (await event_ids(state))[0]
    await tamper(state, "UPDATE audit_events SET actor_role = 'trustee' WHERE id = :id", {"id": first},
                 table="audit_events")
    r = await client.get("/audit-events/verify", headers=director.headers)
    assert r.status_code == 200
    assert (r.json()["ok"], r.json()["first_broken_id"]) == (False, first)


async def test_cli_audit_verify_exits_non_zero_on_a_broken_chain(client, state, settings, monkeypatch):
    monkeypatch.setattr(cli, "_settings", lambda: settings)
    await _events(state, [{"action": "test.cli"}])
    (event_id,) = await event_ids(state)
    runner = CliRunner()
    # The command runs its own event loop: give it a thread of its own.
    ok = await asyncio.to_thread(runner.invoke, cli.cli, ["audit-verify"])
    assert ok.exit_code == 0, ok.output
    assert '"ok":true' in ok.output and '"checked":1' in ok.output
    await tamper(state, "UPDATE audit_events SET action = 'test.changed' WHERE id = :id", {"id": event_id},
                 table="audit_events")
    broken = await asyncio.to_thread(runner.invoke, cli.cli, ["audit-verify"])
    assert broken.exit_code == 1
    assert f'"first_broken_id":{event_id}' in broken.output
    assert f"broken at event {event_id}" in broken.output


async def test_verify_returns_the_head_to_anchor_elsewhere(client, state, factory: Factory):
    director = await factory.user("director")
    r = await client.get("/audit-events/verify", headers=director.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    ids = await event_ids(state)
    assert (body["last_seq"], body["head_event_id"], body["missing"]) == (2, ids[-1], 0)
    assert body["head"] == f"2:{body['head_hash']}"
    assert body["expected_head_found"] is None


async def test_cli_audit_verify_checks_an_expected_head(client, state, settings, monkeypatch):
    monkeypatch.setattr(cli, "_settings", lambda: settings)
    await _events(state, [{"action": "test.one"}, {"action": "test.two"}])
    runner = CliRunner()
    first = await asyncio.to_thread(runner.invoke, cli.cli, ["audit-verify"])
    assert first.exit_code == 0, first.output
    head = json.loads(first.stdout)["head"]
    await _events(state, [{"action": "test.three"}])
    later = await asyncio.to_thread(runner.invoke, cli.cli, ["audit-verify", "--expect-head", head])
    assert later.exit_code == 0, later.output
    assert json.loads(later.stdout)["expected_head_found"] is True
    # The tail cut off and sealed again: the chain no longer reaches the recorded head.
    await tamper(state, "DELETE FROM audit_seals WHERE seq >= 2", table="audit_seals")
    await tamper(state, "DELETE FROM audit_events WHERE action = 'test.two'", table="audit_events")
    cut = await asyncio.to_thread(runner.invoke, cli.cli, ["audit-verify", "--expect-head", head])
    assert cut.exit_code == 1
    assert json.loads(cut.stdout)["expected_head_found"] is False
    assert "does not reach the expected head 2:" in cut.stderr
    for bad in ("2", "x:" + "a" * 64, "2:" + "g" * 64, "2:abc"):
        refused = await asyncio.to_thread(runner.invoke, cli.cli, ["audit-verify", "--expect-head", bad])
        assert refused.exit_code == 2, bad
