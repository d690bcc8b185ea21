"""Master key rotation and the start-up key check (§6.6).

Rotation makes a new master key current and re-wraps every record's data key under it;
the content ciphertext is never touched. It also re-encrypts every ``EncryptedText``
column found in the metadata. Work goes in batches, one transaction each, so readers
are never blocked for long and a failure leaves every row readable (each row is under
either its old key or the new one, and the ring holds both).

A value that does not open under its own row's associated data (altered, copied from
another row, or under a key the ring lacks) is never re-encrypted: the rotation stops
there with ``RotationStopped``, which names the table.column and the row's key (never
content) and carries the report of what the committed batches did. Nothing is rolled
back: undoing the committed batches would be a second rotation that can fail in turn,
while leaving them costs nothing, since the ring keeps every old key and a second run
takes up only the values not yet under the current key.

Where the keys live decides who can change them:

* the local secrets file (the embedded default): ``rotate_key`` prepends the new key to
  it; a running service meets the new key id, reloads the file and keeps reading;
* ``KMM_MASTER_KEYS`` (production): the service cannot edit its environment, so the
  operator adds the key there first (``ENVIRONMENT_STEPS``), then ``rewrap_all`` runs.

Old keys stay in the ring until no row uses them. ``retire`` drops keys older than the
previous one once nothing references them (the previous key stays one more rotation
for processes that have not yet reloaded).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, Text, bindparam, func, select, tuple_, type_coerce, update
from sqlmodel import SQLModel

from app.core import progress
from app.core.config import ConfigurationError, Settings
from app.core.crypto import DecryptionError, Keyring, encrypt
from app.core.encrypted import encrypted_columns, key_prefix, row_aad, seal, stored_key_id, unseal
from app.core.files import read_private, write_private
from app.core.state import AppState
from app.models.access_requests import AccessPackageSealed
from app.models.records import RecordContent
from app.workflows.access_requests.package import aad as package_aad
from app.workflows.records.content import aad as record_aad

log = logging.getLogger("kmm.key_rotation")

# A pass re-wraps every row not under the current key; a process that had not yet
# reloaded may have written under the old key meanwhile, so passes repeat until clean.
MAX_PASSES = 5

ENVIRONMENT_STEPS = """\
The master keys come from KMM_MASTER_KEYS, which this command cannot change. To rotate:
  1. Add the new key LAST to KMM_MASTER_KEYS on every replica and restart them
     (it decrypts but wraps nothing yet): KMM_MASTER_KEYS='["<current>", ..., "<new>"]'
  2. Move it FIRST on every replica and restart them: new data keys are wrapped with it.
  3. Run `kmm rotate-key --rewrap-only` to re-wrap every stored data key under it.
  4. When it reports nothing left under an old key, remove that key from KMM_MASTER_KEYS.
"""


@dataclass
class RotationReport:
    current_key_id: str
    data_keys_rewrapped: int = 0
    values_reencrypted: dict[str, int] = field(default_factory=dict)
    passes: int = 0
    retired_key_ids: list[str] = field(default_factory=list)
    key_ids: list[str] = field(default_factory=list)
    # Where a stopped rotation stopped: {"column": "table.column", "row": [key values]}.
    stopped_at: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        done = {
            "current_key_id": self.current_key_id,
            "data_keys_rewrapped": self.data_keys_rewrapped,
            "values_reencrypted": self.values_reencrypted,
            "passes": self.passes,
            "retired_key_ids": self.retired_key_ids,
            "key_ids": self.key_ids,
        }
        if self.stopped_at is not None:
            done["stopped_at"] = self.stopped_at
        return done

    @property
    def rows_done(self) -> int:
        return self.data_keys_rewrapped + sum(self.values_reencrypted.values())


class RotationStopped(DecryptionError):
    """A stored value does not open under its own row's associated data (§6.6): the rotation
    stops at it. ``report`` says what the batches committed before it did."""

    def __init__(self, column: str, row: list[str], reason: str) -> None:
        super().__init__(f"{column}, row {', '.join(row)}: {reason}")
        self.column = column
        self.row = row
        self.report: RotationReport | None = None


def _unopened(keyring: Keyring, kid: str | None, column: str, row: list[str]) -> RotationStopped:
    """Why a value under master key ``kid`` did not open: a key the ring lacks (removed too
    early), or a value that is not this row's (altered, or copied from another row)."""
    if kid is not None and kid not in keyring:
        reason = f"the value is under master key id {kid}, which this process does not hold"
    else:
        reason = "the value fails its integrity check (altered, or copied from another row)"
    return RotationStopped(column, row, reason)


class KeysInEnvironment(ConfigurationError):
    """The keys come from KMM_MASTER_KEYS: the operator must add the new key there."""


def generate_key() -> bytes:
    return os.urandom(32)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except ValueError as exc:
        raise ConfigurationError("the new master key is not valid base64") from exc
    if len(key) != 32:
        raise ConfigurationError("the new master key must decode to 32 bytes")
    return key


# -- the local secrets file ----------------------------------------------------------


