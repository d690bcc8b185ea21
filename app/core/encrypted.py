"""``EncryptedText``: a column type for free text that can hold personal detail (§6.6).

Reasons, summaries and descriptions are encrypted with AES-GCM under the current
master key and stored as text: ``kmm2:<key id>:<base64url(nonce + ciphertext)>``. The
associated data names the value's table, column and primary key (``row_aad``), so a
ciphertext copied onto another row, or into another column of the same row, does not
open: the read is refused with a ``409`` problem (``integrity-error``) and logged,
without content. Any key in the ring decrypts; ``kmm rotate-key`` re-encrypts every
column of this type it finds in the metadata (``encrypted_columns``). The ciphertext is
random, so such a column can be stored and read but never compared or searched in SQL.

The column type cannot see the row, so the ORM supplies it (``_bind_rows``):

* writing, ``before_insert``/``before_update`` wrap each new value as ``Bound`` (a ``str``
  carrying its associated data); a Core ``insert``/``update`` passes ``bound(...)`` values
  itself. A plain ``str`` is refused (``TypeError``): nothing is stored unbound;
* reading, the type returns the value still ``Sealed``; the ``load``/``refresh`` events
  open it with the loaded object's key. A Core select of such a column gets ``Sealed``
  values and opens them with ``open_value``.

The older ``kmm1`` format (one fixed associated data for every value) is read and written
only by the migrations (``encrypt_text``, ``decrypt_text``); a migration rewrites every
stored ``kmm1`` value as ``kmm2``, and the service never opens a ``kmm1`` value.

The type has no access to the request, so the keyring is process-wide: AppState.build
installs it (``install_keyring``).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, MetaData, Table, Text, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper, attributes
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.types import TypeDecorator

from app.core.crypto import DecryptionError, Keyring, decrypt, encrypt
from app.core.errors import Conflict

PREFIX = "kmm1"  # the unbound format, for the migrations only
BOUND_PREFIX = "kmm2"
_AAD = b"kmm-encrypted-text"
_keyring: Keyring | None = None
log = logging.getLogger("kmm.encrypted")


def install_keyring(keyring: Keyring) -> None:
    """Make ``keyring`` the one every EncryptedText column in this process uses."""
    global _keyring
    _keyring = keyring


def installed_keyring() -> Keyring:
    if _keyring is None:
        raise RuntimeError("no keyring installed for encrypted columns (AppState.build installs it)")
    return _keyring


# -- the bound format ----------------------------------------------------------------


def row_aad(table: str, column: str, key: Sequence[Any]) -> bytes:
    """The associated data of a value: its table, column and primary key (every key column)."""
    parts = [table, column, [str(v) if isinstance(v, uuid.UUID) else v for v in key]]
    return _AAD + b":" + json.dumps(parts, separators=(",", ":"), default=str).encode()


class Bound(str):
    """Text to be stored, with the associated data of the row and column it goes to."""

    aad: bytes

    def __new__(cls, text: str, aad: bytes) -> Bound:
        self = super().__new__(cls, text)
        self.aad = aad
        return self


def bound(table: str, column: str, key: Sequence[Any], text: str | None) -> Bound | None:
    """``text`` for ``table.column`` of the row with primary key ``key`` (for a Core write)."""
    return None if text is None else Bound(text, row_aad(table, column, key))


class Sealed:
    """A stored value not yet opened: it opens only with its own row's associated data."""

    __slots__ = ("stored",)

    def __init__(self, stored: str) -> None:
        self.stored = stored

    def __repr__(self) -> str:
        return "Sealed(...)"


def seal(keyring: Keyring, text: str, aad: bytes) -> str:
    kid, key = keyring.current()
    blob = base64.urlsafe_b64encode(encrypt(key, text.encode(), aad)).decode().rstrip("=")
    return f"{BOUND_PREFIX}:{kid}:{blob}"


def unseal(keyring: Keyring, stored: str, aad: bytes) -> str:
    """Open a ``kmm2`` value; DecryptionError if it is not one or is not this row's."""
    prefix, kid, blob = _split(stored)
    if prefix != BOUND_PREFIX:
        raise DecryptionError("not a value bound to its row")
    return decrypt(keyring.key(kid), _unb64(blob), aad).decode()


class IntegrityFailure(Conflict):
    """A stored encrypted value does not open with its own row's associated data (§6.6).

    It names the value's table, column and row key (never content), for the audit event
    the service writes of it (app/workflows/audit/trail.py, ``integrity_event``)."""

    default_type = "integrity-error"

    def __init__(self, table: str, column: str, key: Sequence[Any]) -> None:
        super().__init__("a stored value of this resource fails its integrity check and is not shown", clause="§6.6")
        self.table, self.column, self.key = table, column, [str(k) for k in key]


