"""Database faults on PostgreSQL.

1. While requests flow, every connection of the service is terminated
   (`pg_terminate_backend`, found by the service's application_name), several times.
2. The service is pointed at a loopback port through a TCP relay to PostgreSQL: with the
   relay down nothing listens there; then it comes up, goes down mid-traffic, comes back.

Each request gets its answer (a hang guard bounds every one) which is either the normal
one or 503 problem+json with Retry-After, never a 500. /readyz says 503 while the database
is away. When it is back, the same app serves again with no restart. No committed write is
lost and none is half-made: every record the service said it created is there with its
content and its audit event, and the database holds nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.migrations import upgrade
from app.main import create_app
from tests.databases import fresh_database, sync_engine
from tests.factory import Factory, Person
from tests.live_server import free_port

pytestmark = pytest.mark.postgres_only

HANG_GUARD_SECONDS = 60  # far above the engine's own timeouts: only a hang reaches it
WORKERS = 6
ROUNDS = 12


@dataclass
class Outcomes:
    statuses: Counter[int] = field(default_factory=Counter)
    created: set[str] = field(default_factory=set)
    unsure: int = 0  # creates that got 503: committed or not, the client cannot know

    def check(self, r: httpx.Response, *ok: int) -> None:
        self.statuses[r.status_code] += 1
        assert r.status_code in (*ok, 503), (r.status_code, r.text[:300])
        if r.status_code == 503:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == 503 and r.headers.get("retry-after")


async def _app_client(settings: Settings) -> tuple[Any, httpx.AsyncClient]:
    app = create_app(settings, configure_logs=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://faults")
    return app, client


@pytest.fixture
def db(tmp_path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    name = f"kmm-faults-{uuid.uuid4().hex[:8]}"
    with fresh_database(tmp_path, database_application_name=name, database_timeout_seconds=2,
                        database_pool_size=4) as settings:
        upgrade(settings)
        yield settings


async def _director(client: httpx.AsyncClient, app: Any) -> tuple[Person, str]:
    factory = Factory(client=client, state=app.state.kmm)
    director = await factory.user("director")
    subject = await factory.subject(by=director, name="Fault Subject")
    return director, subject["id"]


async def _traffic(client: httpx.AsyncClient, director: Person, subject_id: str, out: Outcomes) -> None:
    """One client: create a record, read it back, list; bounded rounds."""
    for i in range(ROUNDS):
        r = await asyncio.wait_for(client.post("/records", headers=director.headers, json={
            "subject_id": subject_id, "title": f"fault {i}", "content": "c", "classification": "confidential",
            "purpose": "service_delivery"}), HANG_GUARD_SECONDS)
        out.check(r, 201)
        if r.status_code == 201:
            out.created.add(r.json()["id"])
            got = await asyncio.wait_for(client.get(f"/records/{r.json()['id']}", headers=director.headers),
                                         HANG_GUARD_SECONDS)
            out.check(got, 200)
        else:
            out.unsure += 1
        out.check(await asyncio.wait_for(client.get("/records?limit=5", headers=director.headers),
                                         HANG_GUARD_SECONDS), 200)


def _assert_whole(settings: Settings, out: Outcomes) -> None:
    """Every acknowledged record is there, whole; nothing else was written."""
    engine = sync_engine(settings)
    try:
        with engine.connect() as conn:
            ids = {str(r[0]) for r in conn.execute(text("SELECT id FROM records"))}
            half_made = conn.execute(text(
                "SELECT count(*) FROM records r WHERE NOT EXISTS (SELECT 1 FROM record_contents c "
                "WHERE c.record_id = r.id) OR NOT EXISTS (SELECT 1 FROM audit_events e "
                "WHERE e.action = 'record.create' AND e.resource_id = CAST(r.id AS TEXT))")).scalar_one()
            orphans = conn.execute(text(
                "SELECT count(*) FROM record_contents c WHERE NOT EXISTS "
                "(SELECT 1 FROM records r WHERE r.id = c.record_id)")).scalar_one()
    finally:
        engine.dispose()
    assert out.created <= ids, f"lost {len(out.created - ids)} acknowledged records"
    assert len(ids - out.created) <= out.unsure, "records appeared that no 503 can explain"
    assert half_made == 0 and orphans == 0


async def _service_connections(settings: Settings) -> int:
    def count() -> int:
        engine = sync_engine(settings)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = :name"), {"name": settings.database_application_name}).scalar_one())
        finally:
            engine.dispose()

    return await asyncio.to_thread(count)


async def _terminate_all(settings: Settings) -> int:
    def kill() -> int:
        engine = sync_engine(settings)
        try:
            with engine.connect() as conn:
                killed = conn.execute(text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = :name"), {"name": settings.database_application_name}).scalar_one()
                conn.commit()
                return int(killed)
        finally:
            engine.dispose()

    return await asyncio.to_thread(kill)


async def test_terminating_every_connection_mid_traffic(db: Settings) -> None:
    app, client = await _app_client(db)
    async with client:
        director, subject_id = await _director(client, app)
        assert await _service_connections(db) >= 1, "the service's connections carry its application_name"
        out = Outcomes()
        traffic = [asyncio.create_task(_traffic(client, director, subject_id, out)) for _ in range(WORKERS)]
        killed = 0
        for _ in range(4):  # bounded: four rounds of killing while the clients run
            await asyncio.sleep(0.05)
            killed += await _terminate_all(db)
        await asyncio.gather(*traffic)
        assert killed >= 1, "connections were terminated while requests flowed"

        # Recovered by itself: the same app, no restart.
        assert (await client.get("/readyz")).status_code == 200
        r = await client.post("/records", headers=director.headers, json={
            "subject_id": subject_id, "title": "after", "content": "c", "classification": "general",
            "purpose": "service_delivery"})
        assert r.status_code == 201, r.text
        out.created.add(r.json()["id"])
        assert (await client.get(f"/records/{r.json()['id']}", headers=director.headers)).status_code == 200
        await app.state.kmm.engine.dispose()
    assert out.statuses[500] == 0 and out.statuses[503] >= 1, out.statuses
    _assert_whole(db, out)


async def test_the_read_path_drops_dead_connections_and_recovers(db: Settings) -> None:
    """The hot path's own pool: after every connection is killed, at most the first read is 503."""
    app, client = await _app_client(db)
    async with client:
        director, subject_id = await _director(client, app)
        r = await client.post("/records", headers=director.headers, json={
            "subject_id": subject_id, "title": "t", "content": "c", "classification": "confidential",
            "purpose": "service_delivery"})
        rid = r.json()["id"]
        # Fill the read pool with several idle connections, then kill them all.
        answers = await asyncio.gather(*(client.get(f"/records/{rid}", headers=director.headers) for _ in range(8)))
        assert {a.status_code for a in answers} == {200}
        assert await _terminate_all(db) >= 2
        statuses = []
        for _ in range(6):
            statuses.append((await client.get(f"/records/{rid}", headers=director.headers)).status_code)
            await asyncio.sleep(0.2)  # room for the pool's background check
        assert 500 not in statuses and statuses[-3:] == [200, 200, 200], statuses
        assert statuses.count(503) <= 2, statuses
        await app.state.kmm.rows.close()
        await app.state.kmm.engine.dispose()


