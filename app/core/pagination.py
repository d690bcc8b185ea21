"""Cursor pagination: opaque, HMAC-signed keyset cursors so a forged one is refused.

Every list answers with ``Page[XPublic]``: a list workflow asks for ``limit + 1`` rows in
key order and hands them to ``page_of``, which keeps ``limit`` of them and signs the key of
the last one as the cursor when more follow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlmodel import col

from app.core.errors import Problem

T = TypeVar("T")
R = TypeVar("R")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    """One page of a list, and the cursor that continues it (None on the last page)."""

    items: list[T]
    next_cursor: str | None = None


def invalid_cursor() -> Problem:
    return Problem(400, "the cursor is not one this service issued for this list", type="invalid-cursor")


class CursorCodec:
    def __init__(self, key: str) -> None:
        self._key = hashlib.sha256(b"kmm-cursor:" + key.encode()).digest()

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, payload, "sha256")[:16]).decode().rstrip("=")

    def encode(self, scope: str, values: list[Any]) -> str:
        payload = json.dumps([scope, values], separators=(",", ":"), default=str).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._mac(payload)}"

    def decode(self, scope: str, cursor: str) -> list[Any]:
        try:
            body, mac = cursor.split(".", 1)
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if not hmac.compare_digest(mac, self._mac(payload)):
                raise ValueError
            got_scope, values = json.loads(payload)
            if got_scope != scope or not isinstance(values, list):
                raise ValueError
        except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise invalid_cursor() from exc
        return values


# -- newest first, by (created_at, id) ------------------------------------------------


def page_query(query: Any, model: Any, *, cursors: CursorCodec, scope: str, cursor: str | None, limit: int) -> Any:
    """Order newest first by (created_at, id) and continue after ``cursor``."""
    if cursor:
        at, last_id = cursors.decode(scope, cursor)
        try:
            after_at, after_id = datetime.fromisoformat(str(at)), uuid.UUID(str(last_id))
        except ValueError as exc:
            raise invalid_cursor() from exc
        query = query.where(or_(col(model.created_at) < after_at,
                                and_(col(model.created_at) == after_at, col(model.id) < after_id)))
    return query.order_by(col(model.created_at).desc(), col(model.id).desc()).limit(limit + 1)


def newest_key(row: Any) -> list[Any]:
    """The key ``page_query`` continues after: (created_at, id)."""
    return [row.created_at.isoformat(), str(row.id)]


def next_cursor(rows: Sequence[R], *, cursors: CursorCodec, scope: str, limit: int,
                key: Callable[[R], list[Any]] = newest_key) -> str | None:
    """The cursor after the ``limit``-th row when the query found more (it asked for ``limit + 1``)."""
    return cursors.encode(scope, key(rows[limit - 1])) if len(rows) > limit else None


def page_of(rows: Sequence[R], public: Callable[[R], T], *, cursors: CursorCodec, scope: str, limit: int,
            key: Callable[[R], list[Any]] = newest_key) -> Page[T]:
    """The first ``limit`` of ``rows`` as public items, and the cursor after them if more follow."""
    return Page(items=[public(row) for row in rows[:limit]],
                next_cursor=next_cursor(rows, cursors=cursors, scope=scope, limit=limit, key=key))
