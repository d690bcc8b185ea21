"""Envelope encryption of record content with AES-GCM (§6.6).

Each record has its own random data key. The data key is wrapped (encrypted) with a
master key from the settings; only the wrapped key is stored. Destroying a record
deletes its wrapped key and ciphertext, so the content cannot be recovered (§4.6).
Rotating the master key re-wraps data keys and never touches the content.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
log = logging.getLogger("kmm.crypto")


class DecryptionError(RuntimeError):
    """Ciphertext or wrapped key does not open with the keys we hold."""


def key_id(key: bytes) -> str:
    """A short public fingerprint of a master key (never the key itself)."""
    return hashlib.sha256(b"kmm-master-key-id:" + key).hexdigest()[:16]


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("cannot decrypt") from exc


class Keyring:
    """Master keys by id; ``current`` wraps new data keys.

    With a ``source`` (a callable returning the keys in order, current first) the ring
    reloads itself: when it meets a key id it does not hold (another process rotated
    the key), and, on the write path, at most every ``refresh_seconds`` so that a
    long-running process starts wrapping under a new current key without a restart.
    A known key id costs nothing extra.
    """

    def __init__(
        self,
        keys: dict[str, bytes],
        *,
        source: Callable[[], dict[str, bytes]] | None = None,
        refresh_seconds: float = 30.0,
    ) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one master key")
        self._source = source
        self._refresh_seconds = refresh_seconds
        self._install(keys)

    def _install(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one master key")
        # One assignment, so a concurrent reader sees either the old ring or the new one.
        self._ring = (dict(keys), next(iter(keys)))
        self._loaded_at = time.monotonic()

    @property
    def current_id(self) -> str:
        return self._ring[1]

    @property
    def key_ids(self) -> list[str]:
        """Key ids in order, current first."""
        return list(self._ring[0])

    def __contains__(self, kid: str) -> bool:
        return kid in self._ring[0]

    def reload(self) -> bool:
        """Re-read the keys from the source; True when the ring changed."""
        if self._source is None:
            return False
        try:
            keys = self._source()
        except Exception:  # a half-written or unreadable source: keep what we hold
            log.warning("could not reload the master keys; keeping the ones loaded")
            return False
        changed = list(keys.items()) != list(self._ring[0].items())
        self._install(keys)
        if changed:
            log.info("master keys reloaded", extra={"current_key_id": self.current_id, "keys": len(keys)})
        return changed

    def key(self, kid: str) -> bytes:
        """The master key with this id, reloading the ring once if it is unknown."""
        key = self._ring[0].get(kid)
        if key is None and self.reload():
            key = self._ring[0].get(kid)
        if key is None:
            raise DecryptionError("unknown master key id")
        return key

    def current(self) -> tuple[str, bytes]:
        """(id, key) of the current master key, refreshing a stale ring first."""
        if self._source is not None and time.monotonic() - self._loaded_at > self._refresh_seconds:
            self.reload()
        keys, kid = self._ring
        return kid, keys[kid]

    def wrap(self, data_key: bytes, *, aad: bytes) -> tuple[str, bytes]:
        kid, key = self.current()
        return kid, encrypt(key, data_key, aad)

    def unwrap(self, kid: str, wrapped: bytes, *, aad: bytes) -> bytes:
        return decrypt(self.key(kid), wrapped, aad)

    def new_data_key(self, *, aad: bytes) -> tuple[bytes, str, bytes]:
        """A fresh data key, and it wrapped under the current master key: (key, key_id, wrapped)."""
        data_key = AESGCM.generate_key(bit_length=256)
        kid, wrapped = self.wrap(data_key, aad=aad)
        return data_key, kid, wrapped

    def rewrap(self, kid: str, wrapped: bytes, *, aad: bytes) -> tuple[str, bytes]:
        """Re-wrap a data key under the current master key, content untouched."""
        return self.wrap(self.unwrap(kid, wrapped, aad=aad), aad=aad)
