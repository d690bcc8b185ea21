"""Async engine and sessions (SQLAlchemy 2 async; psycopg 3 or aiosqlite)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from sqlalchemy import JSON, DateTime, Insert, Select, String, cast, event, func
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from app.core.config import Settings
from app.core.files import create_private

log = logging.getLogger("kmm.db")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def id_text(column: Any) -> Any:
    """A UUID (column or audit ``resource_id``) as 32 hex digits, the same on SQLite and Postgres."""
    return func.lower(func.replace(cast(column, String), "-", ""))


def uuid_text(column: Any) -> Any:
    """A UUID column as Python's ``str(uuid)`` writes it (8-4-4-4-12 lowercase hex digits), the
    same on SQLite (which keeps 32 digits) and Postgres: text the service wrote from a UUID,
    such as ``audit_event_records.record_id``, compared by key without a function on its side."""
    digits = id_text(column)
    parts = [func.substr(digits, start, length, type_=String) for start, length in
             ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
    dashed: Any = parts[0]
    for part in parts[1:]:
        dashed = dashed + "-" + part
    return dashed


def make_engine(settings: Settings) -> AsyncEngine:
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if settings.is_sqlite:
        kwargs["connect_args"] = {"timeout": settings.database_timeout_seconds}
    else:
        options = f"-c statement_timeout={int(settings.database_timeout_seconds * 1000 * 6)}"
        if settings.database_schema:
            options += f" -c search_path={settings.database_schema}"
        kwargs["connect_args"] = {
            "connect_timeout": max(1, int(settings.database_timeout_seconds)),
            "options": options,
            "application_name": settings.database_application_name,
        }
        kwargs["pool_size"] = settings.database_pool_size
        kwargs["max_overflow"] = settings.database_pool_size
        kwargs["pool_timeout"] = settings.database_timeout_seconds
        kwargs["pool_recycle"] = 1800
    if settings.is_sqlite:
        _private_database_file(settings.database_url)
    engine = create_async_engine(settings.database_url, **kwargs)
    if settings.is_sqlite:
        _tune_sqlite(engine)
    return engine


def _private_database_file(url: str) -> None:
    """Create a new SQLite database file owner-only (0600) before SQLite opens it.

    SQLite gives the WAL and shared-memory files the database file's mode, so they are
    owner-only too. An in-memory database, or a directory that does not exist (the
    connection reports it), is left to SQLite.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        create_private(path)


# -- the hot path's statements -----------------------------------------------------------------


class Rows(Protocol):
    """Single read statements on one connection; rows give their columns as attributes.

    Only for statements whose parameters are plain values (ids) and whose columns need
    no conversion by SQLAlchemy types beyond what the driver does (no EncryptedText).
    """

    async def first(self, stmt: Select[Any], params: dict[str, Any]) -> Any | None: ...

    async def all(self, stmt: Select[Any], params: dict[str, Any]) -> list[Any]: ...

    async def scalars(self, stmt: Select[Any], params: dict[str, Any]) -> list[Any]: ...


