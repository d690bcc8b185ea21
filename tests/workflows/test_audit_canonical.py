"""The canonical form's text never changes (DESIGN §6): sealed chains must keep verifying.

``canonical_event`` is spelled differently on PostgreSQL than it was first written (fewer
calls per row, a double for the time where that is exact). These tests run on both
backends and check, row by row on awkward events, that it gives exactly the text of the
form as first written (kept below, frozen) and of an independent Python reading of the
module docstring.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import BigInteger, ColumnElement, DateTime, String, case, func, insert, literal_column, select, text
from sqlalchemy import cast as sql_cast

from app.workflows.audit.canonical import EVENTS, canonical_event
from tests.databases import IS_POSTGRES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FREE = ("actor_kind", "actor_role", "action", "resource_type", "resource_id", "decision", "rule", "clause",
        "request_id", "client_ip")


def _canonical_as_first_written(dialect: str) -> ColumnElement[str]:
    """app.workflows.audit.canonical.canonical_event as first committed (frozen: do not edit)."""

    def _text(sql: str) -> ColumnElement[str]:
        return literal_column(sql, String)

    def _free_text(value: ColumnElement[Any]) -> ColumnElement[str]:
        as_text = sql_cast(value, String)
        return func.coalesce(sql_cast(func.length(as_text), String) + _text("':'") + as_text, _text("'~'"))

    c = EVENTS.c
    at_us: ColumnElement[int]
    if dialect == "postgresql":
        at_us = sql_cast(func.extract("epoch", c.at) * 1_000_000, BigInteger)
    else:
        at_us = (sql_cast(func.strftime(_text("'%s'"), c.at), BigInteger) * 1_000_000
                 + sql_cast(func.substr(c.at, 21, 6), BigInteger))
    fixed: list[ColumnElement[str]] = [
        sql_cast(c.id, String),
        sql_cast(at_us, String),
        func.coalesce(func.replace(sql_cast(c.actor_id, String), _text("'-'"), _text("''")), _text("'~'")),
        case((c.emergency, _text("'1'")), else_=_text("'0'")),
    ]
    free = [c.actor_kind, c.actor_role, c.action, c.resource_type, c.resource_id, c.decision, c.rule,
            c.clause, c.request_id, c.client_ip, c.detail]
    expr: ColumnElement[str] = _text("'v1'")
    for part in [*fixed, *(_free_text(f) for f in free)]:
        expr = expr + _text("'|'") + part
    return expr


def _expected(row: dict[str, Any], detail_text: str, dialect: str) -> str | None:
    """The module docstring's canonical form, computed in Python.

    On SQLite the seconds come from strftime('%s'), which rounds the time to the
    millisecond first: in the last 500 microseconds of a second the canonical time is one
    second ahead (and past 9999-12-31 23:59:59.9995 there is none). Sealed SQLite chains
    carry that text, so it stays; this pins it.
    """
    us = (row["at"] - EPOCH) // timedelta(microseconds=1)
    at_us = us
    if dialect == "sqlite":
        seconds = (us + 500) // 1000 // 1000
        if seconds > 253402300799:
            return None
        at_us = seconds * 1_000_000 + us % 1_000_000
    actor = row["actor_id"].hex if row["actor_id"] is not None else "~"
    parts = ["v1", str(row["id"]), str(at_us), actor, "1" if row["emergency"] else "0"]
    for name in FREE:
        value = row[name]
        parts.append("~" if value is None else f"{len(value)}:{value}")
    parts.append(f"{len(detail_text)}:{detail_text}")
    return "|".join(parts)


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# Times: whole seconds and the first and last microsecond of one, both sides of the epoch,
# 2038 and later, the edges of the window where PostgreSQL goes through a double, and the
# ends of what Python (and so the service) can write.
TIMES = [
    _at(2026, 1, 2, 3, 4, 5, 123456), _at(2026, 1, 2, 3, 4, 5), _at(2026, 1, 2, 3, 4, 5, 999999),
    _at(2026, 1, 2, 3, 4, 5, 1), _at(1970, 1, 1), _at(1970, 1, 1, 0, 0, 0, 1), _at(1970, 1, 1, 0, 0, 1),
    _at(1969, 12, 31, 23, 59, 59, 999999), _at(1969, 12, 31, 23, 59, 59, 500000), _at(1969, 12, 31, 23, 59, 59),
    _at(1969, 12, 31, 23, 59, 58, 1), _at(1950, 6, 15, 12, 0, 0, 654321), _at(1900, 1, 1),
    _at(1899, 12, 31, 23, 59, 59, 999999), _at(1900, 1, 1, 0, 0, 0, 1), _at(1898, 8, 23, 13, 7, 6, 95380),
    _at(1800, 2, 28, 1, 2, 3, 4), _at(1, 1, 1), _at(1, 1, 1, 0, 0, 0, 1), _at(2038, 1, 19, 3, 14, 7, 999999),
    _at(2038, 1, 19, 3, 14, 8), _at(2039, 12, 31, 23, 59, 59, 999999), _at(2040, 1, 1),
    _at(2040, 1, 1, 0, 0, 0, 1), _at(2041, 5, 10, 11, 1, 29, 848338), _at(2106, 2, 7, 6, 28, 16, 999999),
    _at(2262, 4, 11, 23, 47, 16, 854775), _at(9999, 12, 31, 23, 59, 59, 999999),
    # Two where the double alone is one microsecond out (so outside the window it must not be used).
    _at(2106, 2, 7, 7, 6, 44, 261843), _at(1833, 11, 24, 16, 53, 15, 738157),
]

# Free text: NULL, empty, separators and the NULL marker inside values, escapes and quotes,
# and characters of two, three and four bytes (and a combining accent) whose length in
# characters is not their length in bytes.
TEXTS: list[str | None] = [
    None, "", "user", "|", ":", "~", "a|b:c~d", "7:1:2", "3:abc|~", "§3.1, §3.4", "é", "e\u0301", "€uro",
    "\U0001d11e clef", "日本語テキスト", "tab\tnew\nline", "back\\slash 'quote' \"dq\"", " lead and trail ",
    "x" * 32,
]

DETAILS: list[Any] = [{}, {"fields": ["a|b"]}, {"n": 99}, {"note": "é § 日本 \U0001d11e"}, [], "plain", None, 0]
ACTORS = [None, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID("abcdef01-2345-6789-abcd-ef0123456789")]


def _rows() -> list[dict[str, Any]]:
    rows = []
    for i, at in enumerate(TIMES):
        row: dict[str, Any] = {
            "id": 1000 + i, "at": at, "actor_id": ACTORS[i % len(ACTORS)], "action": "record.read",
            "emergency": i % 3 == 0, "detail": DETAILS[i % len(DETAILS)],
        }
        for j, name in enumerate(FREE):
            if name != "action":
                row[name] = TEXTS[(i + j) % len(TEXTS)]
        rows.append(row)
    for k, value in enumerate(TEXTS):
        row = {"id": 2000 + k, "at": TIMES[k % len(TIMES)], "actor_id": None, "emergency": False,
               "action": value if value is not None else "a", "detail": {"v": value}}
        for name in FREE:
            if name != "action":
                row[name] = value
        rows.append(row)
    # All-NULL and all-empty (where allowed), and ids past 2**53.
    rows.append({"id": 3000, "at": TIMES[0], "actor_id": None, "emergency": False, "action": "",
                 "detail": {}, **{n: None for n in FREE if n != "action"}})
    rows.append({"id": 3001, "at": TIMES[0], "actor_id": None, "emergency": True, "action": "",
                 "detail": {}, **{n: "" for n in FREE if n != "action"}})
    rows.append({"id": 2**53 + 1, "at": TIMES[1], "actor_id": ACTORS[3], "emergency": False, "action": "x",
                 "detail": {}})
    rows.append({"id": 2**62, "at": TIMES[2], "actor_id": ACTORS[2], "emergency": True, "action": "y",
                 "detail": {}})
    for row in rows:  # within each column's length (in characters)
        for name in FREE:
            if row.get(name) is not None:
                row[name] = row[name][: EVENTS.c[name].type.length]
    return rows


async def test_canonical_text_is_unchanged_on_awkward_events(client, state):
    rows = [{n: None for n in FREE} | r for r in _rows()]
    async with state.engine.begin() as conn:
        await conn.execute(insert(EVENTS), rows)
        # Stored JSON exactly as written, not as the service's serialiser would write it.
        raw = '{"raw":"é \\u00e9 日本","sp" : [1,2]}'
        detail = "CAST(:d AS JSON)" if IS_POSTGRES else ":d"
        await conn.execute(text(f"INSERT INTO audit_events (id, at, action, emergency, detail) "
                                f"VALUES (4000, :at, 'raw', false, {detail})"),
                           {"d": raw, "at": TIMES[0] if IS_POSTGRES else "2026-01-02 03:04:05.123456"})
    async with state.engine.connect() as conn:
        dialect = conn.dialect.name
        got = (await conn.execute(
            select(EVENTS.c.id, canonical_event(dialect), _canonical_as_first_written(dialect),
                   sql_cast(EVENTS.c.detail, String)).order_by(EVENTS.c.id)
        )).all()
    by_id = {r["id"]: r for r in rows}
    by_id[4000] = {"id": 4000, "at": TIMES[0], "actor_id": None, "emergency": False, "action": "raw",
                   **{n: None for n in FREE if n != "action"}}
    assert [g[0] for g in got] == sorted(by_id)
    for event_id, new, first, detail_text in got:
        assert new == first, event_id
        assert new == _expected(by_id[event_id], detail_text, dialect), event_id
        if event_id != 4000:
            assert json.loads(detail_text) == by_id[event_id]["detail"]
    canonical = {g[0]: g[1] for g in got}
    assert canonical[4000].endswith(f"|{len(raw)}:{raw}")
    if dialect == "sqlite":  # the quirk above, on one row
        assert canonical[1002].startswith("v1|1002|1767323046999999|")


@pytest.mark.postgres_only
async def test_the_time_in_microseconds_is_exact_on_many_values(client, state):
    """PostgreSQL's time in microseconds equals the numeric EXTRACT on 300,000 times.

    Random microseconds over ±2**54 µs of the epoch (the double window and far beyond it,
    where the double alone is sometimes a microsecond out), every hour in the first and last
    weeks of the window and every minute around the epoch, each with 0, 1, 500000 and 999999
    microseconds.
    """
    from app.workflows.audit.canonical import epoch_us_pg

    at = literal_column("t.at")
    fast = epoch_us_pg(at)  # type: ignore[arg-type]
    exact = sql_cast(func.extract("epoch", at) * 1_000_000, BigInteger)
    us = literal_column("t.us")
    sample = text("""
        SELECT timestamptz '1970-01-01 00:00:00+00' + us * interval '1 microsecond' AS at, us
        FROM (SELECT floor((random() * 2 - 1) * 18014398509481984)::bigint AS us FROM generate_series(1, 250000)
              UNION ALL
              SELECT s * 1000000 + d FROM (VALUES (0), (1), (500000), (999999)) AS d(d),
                   (SELECT generate_series(-2208988800 - 7 * 86400, -2208988800 + 7 * 86400, 3600)
                    UNION ALL SELECT generate_series(2208988800 - 7 * 86400, 2208988800 + 7 * 86400, 3600)
                    UNION ALL SELECT generate_series(-86400, 86400, 60)) AS s(s)) AS q
    """).columns(at=DateTime(timezone=True), us=BigInteger()).subquery("t")
    async with state.engine.connect() as conn:
        await conn.execute(text("SELECT setseed(0.42)"))
        double_alone = sql_cast(func.date_part("epoch", at) * 1_000_000, BigInteger)
        n, wrong, off, double_wrong = (await conn.execute(
            select(func.count(), func.count().filter(fast != exact), func.count().filter(exact != us),
                   func.count().filter(double_alone != exact))
            .select_from(sample)
        )).one()
    assert n > 250_000 and wrong == 0 and off == 0
    assert double_wrong > 0  # so the window is needed, and this sample would catch a wider one
