"""GET /records: filters, cursor pagination, and leaving out what the caller may not read."""

from __future__ import annotations

from tests.factory import Factory


async def _ids(client, headers, **params) -> list[str]:  # type: ignore[no-untyped-def]
    r = await client.get("/records", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


async def test_filters(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director, login=False)
    alice = await factory.user("colleague", manager=manager)
    ben = await factory.user("colleague", manager=manager)
    s1, s2 = await factory.subject(by=alice), await factory.subject(by=alice)
    a = await factory.record(by=alice, subject=s1)
    b = await factory.record(by=alice, subject=s2, classification="sensitive", purpose="funder_reporting")
    c = await factory.record(by=ben, subject=s1, classification="general")
    d = await factory.record(by=ben, subject=s2, purpose="equal_opportunities_monitoring")
    h = director.headers  # a director reads general and confidential, not sensitive (b)
    assert sorted(await _ids(client, h)) == sorted([a["id"], c["id"], d["id"]])
    assert sorted(await _ids(client, h, subject_id=s1["id"])) == sorted([a["id"], c["id"]])
    assert sorted(await _ids(client, h, classification="confidential")) == sorted([a["id"], d["id"]])
    assert await _ids(client, h, purpose="equal_opportunities_monitoring") == [d["id"]]
    assert sorted(await _ids(client, h, custodian_id=str(ben.id))) == sorted([c["id"], d["id"]])
    # An empty cursor is no cursor (schemathesis found it once answering 500).
    assert sorted(await _ids(client, h, cursor="")) == sorted([a["id"], c["id"], d["id"]])
    # Statements are built per kind of actor: another colleague, the same statement, their own rows.
    assert await _ids(client, ben.headers) == sorted([c["id"], d["id"]])
    assert await _ids(client, h, custodian_id=str(ben.id), classification="general") == [c["id"]]
    assert await _ids(client, alice.headers, purpose="funder_reporting") == [b["id"]]
    assert await _ids(client, h, classification="sensitive") == []
    for bad in ({"classification": "secret"}, {"purpose": "gossip"}, {"subject_id": "nope"},
                {"custodian_id": "1"}):
        r = await client.get("/records", headers=h, params=bad)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert next(iter(bad)) in r.json()["detail"]


async def test_lists_leave_out_what_the_caller_may_not_read_and_destroyed_records(client, factory: Factory):
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    ben = await factory.user("colleague", manager=director)
    trustee = await factory.user("trustee")
    subject = await factory.subject(by=alice)
    general = await factory.record(by=alice, subject=subject, classification="general")
    conf = await factory.record(by=alice, subject=subject, title="conf-secret-title")
    sens = await factory.record(by=alice, subject=subject, classification="sensitive")
    gone = await factory.record(by=alice, subject=subject)
    assert (await client.delete(f"/records/{gone['id']}", params={"reason": "r"},
                                headers=manager.headers)).status_code == 200
    assert sorted(await _ids(client, alice.headers)) == sorted([general["id"], conf["id"], sens["id"]])
    assert sorted(await _ids(client, manager.headers)) == sorted([general["id"], conf["id"], sens["id"]])
    assert sorted(await _ids(client, director.headers)) == sorted([general["id"], conf["id"]])
    r = await client.get("/records", headers=ben.headers)
    assert [i["id"] for i in r.json()["items"]] == [general["id"]] and "conf-secret-title" not in r.text
    assert await _ids(client, trustee.headers) == [general["id"]]
    await factory.share(by=alice, record=conf, to=trustee, reason="review")
    assert sorted(await _ids(client, trustee.headers)) == sorted([general["id"], conf["id"]])


async def test_cursor_pagination_is_stable_and_complete(client, factory: Factory):
    alice = await factory.user("colleague")
    other = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    mine = [(await factory.record(by=alice, subject=subject))["id"] for _ in range(7)]
    await factory.record(by=other, subject=subject)  # interleaved, not Alice's
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/records", headers=alice.headers, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= 3
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7 and set(seen) == set(mine)
    assert seen == sorted(seen, key=lambda s: int(s.replace("-", ""), 16))  # a stable order (by id)
    # The same request gives the same page.
    first = await client.get("/records", headers=alice.headers, params={"limit": 3})
    again = await client.get("/records", headers=alice.headers, params={"limit": 3})
    assert first.json() == again.json()


async def test_forged_cursor_and_limit_bounds(client, factory: Factory):
    alice = await factory.user("colleague")
    subject = await factory.subject(by=alice)
    for _ in range(3):
        await factory.record(by=alice, subject=subject, classification="general")
    r = await client.get("/records", headers=alice.headers, params={"limit": 1})
    cursor = r.json()["next_cursor"]
    assert cursor
    body, mac = cursor.split(".", 1)
    forged = [f"{body}.{'A' * len(mac)}", "not-a-cursor", f"{body[:-2]}xx.{mac}", "."]
    subjects_cursor = (await client.get("/subjects", headers=alice.headers, params={"limit": 1})).json()
    for bad in forged:
        r = await client.get("/records", headers=alice.headers, params={"cursor": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert subjects_cursor["next_cursor"] is None  # only one subject; build one from another list:
    await factory.subject(by=alice)
    other = (await client.get("/subjects", headers=alice.headers, params={"limit": 1})).json()["next_cursor"]
    assert (await client.get("/records", headers=alice.headers, params={"cursor": other})).status_code == 400
    for limit in (0, -1, 201, "x"):
        r = await client.get("/records", headers=alice.headers, params={"limit": limit})
        assert r.status_code == 422, (limit, r.text)
        assert "limit" in r.text
    assert (await client.get("/records", headers=alice.headers, params={"limit": 200})).status_code == 200