@contextmanager
def opening(table: str, column: str, key: Sequence[Any]) -> Iterator[None]:
    """Open stored ciphertext of ``table.column`` of the row ``key`` inside: a value that does not
    open (altered, copied from another row, or under a key not held) is an IntegrityFailure,
    logged by column and row without content (§6.6)."""
    try:
        yield
    except DecryptionError:
        log.error("an encrypted value fails its integrity check: it was altered or copied from another row",
                  extra={"column": f"{table}.{column}", "row": [str(k) for k in key]})
        raise IntegrityFailure(table, column, key) from None


def open_value(keyring: Keyring, value: Sealed | str | None, table: str, column: str, key: Sequence[Any]) -> str | None:
    """The text of a value read from ``table.column`` of the row ``key``; IntegrityFailure if it
    is not that row's (copied from elsewhere, or altered), logged without content."""
    if value is None or not isinstance(value, Sealed):
        return value
    with opening(table, column, key):
        return unseal(keyring, value.stored, row_aad(table, column, key))


# -- the unbound format (migrations) -------------------------------------------------


def encrypt_text(keyring: Keyring, text: str) -> str:
    kid, key = keyring.current()
    blob = base64.urlsafe_b64encode(encrypt(key, text.encode(), _AAD)).decode().rstrip("=")
    return f"{PREFIX}:{kid}:{blob}"


def decrypt_text(keyring: Keyring, stored: str) -> str:
    prefix, kid, blob = _split(stored)
    if prefix != PREFIX:
        raise DecryptionError("not an unbound value")
    return decrypt(keyring.key(kid), _unb64(blob), _AAD).decode()


def stored_key_id(stored: str) -> str:
    """The id of the master key a stored value is encrypted with."""
    _, kid, _ = _split(stored)
    return kid


def _unb64(blob: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    except ValueError as exc:
        raise DecryptionError("not an encrypted value") from exc


def _split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(":", 2)
    if len(parts) != 3 or parts[0] not in (PREFIX, BOUND_PREFIX):
        raise DecryptionError("not an encrypted value")
    return parts[0], parts[1], parts[2]


def key_prefix(kid: str) -> str:
    """What every value encrypted under master key ``kid`` starts with (for LIKE)."""
    return f"{BOUND_PREFIX}:{kid}:"


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest with the current master key, bound to its row; None stays NULL.

    Written as ``Bound`` (a plain ``str`` is refused); read as ``Sealed`` (the ORM opens it).
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Bound):
            raise TypeError("encrypted text is written with its row's associated data (Bound), never alone")
        return seal(installed_keyring(), value, value.aad)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else Sealed(value)


# -- the ORM binds each value to its row ---------------------------------------------


def _encrypted_attributes(mapper: Mapper[Any]) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(table, the key's attribute names, [(attribute, column)]) of a mapper's EncryptedText columns."""
    table = mapper.local_table
    assert isinstance(table, Table)
    pk = [mapper.get_property_by_column(c).key for c in table.primary_key.columns]
    found = [(mapper.get_property_by_column(c).key, c.name) for c in table.columns if isinstance(c.type, EncryptedText)]
    return table.name, pk, found


@event.listens_for(Mapper, "mapper_configured")
def _bind_rows(mapper: Mapper[Any], cls: type[Any]) -> None:
    table_name, pk, found = _encrypted_attributes(mapper)
    if not found:
        return

    def key_of(state: InstanceState[Any]) -> list[Any]:
        return [state.dict.get(name) for name in pk]

    def wrap(target: Any, *, changed_only: bool) -> None:
        state: InstanceState[Any] = attributes.instance_state(target)
        key = key_of(state)
        if any(k is None for k in key):
            raise TypeError(f"{table_name}: encrypted text needs the row's primary key before it is written")
        for attr, column in found:
            value = state.dict.get(attr)
            if not isinstance(value, str):
                continue
            if changed_only and not state.attrs[attr].history.has_changes():
                continue
            state.dict[attr] = Bound(value, row_aad(table_name, column, key))

    def open_all(target: Any, *_: Any) -> None:
        state: InstanceState[Any] = attributes.instance_state(target)
        keyring = installed_keyring()
        for attr, column in found:
            value = state.dict.get(attr)
            if isinstance(value, Sealed):
                attributes.set_committed_value(target, attr, open_value(keyring, value, table_name, column,
                                                                          key_of(state)))

    event.listen(mapper, "before_insert", lambda _m, _c, target: wrap(target, changed_only=False))
    event.listen(mapper, "before_update", lambda _m, _c, target: wrap(target, changed_only=True))
    event.listen(mapper, "load", open_all)
    event.listen(mapper, "refresh", open_all)
    event.listen(mapper, "refresh_flush", open_all)


def encrypted_columns(metadata: MetaData) -> Iterator[tuple[Table, Column[str]]]:
    """Every (table, column) of type EncryptedText, in dependency order."""
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                yield table, column
