"""If-Match is read at the HTTP layer (app.deps.IfMatch), before the request's body: an
update without it is 428 whatever else is wrong with it, and changes nothing."""

from __future__ import annotations

from tests.factory import Factory
from tests.policy.org import db_record, events, make_record, make_subject


async def test_an_update_without_if_match_is_428_before_its_body_is_checked(client, factory: Factory):
    alice = await factory.user("colleague")
    subject = await make_subject(client, alice)
    rec = await make_record(client, alice, subject["id"], "confidential")
    for url, body in ((f"/records/{rec['id']}", {"classification": "no such class"}),
                      ("/records/not-an-id", {"title": "x"})):
        r = await client.patch(url, json=body, headers=alice.headers)
        assert r.status_code == 428, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("precondition-required")
        assert "no such class" not in r.text
    assert (await db_record(factory, rec["id"])).version == 1
    assert await events(factory, action="record.update") == []
