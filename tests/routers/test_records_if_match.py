"""If-Match is read at the HTTP layer (app.deps.IfMatch) and refused only once the request is
otherwise valid: bad input is 422 whatever If-Match says, and changes nothing."""

from __future__ import annotations

import pytest

from tests.factory import Factory
from tests.policy.org import db_record, events


@pytest.mark.parametrize("if_match", [None, "*", "null", '"v9"'])
async def test_bad_input_is_422_before_if_match_is_looked_at(client, factory: Factory, if_match):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    rec = await factory.record(by=alice, subject=subject)
    headers = {**alice.headers, **({"If-Match": if_match} if if_match is not None else {})}
    for url, body in ((f"/records/{rec['id']}", {"classification": "no such class"}),
                      (f"/records/{rec['id']}", {"retention_until": [[{}]]}),
                      ("/records/not-an-id", {"title": "x"})):
        r = await client.patch(url, json=body, headers=headers)
        assert r.status_code == 422, (url, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "no such class" not in r.text
    assert (await db_record(factory, rec["id"])).version == 1
    assert await events(factory, action="record.update") == []
