"""``EncryptedText``: a column type for free text that can hold personal detail (§6.6).

Reasons, summaries and descriptions are encrypted with AES-GCM under the current
master key and stored as text: ``kmm1:<key id>:<base64url(nonce + ciphertext)>``.
Any key in the ring decrypts; ``kmm rotate-key`` re-encrypts every column of this type
it finds in the metadata (``encrypted_columns``). The ciphertext is random, so such a
column can be stored and read but never compared or searched in SQL.

The type has no access to the request, so the keyring is process-wide: AppState.build
installs it (``install_keyring``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from app.core.crypto import DecryptionError, Keyring, decrypt, encrypt

PREFIX = "kmm1"
_AAD = b"kmm-encrypted-text"
_keyring: Keyring | None = None


def install_keyring(keyring: Keyring) -> None:
    """Make ``keyring`` the one every EncryptedText column in this process uses."""
    global _keyring
    _keyring = keyring


def installed_keyring() -> Keyring:
    if _keyring is None:
        raise RuntimeError("no keyring installed for encrypted columns (AppState.build installs it)")
    return _keyring


def encrypt_text(keyring: Keyring, text: str) -> str:
    kid, key = keyring.current()
    blob = base64.urlsafe_b64encode(encrypt(key, text.encode(), _AAD)).decode().rstrip("=")
    return f"{PREFIX}:{kid}:{blob}"


def stored_key_id(stored: str) -> str:
    """The id of the master key a stored value is encrypted with."""
    _, kid, _ = _split(stored)
    return kid


def decrypt_text(keyring: Keyring, stored: str) -> str:
    _, kid, blob = _split(stored)
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    return decrypt(keyring.key(kid), raw, _AAD).decode()


def _split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise DecryptionError("not an encrypted value")
    return parts[0], parts[1], parts[2]


def key_prefix(kid: str) -> str:
    """What every value encrypted under master key ``kid`` starts with (for LIKE)."""
    return f"{PREFIX}:{kid}:"


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest with the current master key; None stays NULL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return encrypt_text(installed_keyring(), value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return decrypt_text(installed_keyring(), value)


def encrypted_columns(metadata: MetaData) -> Iterator[tuple[Table, Column[str]]]:
    """Every (table, column) of type EncryptedText, in dependency order."""
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                yield table, column
