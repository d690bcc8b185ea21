"""The audit chain's HMAC keys (docs/audit.md): from the settings, never in the database.

The first key seals; every key listed verifies the seals made with it, so a new key is
put first and an old one kept as long as seals made with it must verify. A seal names
its key by a short id derived from the key (it does not reveal the key).
"""

from __future__ import annotations

import hashlib

BLOCK = 64  # SHA-256's block size, in bytes: HMAC pads its key to it


def audit_key_id(key: bytes) -> str:
    return hashlib.sha256(b"kmm-audit-key-id:" + key).hexdigest()[:16]


class AuditKeys:
    """The keys in order, the first current; by key id; and HMAC's padded forms for SQL."""

    def __init__(self, keys: list[bytes], *, unkeyed_allowed: int = 0) -> None:
        if not keys:
            raise ValueError("the audit chain needs at least one key")
        self._keys = {audit_key_id(k): k for k in keys}
        # How many seals made before the chain was keyed verify (KMM_AUDIT_UNKEYED_SEALS):
        # the operator states it once, from outside the database, after the upgrade.
        self.unkeyed_allowed = unkeyed_allowed

    @property
    def current_id(self) -> str:
        return next(iter(self._keys))

    @property
    def current(self) -> bytes:
        return self._keys[self.current_id]

    def ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    def secrets(self) -> list[bytes]:
        return list(self._keys.values())

    def pads(self, key_id: str) -> tuple[bytes, bytes]:
        """HMAC's inner and outer padded keys: (K xor ipad, K xor opad), K padded to a block."""
        key = self._keys[key_id]
        if len(key) > BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)

    def __repr__(self) -> str:  # never the keys themselves
        return f"AuditKeys({self.ids()})"


_installed: AuditKeys | None = None


def install_audit_keys(keys: AuditKeys) -> None:
    """Make these the process's keys (AppState.build does it, as it installs the keyring)."""
    global _installed
    _installed = keys


def installed_keys() -> AuditKeys:
    if _installed is None:
        raise RuntimeError("no audit keys installed (AppState.build installs them)")
    return _installed
