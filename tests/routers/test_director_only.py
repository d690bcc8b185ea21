"""Directors-only routes: every one refuses anyone else through the one dependency
(app.deps.DirectorUser, or a ``director_only`` gate naming its own rule and clause), and
every refusal is an audit event.

The table below is the contract (README "Every door"); the walk covers every route the app
serves, so a new directors-only route that checks the role some other way fails here."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select, text
from sqlmodel import SQLModel, col

import app.models  # noqa: F401  (every table)
from app.models.audit import AuditEvent
from tests.factory import Factory

DIRECTOR = ("director-only", "§4.5")
ACCESS_REQUESTS = ("director-only", "§3.4")

# (method, path) -> the (rule, clause) a refusal cites.
DIRECTORS_ONLY: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/users"): DIRECTOR,
    ("GET", "/users"): DIRECTOR,
    ("GET", "/users/{user_id}"): DIRECTOR,
    ("PATCH", "/users/{user_id}"): DIRECTOR,
    ("POST", "/users/{user_id}/password"): DIRECTOR,
    ("POST", "/users/{user_id}/unlock"): DIRECTOR,
    ("POST", "/service-clients"): DIRECTOR,
    ("GET", "/service-clients"): DIRECTOR,
    ("DELETE", "/service-clients/{client_id}"): DIRECTOR,
    ("POST", "/service-clients/{client_id}/secret"): DIRECTOR,
    ("POST", "/emergency-grants"): DIRECTOR,
    ("DELETE", "/emergency-grants/{grant_id}"): DIRECTOR,
    ("POST", "/access-requests/{request_id}/decision"): ACCESS_REQUESTS,
    ("POST", "/access-requests/{request_id}/fulfil"): ACCESS_REQUESTS,
    ("POST", "/disclosures/{disclosure_id}/report"): DIRECTOR,
    ("POST", "/disclosures/{disclosure_id}/close"): DIRECTOR,
    ("POST", "/breach-reports/{report_id}/assign"): DIRECTOR,
    ("POST", "/records/{record_id}/legal-hold"): ("legal-hold", "§6.5"),
    ("POST", "/retention/sweep"): ("retention", "§6.5"),
    ("GET", "/compliance/summary"): DIRECTOR,
    ("GET", "/audit-events"): DIRECTOR,
    ("GET", "/audit-events/verify"): DIRECTOR,
    ("POST", "/webhooks"): DIRECTOR,
    ("GET", "/webhooks"): DIRECTOR,
    ("GET", "/webhooks/{webhook_id}"): DIRECTOR,
    ("DELETE", "/webhooks/{webhook_id}"): DIRECTOR,
    ("GET", "/webhooks/{webhook_id}/deliveries"): DIRECTOR,
}


def _routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    out = []
    for ctx in iter_route_contexts(app.router.routes):
        route = ctx.route
        if isinstance(route, APIRoute):
            out += [(method, route.path, route) for method in sorted(route.methods)]
    return out


async def _counts(state: Any) -> dict[str, int]:
    """Rows per table, outside the audit trail."""
    names = [t.name for t in SQLModel.metadata.sorted_tables if not t.name.startswith("audit_")]
    async with state.sessionmaker() as session:
        return {n: (await session.execute(text(f"SELECT count(*) FROM {n}"))).scalar_one() for n in names}


async def _denials(state: Any, actor_id: uuid.UUID) -> list[AuditEvent]:
    async with state.sessionmaker() as session:
        rows = list((await session.execute(
            select(AuditEvent).where(col(AuditEvent.actor_id) == actor_id, col(AuditEvent.decision) == "deny")
            .order_by(col(AuditEvent.id)))).scalars())
        session.expunge_all()
        return rows


def test_every_listed_route_exists(app) -> None:  # type: ignore[no-untyped-def]
    served = {(method, path) for method, path, _ in _routes(app)}
    assert set(DIRECTORS_ONLY) <= served, set(DIRECTORS_ONLY) - served


@pytest.mark.parametrize("who", ["colleague", "trustee"])
async def test_every_directors_only_route_refuses_through_one_audited_gate(
    client, factory: Factory, state, app, who
) -> None:  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    person = manager if who == "colleague" else await factory.user("trustee")
    before = await _counts(state)
    walked = 0
    for method, path, route in _routes(app):
        expected = DIRECTORS_ONLY.get((method, path))
        if expected is None:
            continue
        walked += 1
        url = path
        for name in route.param_convertors:
            url = url.replace("{" + name + "}", str(uuid.uuid4()))
        seen = len(await _denials(state, person.id))
        body = {} if method in ("POST", "PATCH") else None
        r = await client.request(method, url, headers=person.headers, json=body)
        where = f"{method} {path}"
        assert r.status_code == 403, (where, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json", where
        problem = r.json()
        assert problem["type"].endswith("/policy-denied"), where
        assert (problem["rule"], problem["clause"]) == expected, where
        events = (await _denials(state, person.id))[seen:]
        assert [(e.rule, e.clause) for e in events] == [expected], (where, events)
    assert walked == len(DIRECTORS_ONLY)
    assert await _counts(state) == before


async def test_a_refused_sweep_is_an_endpoint_event(client, factory: Factory, state) -> None:  # type: ignore[no-untyped-def]
    """The sweep's refusal is an endpoint event: it names the route and the method, nothing else."""
    director = await factory.user("director")
    colleague = await factory.user("colleague", manager=director)

    async def total() -> int:
        async with state.sessionmaker() as session:
            return int((await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one())

    before = await total()
    r = await client.post("/retention/sweep", headers=colleague.headers, json={"dry_run": True})
    assert r.status_code == 403
    (event,) = await _denials(state, colleague.id)
    assert (event.action, event.resource_type, event.resource_id) == ("endpoint.denied", "endpoint",
                                                                     "/retention/sweep")
    assert event.detail == {"method": "POST"}
    assert await total() == before + 1  # that event alone: no sweep ran


def test_no_route_checks_the_role_by_itself(app) -> None:  # type: ignore[no-untyped-def]
    """Every directors-only route depends on the one gate, and every route that does is listed."""
    from app.deps import director_gate

    gated = set()
    for method, path, route in _routes(app):
        stack = list(route.dependant.dependencies)
        while stack:
            dep = stack.pop()
            if director_gate(dep.call) is not None:
                gated.add((method, path))
            stack += dep.dependencies
    assert gated == set(DIRECTORS_ONLY)
