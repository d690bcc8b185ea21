"""Nobody reviews, or places or lifts a legal hold on, their own personnel file, a director
included (§3.6): the rule table's exclusion yields to the director's overrides here too."""

from __future__ import annotations

from typing import Any

import pytest

from tests import dataprot as dp
from tests.factory import Factory


async def _file(factory: Factory) -> tuple[Any, Any, dict[str, Any]]:
    """``boss``, a director with a personnel file kept by ``keeper``, another director."""
    keeper = await factory.user("director")
    boss = await factory.user("director", manager=keeper)
    file = await factory.record(by=keeper, subject=await factory.employee_subject(by=keeper, employee=boss),
                                classification="personnel")
    return keeper, boss, file


@pytest.mark.parametrize(("path", "body", "action"), [
    ("review", {"note": "looks fine"}, "record.review"),
    ("legal-hold", {"legal_hold": True, "reason": "mine"}, "record.legal_hold"),
])
async def test_the_employee_it_is_about_is_refused_and_audited(client, factory: Factory, state, path, body,
                                                               action):
    keeper, boss, file = await _file(factory)
    r = await client.post(f"/records/{file['id']}/{path}", headers=boss.headers, json=body)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert (r.json()["rule"], r.json()["clause"]) == ("personnel", "§3.6")
    assert "version" not in r.json() and "review_due" not in r.text
    [denied] = [e for e in await dp.events(state, action, file["id"]) if e.decision == "deny"]
    assert denied.actor_id == boss.id
    unchanged = await client.get(f"/records/{file['id']}", headers=keeper.headers)
    assert unchanged.json()["version"] == file["version"] and unchanged.json()["legal_hold"] is False
    # another director may
    r = await client.post(f"/records/{file['id']}/{path}", headers=keeper.headers, json=body)
    assert r.status_code == 200, r.text
