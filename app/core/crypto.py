"""Envelope encryption of record content with AES-GCM (§6.6).

Each record has its own random data key. The data key is wrapped (encrypted) with a
master key from the settings; only the wrapped key is stored. Destroying a record
deletes its wrapped key and ciphertext, so the content cannot be recovered (§4.6).
Rotating the master key re-wraps data keys and never touches the content.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


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
    """Master keys by id; ``current`` wraps new data keys."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one master key")
        self._keys = dict(keys)
        self.current_id = next(iter(keys))

    def __contains__(self, kid: str) -> bool:
        return kid in self._keys

    def wrap(self, data_key: bytes, *, aad: bytes) -> tuple[str, bytes]:
        return self.current_id, encrypt(self._keys[self.current_id], data_key, aad)

    def unwrap(self, kid: str, wrapped: bytes, *, aad: bytes) -> bytes:
        key = self._keys.get(kid)
        if key is None:
            raise DecryptionError("unknown master key id")
        return decrypt(key, wrapped, aad)

    def new_data_key(self, *, aad: bytes) -> tuple[bytes, str, bytes]:
        """A fresh data key, and it wrapped under the current master key: (key, key_id, wrapped)."""
        data_key = AESGCM.generate_key(bit_length=256)
        kid, wrapped = self.wrap(data_key, aad=aad)
        return data_key, kid, wrapped

    def rewrap(self, kid: str, wrapped: bytes, *, aad: bytes) -> tuple[str, bytes]:
        """Re-wrap a data key under the current master key, content untouched."""
        return self.wrap(self.unwrap(kid, wrapped, aad=aad), aad=aad)