class RowSource(Protocol):
    """The hot path's statements: reads on one connection, and many rows inserted at once."""

    def connection(self) -> AbstractAsyncContextManager[Rows]: ...

    async def insert_many(self, stmt: Insert, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` by one statement's parameters; returns once they are committed."""
        ...

    async def close(self) -> None: ...


class _EngineRows:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def first(self, stmt: Select[Any], params: dict[str, Any]) -> Any | None:
        return (await self._conn.execute(stmt, params)).first()

    async def all(self, stmt: Select[Any], params: dict[str, Any]) -> list[Any]:
        return list((await self._conn.execute(stmt, params)).all())

    async def scalars(self, stmt: Select[Any], params: dict[str, Any]) -> list[Any]:
        return list((await self._conn.execute(stmt, params)).scalars())


class EngineRowSource:
    """Through SQLAlchemy (SQLite, the embedded default)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Rows]:
        async with self._engine.connect() as conn:
            yield _EngineRows(conn)

    async def insert_many(self, stmt: Insert, rows: list[dict[str, Any]]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def close(self) -> None:
        return None


class _PsycopgRows:
    def __init__(self, conn: psycopg.AsyncConnection[Any],
                 compiled: Callable[[Select[Any] | Insert], tuple[str, dict[str, Any]]]) -> None:
        self._conn = conn
        self._compiled = compiled

    async def _execute(self, stmt: Select[Any], params: dict[str, Any]) -> psycopg.AsyncCursor[Any]:
        sql, fixed = self._compiled(stmt)
        return await self._conn.execute(sql, {**fixed, **params} if fixed else params)

    async def first(self, stmt: Select[Any], params: dict[str, Any]) -> Any | None:
        return await (await self._execute(stmt, params)).fetchone()

    async def all(self, stmt: Select[Any], params: dict[str, Any]) -> list[Any]:
        return await (await self._execute(stmt, params)).fetchall()

    async def scalars(self, stmt: Select[Any], params: dict[str, Any]) -> list[Any]:
        return [row[0] for row in await self.all(stmt, params)]


class PsycopgRowSource:
    """PostgreSQL: psycopg connections of their own (``_Connections``), autocommit, UTC.

    The statements are SQLAlchemy Core selects compiled once by the engine's dialect, so
    the SQL is the one the rest of the service runs; only the execution skips SQLAlchemy's
    connection and result layers, the largest cost left on the hot path (DESIGN §11,
    docs/benchmark.md). Rows are named tuples: the same attribute access as a Core row.
    """

    def __init__(self, settings: Settings, dialect: Dialect) -> None:
        url = make_url(settings.database_url)
        options = f"-c statement_timeout={int(settings.database_timeout_seconds * 1000 * 6)} -c TimeZone=UTC"
        if settings.database_schema:
            options += f" -c search_path={settings.database_schema}"
        self._dialect = dialect
        self._sql: dict[Select[Any] | Insert, tuple[str, dict[str, Any]]] = {}
        self._json: dict[Insert, list[str]] = {}
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connect = functools.partial(
            psycopg.AsyncConnection.connect,
            conninfo,
            autocommit=True,
            row_factory=namedtuple_row,
            connect_timeout=max(1, int(settings.database_timeout_seconds)),
            options=options,
            application_name=settings.database_application_name,
        )
        self._size = 2 * settings.database_pool_size
        self._timeout = settings.database_timeout_seconds
        self._pool: _Connections | None = None

    def _compiled(self, stmt: Select[Any] | Insert) -> tuple[str, dict[str, Any]]:
        """The SQL, and the values of the parameters the statement fixes itself (constants)."""
        done = self._sql.get(stmt)
        if done is None:
            # Lists of constants (IN of the rule table's classes) are rendered once, here.
            compiled = stmt.compile(dialect=self._dialect, compile_kwargs={"render_postcompile": True})
            done = self._sql[stmt] = (str(compiled), dict(compiled.params))
        return done

    def _json_columns(self, stmt: Insert) -> list[str]:
        names = self._json.get(stmt)
        if names is None:
            names = self._json[stmt] = [c.name for c in stmt.table.c if isinstance(c.type, JSON)]
        return names

    def _connections(self) -> _Connections:
        # Connections belong to the event loop that opened them: one loop per service
        # process, but a test harness may drive the app from more than one.
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            self._pool = _Connections(self._connect, size=self._size, timeout=self._timeout, loop=loop)
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._connections()
        conn = await pool.acquire()
        try:
            yield conn
        except psycopg.OperationalError:
            # The server went away: the idle connections most likely went with it.
            await pool.release(conn, discard_idle=conn.broken)
            raise
        except BaseException:
            await pool.release(conn)
            raise
        else:
            await pool.release(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Rows]:
        async with self._connection() as conn:
            yield _PsycopgRows(conn, self._compiled)

    async def insert_many(self, stmt: Insert, rows: list[dict[str, Any]]) -> None:
        """One pipelined executemany: a single round trip, committed at its end (autocommit)."""
        json_columns = self._json_columns(stmt)
        params = [{**row, **{k: Json(row[k]) for k in json_columns if k in row}} for row in rows]
        sql, fixed = self._compiled(stmt)
        async with self._connection() as conn, conn.cursor() as cur:
            await cur.executemany(sql, [{**fixed, **p} for p in params] if fixed else params)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and pool.loop is asyncio.get_running_loop():
            await pool.close()


class _Connections:
    """A small pool of psycopg connections for one event loop: last in, first out.

    It connects on demand, in the request that needs a connection, like SQLAlchemy's pool,
    so the moment the database is back the next request gets through (psycopg_pool
    reconnects from a background task with a growing back-off, which kept answering 503
    for seconds after an outage ended). A connection that fails is closed, and with it
    every idle one when the server went away. No more than ``size`` are open; a request
    that finds none free waits up to ``timeout``, then gets an OperationalError (503).
    """

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]], *, size: int,
                 timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self._connect, self._size, self._timeout, self.loop = connect, size, timeout, loop
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0  # open, or being opened
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        deadline = self.loop.time() + self._timeout
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open < self._size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - self.loop.time()))
            except TimeoutError:
                self._wake()  # had a release raced the timeout, its turn passes on
                raise psycopg.OperationalError("no database connection became free in time") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def release(self, conn: psycopg.AsyncConnection[Any], *, discard_idle: bool = False) -> None:
        doomed = [] if not discard_idle else self._idle
        if discard_idle:
            self._idle = []
        if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
            doomed = [*doomed, conn]
        else:
            self._idle.append(conn)
        self._open -= len(doomed)
        for dead in doomed:
            with contextlib.suppress(Exception):
                await dead.close()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()


def row_source(settings: Settings, engine: AsyncEngine) -> RowSource:
    if engine.dialect.name == "postgresql":
        return PsycopgRowSource(settings, engine.dialect)
    return EngineRowSource(engine)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        # Deleted content is overwritten with zeros, not left in free pages (§4.6).
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()
        # Postgres has sha256() built in; the audit chain's verify query needs it here too.
        dbapi_conn.create_function("kmm_sha256_hex", 1, _sql_sha256_hex, deterministic=True)
        # The keyed chain's MAC; the key is a parameter of each verify statement, never stored.
        dbapi_conn.create_function("kmm_hmac_sha256_hex", 2, _sql_hmac_sha256_hex, deterministic=True)
        # We open transactions ourselves (below), so the driver must not.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every request writes (at least its audit event): take the write lock up front,
        # so two transactions never deadlock upgrading from read to write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def scrub_after_shred(session: AsyncSession) -> None:
    """After a shred has committed: on SQLite, move the WAL into the database and truncate it.

    With ``secure_delete`` the deleting transaction writes zeroed pages, but the WAL still
    holds the earlier frames with the ciphertext and the wrapped data key until a checkpoint
    copies the zeroed pages over them and the log is truncated (§4.6). A checkpoint that
    readers keep from completing is logged; the next one finishes it. PostgreSQL: see
    docs/shredding.md (its WAL archives and backups are the operator's part).
    """
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = await cursor.fetchone()
        await cursor.close()
    if row is not None and row[0]:
        log.warning("the WAL checkpoint after a shred did not complete; the next one finishes it")


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of UTF-8 text (the audit chain's hash)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _sql_sha256_hex(text: str | None) -> str | None:
    return None if text is None else sha256_hex(text)


def _sql_hmac_sha256_hex(key: bytes | None, text: str | None) -> str | None:
    if key is None or text is None:
        return None
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