def _write_secrets(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically (a reader sees the old file or the new one), mode 0600."""
    write_private(path, json.dumps(data, indent=2))


def _secrets(settings: Settings) -> dict[str, Any]:
    if settings.keys_from_environment:
        raise KeysInEnvironment(ENVIRONMENT_STEPS)
    settings.read_keyring()  # creates the file if it does not exist yet
    data: dict[str, Any] = json.loads(read_private(settings.secrets_file) or "{}")
    return data


def add_current_key(settings: Settings, key: bytes) -> None:
    """Make ``key`` current in the local secrets file; older keys stay to decrypt."""
    data = _secrets(settings)
    encoded = encode_key(key)
    data["master_keys"] = [encoded, *(k for k in data["master_keys"] if decode_key(k) != key)]
    _write_secrets(settings.secrets_file, data)


def remove_keys(settings: Settings, key_ids: set[str]) -> None:
    from app.core.crypto import key_id

    data = _secrets(settings)
    data["master_keys"] = [k for k in data["master_keys"] if key_id(decode_key(k)) not in key_ids]
    _write_secrets(settings.secrets_file, data)


# -- re-wrapping ---------------------------------------------------------------------


@dataclass(frozen=True)
class WrappedKeys:
    """A table holding data keys wrapped by a master key: its id column and the AAD it binds."""

    table_name: str
    id_column: str
    aad: Callable[[uuid.UUID, str], bytes]

    @property
    def table(self) -> Table:
        return SQLModel.metadata.tables[self.table_name]  # type: ignore[return-value]


# Every table with a ``key_id`` and ``wrapped_key``: all are re-wrapped on rotation.
WRAPPED_KEY_TABLES = (
    WrappedKeys(RecordContent.__tablename__, "record_id", record_aad),
    WrappedKeys(AccessPackageSealed.__tablename__, "request_id", package_aad),
)


def _contents() -> Table:
    return WRAPPED_KEY_TABLES[0].table


async def _rewrap_table(state: AppState, wk: WrappedKeys, kid: str, key: bytes, batch_size: int,
                        report: RotationReport) -> None:
    """One pass over a wrapped-key table in id order, counted in ``report`` batch by batch."""
    table = wk.table
    id_col = table.c[wk.id_column]
    stmt = (
        update(table)
        .where(id_col == bindparam("b_id"), table.c.key_id == bindparam("b_old"))
        .values(key_id=bindparam("b_kid"), wrapped_key=bindparam("b_wrapped"))
    )
    last: uuid.UUID | None = None
    while True:
        async with state.sessionmaker() as session:
            query = (
                select(id_col, table.c.key_id, table.c.wrapped_key)
                .where(table.c.key_id != kid)
                .order_by(id_col)
                .limit(batch_size)
            )
            if last is not None:
                query = query.where(id_col > last)
            rows = (await session.execute(query)).all()
            if not rows:
                return
            params = []
            for rid, old, wrapped in rows:
                try:
                    data_key = state.keyring.unwrap(old, wrapped, aad=wk.aad(rid, "key"))
                except DecryptionError as exc:  # altered, or copied from another row: not re-wrapped
                    raise _unopened(state.keyring, old, f"{table.name}.wrapped_key", [str(rid)]) from exc
                params.append({"b_id": rid, "b_old": old, "b_kid": kid,
                               "b_wrapped": encrypt(key, data_key, wk.aad(rid, "key"))})
            await session.execute(stmt, params)
            await session.commit()
        report.data_keys_rewrapped += len(rows)
        progress.advance(len(rows))
        last = rows[-1][0]


async def _reencrypt_column(state: AppState, table: Table, column: Column[str], kid: str, batch_size: int,
                            report: RotationReport) -> None:
    """One pass over one EncryptedText column: values not under ``kid`` are re-encrypted,
    counted in ``report`` batch by batch."""
    raw: ColumnElement[str] = type_coerce(column, Text())
    pk = list(table.primary_key.columns)
    name = f"{table.name}.{column.name}"
    stmt = (
        update(table)
        .where(*(c == bindparam(f"b_pk{i}") for i, c in enumerate(pk)), raw == bindparam("b_old", type_=Text()))
        .values({column.name: bindparam("b_new", type_=Text())})
    )
    last: tuple[Any, ...] | None = None
    while True:
        async with state.sessionmaker() as session:
            query = (
                select(*pk, raw)
                .where(column.is_not(None), ~raw.startswith(key_prefix(kid), autoescape=True))
                .order_by(*pk)
                .limit(batch_size)
            )
            if last is not None:
                query = query.where(tuple_(*pk) > tuple_(*last))
            rows = (await session.execute(query)).all()
            if not rows:
                return
            params = []
            for row in rows:
                aad = row_aad(table.name, column.name, row[: len(pk)])
                try:
                    value = seal(state.keyring, unseal(state.keyring, row[-1], aad), aad)
                except DecryptionError as exc:  # altered, or copied from another row: not re-encrypted
                    try:
                        old: str | None = stored_key_id(row[-1])
                    except DecryptionError:
                        old = None
                    raise _unopened(state.keyring, old, name, [str(v) for v in row[: len(pk)]]) from exc
                params.append({**{f"b_pk{i}": row[i] for i in range(len(pk))}, "b_old": row[-1], "b_new": value})
            await session.execute(stmt, params)
            await session.commit()
        report.values_reencrypted[name] = report.values_reencrypted.get(name, 0) + len(rows)
        progress.advance(len(rows))
        last = tuple(rows[-1][: len(pk)])


async def rewrap_all(state: AppState, *, batch_size: int = 1000) -> RotationReport:
    """Re-wrap every data key and re-encrypt every EncryptedText value under the current key.

    Raises RotationStopped, with the report of what was done, at the first value that does
    not open under its own row's associated data; every value stays readable under the ring.
    """
    kid, key = state.keyring.current()
    report = RotationReport(current_key_id=kid)
    columns = list(encrypted_columns(SQLModel.metadata))
    if progress.active():  # `kmm rotate-key` shows how far it is
        progress.set_total(await references(state, kid, under=False))
    try:
        for _ in range(MAX_PASSES):
            report.passes += 1
            before = report.rows_done
            for wrapped_keys in WRAPPED_KEY_TABLES:
                await _rewrap_table(state, wrapped_keys, kid, key, batch_size, report)
            for table, column in columns:
                name = f"{table.name}.{column.name}"
                report.values_reencrypted.setdefault(name, 0)
                await _reencrypt_column(state, table, column, kid, batch_size, report)
            if report.rows_done == before:
                break
    except RotationStopped as stopped:
        report.key_ids = state.keyring.key_ids
        report.stopped_at = {"column": stopped.column, "row": stopped.row}
        stopped.report = report
        log.error("master key rotation stopped at a value it cannot open", extra=report.as_dict())
        raise
    report.key_ids = state.keyring.key_ids
    log.info("master key rotation re-wrapped", extra=report.as_dict())
    return report


async def references(state: AppState, kid: str, *, under: bool = True) -> int:
    """How many stored values still need master key ``kid`` (data keys and EncryptedText);
    with ``under=False``, how many are under another key (what a re-wrap has to do)."""
    async with state.sessionmaker() as session:
        total = 0
        for wk in WRAPPED_KEY_TABLES:
            match = wk.table.c.key_id == kid if under else wk.table.c.key_id != kid
            total += (await session.execute(select(func.count()).where(match))).scalar_one()
        for t, column in encrypted_columns(SQLModel.metadata):
            raw: ColumnElement[str] = type_coerce(column, Text())
            prefixed = raw.startswith(key_prefix(kid), autoescape=True)
            total += (
                await session.execute(
                    select(func.count()).select_from(t).where(prefixed if under else column.is_not(None) & ~prefixed)
                )
            ).scalar_one()
        await session.rollback()
    return int(total)


async def rotate_key(
    state: AppState, *, new_key: bytes | None = None, retire: bool = False, batch_size: int = 1000
) -> RotationReport:
    """Make a new master key current in the local secrets file and re-wrap everything under it.

    With ``retire``, keys older than the previous one are removed from the file once no
    stored value uses them. Raises KeysInEnvironment when KMM_MASTER_KEYS holds the keys.
    """
    add_current_key(state.settings, new_key if new_key is not None else generate_key())
    state.keyring.reload()
    report = await rewrap_all(state, batch_size=batch_size)
    if retire:
        stale = state.keyring.key_ids[2:]
        unused = {kid for kid in stale if await references(state, kid) == 0}
        if unused:
            remove_keys(state.settings, unused)
            state.keyring.reload()
        report.retired_key_ids = sorted(unused)
        report.key_ids = state.keyring.key_ids
    return report


# -- the start-up check --------------------------------------------------------------


async def verify_master_keys(state: AppState) -> None:
    """Refuse to start when the master keys cannot open a stored data key.

    One row, one unwrap: cheap. A service with the wrong keys would otherwise start and
    fail every read; this says what is wrong before it serves anything.
    """
    table = _contents()
    async with state.sessionmaker() as session:
        row = (
            await session.execute(select(table.c.record_id, table.c.key_id, table.c.wrapped_key).limit(1))
        ).first()
        await session.rollback()
    if row is None:
        return
    rid, kid, wrapped = row
    try:
        state.keyring.unwrap(kid, wrapped, aad=record_aad(rid, "key"))
    except DecryptionError as exc:
        raise ConfigurationError(
            f"the configured master keys cannot open the stored data keys: a record's key is wrapped "
            f"under master key id {kid}, and this process holds {', '.join(state.keyring.key_ids)}. "
            "Set KMM_MASTER_KEYS (or the local secrets file) to the keys this database was written "
            "with; refusing to start rather than serve unreadable records."
        ) from exc


__all__ = [
    "ENVIRONMENT_STEPS",
    "KeysInEnvironment",
    "RotationReport",
    "RotationStopped",
    "rewrap_all",
    "rotate_key",
    "verify_master_keys",
]
