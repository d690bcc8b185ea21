"""The read path's own connection pool (app.core.db._Connections), with stand-in connections."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from app.core.db import _Connections


class FakeConn:
    def __init__(self) -> None:
        self.closed = False
        self.broken = False
        self.info = type("Info", (), {"transaction_status": TransactionStatus.IDLE})()

    async def close(self) -> None:
        self.closed = True


def _pool(size: int = 2, timeout: float = 0.2, fail: list[bool] | None = None) -> tuple[_Connections, list[Any]]:
    made: list[FakeConn] = []

    async def connect() -> Any:
        if fail and fail.pop(0):
            raise psycopg.OperationalError("connection refused")
        made.append(FakeConn())
        return made[-1]

    return _Connections(connect, size=size, timeout=timeout, loop=asyncio.get_running_loop()), made


async def test_reuses_the_last_released_and_never_opens_more_than_its_size():
    pool, made = _pool(size=2)
    a, b = await pool.acquire(), await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done() and len(made) == 2
    await pool.release(b)
    assert await waiting is b and len(made) == 2
    await pool.release(a)
    assert await pool.acquire() is a


async def test_a_request_that_finds_none_free_in_time_gets_an_operational_error():
    pool, _ = _pool(size=1, timeout=0.05)
    await pool.acquire()
    with pytest.raises(psycopg.OperationalError):
        await pool.acquire()


async def test_a_broken_connection_takes_the_idle_ones_with_it_and_the_next_request_connects():
    pool, made = _pool(size=3)
    a, b, c = await pool.acquire(), await pool.acquire(), await pool.acquire()
    await pool.release(b)
    await pool.release(c)
    a.broken = True
    await pool.release(a, discard_idle=True)
    assert a.closed and b.closed and c.closed
    fresh = await pool.acquire()
    assert fresh not in (a, b, c) and len(made) == 4


async def test_a_connection_left_mid_statement_is_not_reused():
    pool, _ = _pool()
    conn = await pool.acquire()
    conn.info.transaction_status = TransactionStatus.ACTIVE
    await pool.release(conn)
    assert conn.closed and await pool.acquire() is not conn


async def test_when_the_database_is_down_each_request_fails_then_recovers_at_once():
    pool, made = _pool(size=1, fail=[True, True, False])
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError):
            await pool.acquire()
    assert await pool.acquire() is made[0]  # no back-off: the first request after the outage gets through


async def test_closing_closes_the_idle_connections():
    pool, _ = _pool()
    a = await pool.acquire()
    await pool.release(a)
    await pool.close()
    assert a.closed
