"""Helpers for the data-protection tests: subjects, records, raw rows, audit events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlmodel import SQLModel, col, select

from app.core.config import Settings
from app.core.encrypted import install_keyring
from app.core.state import AppState
from app.models.audit import AuditEvent
from tests.factory import Person


async def subject(client: httpx.AsyncClient, person: Person, **kw: Any) -> dict[str, Any]:
    body = {"kind": "individual", "name": f"Subject {uuid.uuid4().hex[:6]}", "category": "service_user", **kw}
    r = await client.post("/subjects", json=body, headers=person.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def record(
    client: httpx.AsyncClient, person: Person, subject_id: str, **kw: Any
) -> dict[str, Any]:
    body = {"subject_id": subject_id, "title": "Case notes", "content": "notes",
            "classification": "confidential", "purpose": "service_delivery", **kw}
    r = await client.post("/records", json=body, headers=person.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def raw_rows(state: AppState, table: str, where: str = "", **params: Any) -> list[dict[str, Any]]:
    """Rows exactly as stored (no type decoding beyond the driver's)."""
    async with state.engine.connect() as conn:
        result = await conn.execute(text(f"SELECT * FROM {table} {where}"), params)
        return [dict(r._mapping) for r in result]


async def all_raw_values(state: AppState) -> Iterator[tuple[str, str, Any]]:
    """(table, column, value) for every value in every table of the metadata."""
    import app.models  # noqa: F401

    found = []
    for table in SQLModel.metadata.sorted_tables:
        for row in await raw_rows(state, table.name):
            found.extend((table.name, k, v) for k, v in row.items())
    return iter(found)


def contains(value: Any, marker: str) -> bool:
    if value is None:
        return False
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return marker.encode() in value
    if isinstance(value, (dict, list)):
        return marker in json.dumps(value)
    return marker in str(value)


async def events(state: AppState, action: str, resource_id: Any = None) -> list[AuditEvent]:
    async with state.sessionmaker() as session:
        query = select(AuditEvent).where(col(AuditEvent.action) == action).order_by(col(AuditEvent.id))
        if resource_id is not None:
            query = query.where(col(AuditEvent.resource_id) == str(resource_id))
        rows = list((await session.execute(query)).scalars())
        session.expunge_all()
        return rows


def settings_with(base: Settings, **overrides: Any) -> Settings:
    """A fresh Settings on the same database (own cached keyring), with overrides."""
    values: dict[str, Any] = {
        "env": "test", "database_url": base.database_url, "database_schema": base.database_schema,
        "secrets_file": base.secrets_file, "argon2_time_cost": 1, "argon2_memory_kib": 1024,
        "database_timeout_seconds": base.database_timeout_seconds,
    }
    values.update(overrides)
    return Settings(**values)


def copy_secrets(base: Settings, directory: Path) -> Path:
    path = directory / "secrets.json"
    path.write_text(base.secrets_file.read_text())
    path.chmod(0o600)
    return path


@contextmanager
def restore_keyring(state: AppState) -> Iterator[None]:
    """Other AppStates built in a test replace the process-wide keyring; put it back."""
    try:
        yield
    finally:
        install_keyring(state.keyring)


def key_rotation_decode(text_key: str) -> bytes:
    from app.workflows.key_rotation import decode_key

    return decode_key(text_key)


async def service_client(client: httpx.AsyncClient, director: Person, scopes: list[str]) -> dict[str, str]:
    """Create a service client and return auth headers for it."""
    r = await client.post("/service-clients", headers=director.headers,
                          json={"name": f"sys-{uuid.uuid4().hex[:6]}", "scopes": scopes})
    assert r.status_code == 201, r.text
    body = r.json()
    r = await client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": body["client_id"],
                                               "client_secret": body["client_secret"]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
