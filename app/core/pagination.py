"""Cursor pagination: opaque, HMAC-signed keyset cursors so a forged one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from app.core.errors import Problem

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


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
            raise Problem(400, "the cursor is not one this service issued for this list",
                          type="invalid-cursor") from exc
        return values
