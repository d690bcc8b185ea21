"""GET /compliance/summary: each check's ids and count, one SQL query each (DESIGN §5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from app.policy.actor import Actor
from app.workflows import compliance

FINE = {"status": "not_required"}
MINE = ("records_past_retention", "reviews_overdue", "consent_pending")


async def _chosen(factory, manager, alice, subject_id, **kw):  # type: ignore[no-untyped-def]
    """Alice's record, with a retention date her line manager chose (§6.5)."""
    return await factory.record(by=manager, subject=subject_id, custodian_id=str(alice.id), **kw)


async def _seed(client, factory, clock):  # type: ignore[no-untyped-def]
    director = await factory.user("director")
    manager = await factory.user("colleague", manager=director)
    alice = await factory.user("colleague", manager=manager)
    subj = await factory.subject(by=alice)
    now = clock.now()
    past = (now - timedelta(days=1)).isoformat()
    made = {
        "records_past_retention": await _chosen(factory, manager, alice, subj["id"], consent=FINE,
                                                retention_until=past),
        "reviews_overdue": await factory.record(by=alice, subject=subj, consent=FINE, review_due=past),
        "consent_pending": await factory.record(by=alice, subject=subj),
    }
    # in order: fine; past retention but held; everything wrong but destroyed
    await factory.record(by=alice, subject=subj, consent={"status": "obtained", "obtained_at": past})
    held = await _chosen(factory, manager, alice, subj["id"], consent=FINE, retention_until=past)
    r = await client.post(f"/records/{held['id']}/legal-hold", headers=director.headers,
                          json={"legal_hold": True, "reason": "claim"})
    assert r.status_code == 200
    gone = await _chosen(factory, manager, alice, subj["id"], retention_until=past,
                           review_due=past)
    r = await client.delete(f"/records/{gone['id']}", headers=manager.headers, params={"reason": "done"})
    assert r.status_code == 200
    return director, manager, alice, made


async def test_summary_lists_one_item_in_each_record_check(client, factory, clock) -> None:  # type: ignore[no-untyped-def]
    director, _, _, made = await _seed(client, factory, clock)
    r = await client.get("/compliance/summary", headers=director.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == list(compliance.checks())
    for name in MINE:
        assert body[name] == {"ids": [made[name]["id"]], "count": 1}
    for name, item in body.items():
        assert set(item) == {"ids", "count"} and item["count"] == len(item["ids"])
        if name not in MINE:
            assert item == {"ids": [], "count": 0}  # nothing of other kinds was seeded


async def test_each_check_is_one_sql_query(client, factory, clock, state, settings) -> None:  # type: ignore[no-untyped-def]
    director, *_ = await _seed(client, factory, clock)
    statements: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    event.listen(state.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with state.sessionmaker() as session:
            await compliance.summary(session, actor=Actor.for_user(director.user), now=clock.now(),
                                     settings=settings)
    finally:
        event.remove(state.engine.sync_engine, "before_cursor_execute", count)
    reads = [s for s in statements if s in ("SELECT", "WITH")]
    assert len(reads) == len(compliance.checks())


@pytest.mark.parametrize("who", ["colleague", "trustee"])
async def test_only_directors_see_the_summary(client, factory, clock, who) -> None:  # type: ignore[no-untyped-def]
    _, manager, *_ = await _seed(client, factory, clock)
    person = manager if who == "colleague" else await factory.user("trustee")
    r = await client.get("/compliance/summary", headers=person.headers)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["rule"] and r.json()["clause"]
    assert "ids" not in r.text
    assert (await client.get("/compliance/summary")).status_code == 401


async def test_records_whose_custodian_left_staff_are_listed_for_handing_on(client, factory, clock) -> None:  # type: ignore[no-untyped-def]
    """§4.2: a record is kept by the colleague directly responsible; once its custodian is a trustee
    or deactivated, nobody keeps it by that relation, and a director must hand it on."""
    director = await factory.user("director")
    alice = await factory.user("colleague", manager=director)
    bob = await factory.user("colleague", manager=director)
    subj = await factory.subject(by=alice)
    kept = await factory.record(by=alice, subject=subj, consent=FINE)
    by_bob = await factory.record(by=bob, subject=subj, consent=FINE)
    general = await factory.record(by=bob, subject=subj, consent=FINE, classification="general")
    r = await client.get("/compliance/summary", headers=director.headers)
    assert r.json()["records_without_active_custodian"] == {"ids": [], "count": 0}

    r = await client.patch(f"/users/{alice.id}", headers=director.headers, json={"role": "trustee"})
    assert r.status_code == 200, r.text
    r = await client.patch(f"/users/{bob.id}", headers=director.headers, json={"active": False})
    assert r.status_code == 200, r.text
    r = await client.get("/compliance/summary", headers=director.headers)
    assert r.json()["records_without_active_custodian"] == {
        "ids": sorted([kept["id"], by_bob["id"], general["id"]]), "count": 3}
