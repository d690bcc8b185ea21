"""Errors that teach: a denial names who may do what was refused (the rules that would allow
it, from the rule table), malformed JSON says where, and a date without a time zone says
how to fix it. None of them echoes the input, and none changes anything."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factory import Factory
from tests.policy.org import build_org, db_record, events, has_content

LINE_MANAGER = {"rule": "line-manager", "clause": "§1.3, §3.3, §4.2"}
DIRECTOR = {"rule": "director", "clause": "§3.1, §3.4"}


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def test_a_custodian_destroying_a_confidential_record_is_told_who_may(
        client: httpx.AsyncClient, factory: Factory) -> None:
    org = await build_org(factory, "confidential", login=["custodian"])
    before = await db_record(factory, org.record_id)
    r = await client.delete(f"/records/{org.record_id}", headers=org["custodian"].headers,
                            params={"reason": "tidying up"})
    body = _problem(r, 403)
    assert "only the custodian's line manager or a director may destroy a confidential record" in body["detail"]
    # The missing permission, not the rule the custodian already satisfies.
    assert (body["rule"], body["clause"]) == (LINE_MANAGER["rule"], LINE_MANAGER["clause"])
    assert body["allowed_by"] == [LINE_MANAGER, DIRECTOR]
    assert org.content not in r.text and org.title not in r.text
    after = await db_record(factory, org.record_id)
    assert (after.version, after.destroyed_at) == (before.version, None) and await has_content(factory, org.record_id)
    denied = await events(factory, action="record.destroy", resource_id=org.record_id, actor_id=org["custodian"].id)
    assert [(e.decision, e.rule, e.clause) for e in denied] == [("deny", "line-manager", "§1.3, §3.3, §4.2")]


async def test_a_colleague_reading_a_sensitive_record_is_told_who_may(
        client: httpx.AsyncClient, factory: Factory) -> None:
    org = await build_org(factory, "sensitive", login=["colleague", "director"])
    for who in ("colleague", "director"):  # a director does not read a sensitive record by rank
        r = await client.get(f"/records/{org.record_id}", headers=org[who].headers)
        body = _problem(r, 403)
        assert ("only the custodian, the custodian's line manager, a colleague named as entitled "
                "or the holder of an emergency grant may read a sensitive record") in body["detail"]
        assert (body["rule"], body["clause"]) == ("named", "§3.2")
        assert [a["rule"] for a in body["allowed_by"]] == ["custodian", "line-manager", "named", "emergency"]
        assert org.content not in r.text and org.title not in r.text


async def test_nobody_shares_a_personnel_record(client: httpx.AsyncClient, factory: Factory) -> None:
    org = await build_org(factory, "personnel", login=["director"])
    r = await client.post(f"/records/{org.record_id}/shares", headers=org["director"].headers,
                          json={"user_id": str(org["target"].id), "reason": "cover"})
    body = _problem(r, 403)
    assert "no one may share a personnel record" in body["detail"]
    assert (body["rule"], body["clause"], body["allowed_by"]) == ("personnel", "§4.3", [])


async def test_malformed_json_says_where(client: httpx.AsyncClient, factory: Factory) -> None:
    director = await factory.user("director")
    raw = b'{"kind": "individual",\n  "name": "SECRET-NAME" "category": "member"}'
    r = await client.post("/subjects", content=raw, headers={**director.headers, "content-type": "application/json"})
    body = _problem(r, 422)
    assert body["detail"].startswith("the body is not valid JSON at line 2 column 25"), body["detail"]
    assert "SECRET-NAME" not in r.text
    assert body["errors"] == [{"loc": ["body", 47], "msg": "JSON decode error: Expecting ',' delimiter",
                               "type": "json_invalid"}]
    assert (await client.get("/subjects", headers=director.headers)).json()["items"] == []


@pytest.mark.parametrize("value", ["2030-01-01T09:00:00", "2030-01-01T09:00"])
async def test_a_date_without_a_time_zone_gets_a_hint(client: httpx.AsyncClient, factory: Factory,
                                                      value: str) -> None:
    director = await factory.user("director")
    subject = (await client.post("/subjects", headers=director.headers,
                                 json={"kind": "individual", "name": "Naive", "category": "member"})).json()
    r = await client.post("/records", headers=director.headers, json={
        "subject_id": subject["id"], "title": "t", "content": "c", "classification": "general",
        "purpose": "service_delivery", "review_due": value})
    body = _problem(r, 422)
    hint = "add a time zone, e.g. Z or +00:00"
    assert hint in body["detail"] and "review_due" in body["detail"]
    assert [e["loc"] for e in body["errors"]] == [["body", "review_due"]]
    assert hint in body["errors"][0]["msg"] and body["errors"][0]["type"] == "timezone_aware"
    listed = await client.get("/records", headers=director.headers)
    assert listed.json()["items"] == []


async def test_ones_own_personnel_file_is_refused_with_what_to_do_instead(
        client: httpx.AsyncClient, factory: Factory) -> None:
    org = await build_org(factory, "personnel", login=["employee"], afterwards="employee_with_grant")
    r = await client.get(f"/records/{org.record_id}", headers=org["employee"].headers)
    body = _problem(r, 403)
    assert (body["rule"], body["clause"]) == ("personnel", "§3.6")
    assert "asks the Director in writing" in body["detail"] and "allowed_by" not in body
    assert org.content not in r.text and org.title not in r.text
