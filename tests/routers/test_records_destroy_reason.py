"""Why a record is shredded (§4.6) travels in the body of the DELETE or in `X-Reason`, not in the
URL that proxies log; `?reason=` still works and is marked deprecated in the OpenAPI document."""

from __future__ import annotations

import pytest

from app.models.records import Record
from tests.factory import Factory
from tests.policy.org import count, events


async def _setup(client, factory: Factory):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    return director, rec


@pytest.mark.parametrize("how", ["body", "header", "query"])
async def test_the_reason_in_the_body_a_header_or_the_query(client, factory: Factory, how):
    director, rec = await _setup(client, factory)
    reason = "past retention, letter 7"
    kw = {"body": {"json": {"reason": reason}}, "header": {"headers": {"X-Reason": reason}},
          "query": {"params": {"reason": reason}}}[how]
    headers = {**director.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
    r = await client.request("DELETE", f"/records/{rec['id']}", headers=headers, **kw)
    assert r.status_code == 200, r.text
    assert r.json()["reason"] == reason and r.json()["destroyed_by"] == str(director.id)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"json": {"reason": ""}},
        {"json": {}},
        {"json": {"reason": "x" * 501}},
        {"headers": {"X-Reason": ""}},
        {"json": {"reason": "one"}, "headers": {"X-Reason": "another"}},
        {"json": {"reason": "one"}, "params": {"reason": "another"}},
    ],
    ids=["none", "empty-body", "no-field", "too-long", "empty-header", "body-and-header-differ",
         "body-and-query-differ"],
)
async def test_a_missing_empty_or_contradictory_reason_is_422_and_changes_nothing(client, factory: Factory, kw):
    director, rec = await _setup(client, factory)
    before = await events(factory)
    headers = {**director.headers, **kw.pop("headers", {})}
    r = await client.request("DELETE", f"/records/{rec['id']}", headers=headers, **kw)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "reason" in r.json()["detail"]
    assert "another" not in r.text
    assert (await client.get(f"/records/{rec['id']}", headers=director.headers)).status_code == 200
    assert [e.action for e in await events(factory)] == [e.action for e in before] + ["record.read"]
    assert await count(factory, Record) == 1


async def test_openapi_documents_body_and_header_and_deprecates_the_query(app):
    op = app.openapi()["paths"]["/records/{record_id}"]["delete"]
    params = {(p["in"], p["name"]): p for p in op["parameters"]}
    assert params[("query", "reason")].get("deprecated") is True
    assert ("header", "x-reason") in params
    assert "requestBody" in op and op["requestBody"].get("required") is not True
