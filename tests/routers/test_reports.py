"""GET /reports/monitoring: aggregates only; 1-4 shown as "<5"; nothing derivable by subtraction (§2.3)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import dataprot as dp


def _numbers(value: Any) -> list[int]:
    """Every integer anywhere in a JSON body."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


async def _seed(client, factory):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    service_users = [await factory.subject(by=alice) for _ in range(7)]
    for _ in range(2):
        await factory.subject(by=alice, category="member")
    s = service_users[0]["id"]
    # records: 6 service delivery (confidential), 5 funder reporting (3 confidential, 2 general)
    for _ in range(6):
        await factory.record(by=alice, subject=s)
    for _ in range(3):
        await factory.record(by=alice, subject=s, purpose="funder_reporting")
    for _ in range(2):
        await factory.record(by=alice, subject=s, purpose="funder_reporting", classification="general")
    # a destroyed record is not counted
    manager_rec = await factory.record(by=alice, subject=s)
    r = await client.delete(f"/records/{manager_rec['id']}", headers=director.headers, params={"reason": "x"})
    assert r.status_code == 200
    return director, alice


async def test_counts_are_grouped_and_small_ones_suppressed(client, factory) -> None:  # type: ignore[no-untyped-def]
    director, _ = await _seed(client, factory)
    r = await client.get("/reports/monitoring", headers=director.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    subjects = {c["category"]: c["count"] for c in body["subjects_by_category"]}
    assert subjects == {"service_user": 7, "member": "<5", "employee": 0, "trustee": 0, "volunteer": 0,
                        "intern": 0, "organisation": 0}
    records = {(c["purpose"], c["classification"]): c["count"]
               for c in body["records_by_purpose_and_classification"]}
    assert records[("service_delivery", "confidential")] == 6
    assert records[("funder_reporting", "confidential")] == "<5"
    assert records[("funder_reporting", "general")] == "<5"
    assert {v for k, v in records.items() if k not in {("service_delivery", "confidential"),
                                                       ("funder_reporting", "confidential"),
                                                       ("funder_reporting", "general")}} == {0}


async def test_no_total_lets_a_suppressed_count_be_worked_out(client, factory) -> None:  # type: ignore[no-untyped-def]
    """The subtraction case. Subjects: 7 + 2 = 9; were 9 published, 9 - 7 would give the members.
    Records: by purpose alone the cells are 6 and 5, both shown, so their sum 11 is the total;
    by classification alone confidential is 9, so general = 11 - 9 = 2 would follow. The report
    publishes no total and one table per population, so neither 9 nor 11 can be had."""
    director, _ = await _seed(client, factory)
    body = (await client.get("/reports/monitoring", headers=director.headers)).json()
    assert set(body) == {"as_of", "suppression", "subjects_by_category", "records_by_purpose_and_classification"}
    assert not any("total" in key for key in body)
    published = _numbers(body)
    subjects_shown = sum(_numbers(body["subjects_by_category"]))
    records_shown = sum(_numbers(body["records_by_purpose_and_classification"]))
    assert (subjects_shown, records_shown) == (7, 6)  # less than the true 9 and 11
    for true_total in (9, 11):
        assert true_total not in published


@pytest.mark.parametrize("who", ["director", "trustee", "client"])
async def test_directors_trustees_and_clients_with_reports_read(client, factory, state, who) -> None:  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    headers = {"director": director.headers,
               "trustee": (await factory.user("trustee")).headers,
               "client": await factory.service_client(by=director, scopes=["reports:read"])}[who]
    r = await client.get("/reports/monitoring", headers=headers)
    assert r.status_code == 200, r.text
    assert await dp.events(state, "report.monitoring")


@pytest.mark.parametrize("who", ["colleague", "client"])
async def test_others_may_not_read_reports(client, factory, state, who) -> None:  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    headers = ((await factory.user("colleague", manager=director)).headers if who == "colleague"
               else await factory.service_client(by=director, scopes=["records:read"]))
    r = await client.get("/reports/monitoring", headers=headers)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert (r.json()["rule"], r.json()["clause"]) == ("monitoring-report", "§2.3")
    assert "subjects_by_category" not in r.text
    assert [e.decision for e in await dp.events(state, "report.monitoring")] == ["deny"]


# -- a client that adds to the counts does not read them (§2.3) ------------------------------


@pytest.mark.parametrize("adds", ["subjects:write", "records:write"])
async def test_a_client_may_not_both_add_to_the_counts_and_read_them(client, factory, state, adds) -> None:  # type: ignore[no-untyped-def]
    """Adding subjects (or records) to a suppressed cell until it shows a number, then
    subtracting what was added, would give the suppressed count: no client holds both."""
    director = await factory.user("director")
    r = await client.post("/service-clients", headers=director.headers,
                          json={"name": "Mixed", "scopes": ["reports:read", adds]})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["rule"], body["clause"]) == ("report-scopes", "§2.3")
    assert [e["loc"][-1] for e in body["errors"]] == ["scopes"]
    assert await dp.raw_rows(state, "service_clients") == []
    for alone in (["reports:read", "subjects:read", "records:read"], [adds, "subjects:read", "records:read"]):
        r = await client.post("/service-clients", headers=director.headers, json={"name": "One", "scopes": alone})
        assert r.status_code == 201, r.text


async def test_a_client_stored_with_both_is_refused_the_report(client, factory, state) -> None:  # type: ignore[no-untyped-def]
    """Whatever its token asks for: a token of reports:read alone from a client that also
    holds subjects:write is refused, so two tokens cannot split the attack."""
    from sqlalchemy import update

    from app.models.service_clients import ServiceClient

    director = await factory.user("director")
    await factory.subject(by=director, category="volunteer")
    headers = await factory.service_client(by=director, scopes=["reports:read"])
    async with state.engine.begin() as conn:
        await conn.execute(update(ServiceClient).values(scopes=["reports:read", "subjects:write"]))
    r = await client.get("/reports/monitoring", headers=headers)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert (r.json()["rule"], r.json()["clause"]) == ("report-scopes", "§2.3")
    assert "subjects_by_category" not in r.text
    denied = await dp.events(state, "report.monitoring")
    assert [e.decision for e in denied] == ["deny"]