class Relay:
    """A loopback TCP relay to PostgreSQL: `stop()` drops every connection and stops listening."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()
            await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


async def _all_503(client: httpx.AsyncClient, director: Person, out: Outcomes) -> None:
    for method, path in (("GET", "/readyz"), ("GET", "/users/me"), ("GET", "/records")):
        r = await asyncio.wait_for(client.request(method, path, headers=director.headers), HANG_GUARD_SECONDS)
        out.check(r)
        assert r.status_code == 503, (path, r.text)
    r = await asyncio.wait_for(client.post("/auth/token", data={"username": director.email, "password": "x" * 12}),
                               HANG_GUARD_SECONDS)
    out.check(r)
    assert r.status_code == 503


async def test_a_database_that_is_not_there_then_comes_back(db: Settings) -> None:
    # The director is made through the direct route; the relayed app shares the schema and secrets.
    direct_app, direct = await _app_client(db)
    async with direct:
        director, subject_id = await _director(direct, direct_app)
    await direct_app.state.kmm.engine.dispose()

    url = make_url(db.database_url)
    port = free_port()
    relayed = db.model_copy(update={"database_url": url.set(host="127.0.0.1", port=port).render_as_string(
        hide_password=False)})
    relay = Relay(port, (url.host or "127.0.0.1", url.port or 5432))
    app, client = await _app_client(relayed)
    out = Outcomes()
    async with client:
        await _all_503(client, director, out)  # nothing listens on the port

        await relay.start()  # the database comes up: the same app serves
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/users/me", headers=director.headers)).status_code == 200

        # It goes away in the middle of traffic, then comes back.
        traffic = [asyncio.create_task(_traffic(client, director, subject_id, out)) for _ in range(WORKERS)]
        await asyncio.sleep(0.1)
        await relay.stop()
        await _all_503(client, director, out)
        await relay.start()
        await asyncio.gather(*traffic)
        assert (await client.get("/readyz")).status_code == 200
        r = await client.get("/records?limit=200", headers=director.headers)
        assert r.status_code == 200
        await app.state.kmm.engine.dispose()
    await relay.stop()
    assert out.statuses[500] == 0 and out.statuses[503] >= 5
    _assert_whole(db, out)


def _kill_service_connections(settings: Settings) -> int:
    engine = sync_engine(settings)
    try:
        with engine.connect() as conn:
            killed = conn.execute(text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = :name"), {"name": settings.database_application_name}).scalar_one()
            conn.commit()
            return int(killed)
    finally:
        engine.dispose()


def _failed_attempts(settings: Settings) -> int:
    engine = sync_engine(settings)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM login_attempts WHERE outcome = 'failed'")).scalar_one())
    finally:
        engine.dispose()


async def test_a_connection_lost_during_login_counts_no_failure(db: Settings) -> None:
    """Every connection is terminated while the password is being checked: the login is 503,
    nothing counts as a failed login, and the next login goes through."""
    app, client = await _app_client(db)
    async with client:
        factory = Factory(client=client, state=app.state.kmm)
        person = await factory.user("colleague", login=False)
        passwords = app.state.kmm.passwords
        real_verify = passwords.verify
        killed: list[int] = []

        def verify_then_lose_the_database(password: str, hashed: str | None) -> bool:
            ok = real_verify(password, hashed)
            killed.append(_kill_service_connections(db))  # in the hash check's worker thread
            return ok

        passwords.verify = verify_then_lose_the_database
        try:
            for password in ("correct horse battery staple", "a wrong password here") * 3:
                r = await asyncio.wait_for(factory.login(person, password), HANG_GUARD_SECONDS)
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"]
        finally:
            passwords.verify = real_verify
        assert sum(killed) >= 1
        assert _failed_attempts(db) == 0
        assert (await factory.login(person)).status_code == 200
        await app.state.kmm.engine.dispose()
