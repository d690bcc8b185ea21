"""The authorised read is one query for the caller's session and the record (DESIGN §11)."""

from contextlib import contextmanager

from sqlalchemy import event

from tests.factory import Factory


@contextmanager
def statements(engine):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_read_asks_the_database_once_then_writes_its_audit_event(client, factory: Factory, state):
    alice = await factory.user("colleague")
    r = await client.post("/subjects", headers=alice.headers,
                          json={"kind": "individual", "name": "Sam", "category": "service_user"})
    r = await client.post("/records", headers=alice.headers, json={
        "subject_id": r.json()["id"], "title": "t", "content": "c", "classification": "confidential",
        "purpose": "service_delivery"})
    rid = r.json()["id"]
    with statements(state.engine) as seen:
        r = await client.get(f"/records/{rid}", headers=alice.headers)
    assert r.status_code == 200
    assert [s for s in seen if s not in ("BEGIN", "COMMIT")] == ["SELECT", "INSERT"]


async def test_a_revoked_session_is_refused_by_the_same_query(client, factory: Factory, state):
    alice = await factory.user("colleague")
    headers = dict(alice.headers)
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    with statements(state.engine) as seen:
        r = await client.get("/records/00000000-0000-0000-0000-000000000000", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert [s for s in seen if s not in ("BEGIN", "COMMIT")] == ["SELECT"]


async def test_an_unknown_record_is_404_for_a_live_session(client, factory: Factory):
    alice = await factory.user("colleague")
    r = await client.get("/records/00000000-0000-0000-0000-000000000000", headers=alice.headers)
    assert r.status_code == 404
