"""Where the keys come from when the environment gives none (development): the git-ignored
local secrets file, created once, owner-only; and how a key written as text becomes bytes.

Production sets ``KMM_JWT_SECRET``, ``KMM_MASTER_KEYS`` and ``KMM_AUDIT_KEYS`` and never reads
the file (app/core/config.py refuses to start without them).
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import secrets
from pathlib import Path

from app.core.config import ConfigurationError
from app.core.files import read_private, write_private

log = logging.getLogger("kmm.config")


def _new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def load(path: Path) -> dict[str, object]:
    """Load (or create once) the local secrets file.

    Owner-only from the first byte, and whole: of two processes starting together one creates
    the file and the other reads it.
    """
    data: dict[str, object] = {"jwt_secret": secrets.token_urlsafe(48), "master_keys": [_new_key()],
                               "audit_keys": [_new_key()]}
    if not write_private(path, json.dumps(data, indent=2), replace=False):
        text = read_private(path)
        if text is None:
            raise ConfigurationError(f"the secrets file {path} vanished while it was read")
        loaded: dict[str, object] = json.loads(text)
        if "audit_keys" not in loaded:
            loaded = _add_audit_key(path)
        return loaded
    log.warning(
        "generated local secrets in %s (development only; production sets KMM_JWT_SECRET, "
        "KMM_MASTER_KEYS and KMM_AUDIT_KEYS)", path,
        extra={"path": str(path)},
    )
    return data


def _add_audit_key(path: Path) -> dict[str, object]:
    """Add an audit key to a secrets file written before there was one, once.

    Under an exclusive lock on the file, read again, and replace the file whole
    (owner-only) only if the key is still missing: processes starting together agree on one key.
    """
    with open(path, "rb") as locked:
        fcntl.flock(locked, fcntl.LOCK_EX)
        loaded: dict[str, object] = json.loads(path.read_text())
        if "audit_keys" in loaded:
            return loaded
        loaded["audit_keys"] = [_new_key()]
        write_private(path, json.dumps(loaded, indent=2))
    log.warning("added a local audit key to %s (development only; production sets KMM_AUDIT_KEYS)", path,
                extra={"path": str(path)})
    return loaded


def decode_keys(raw: list[str], *, what: str) -> list[bytes]:
    """base64 (urlsafe) 32-byte keys, in order; ``what`` names them in the error ("a master key")."""
    keys = []
    for text in raw:
        try:
            key = base64.urlsafe_b64decode(text.encode())
        except ValueError as exc:
            raise ConfigurationError(f"{what} is not valid base64") from exc
        if len(key) != 32:
            raise ConfigurationError(f"{what} must decode to 32 bytes")
        keys.append(key)
    if not keys:
        raise ConfigurationError(f"no {what.removeprefix('a ').removeprefix('an ')} is configured")
    return keys


def decode_master_keys(raw: list[str]) -> dict[str, bytes]:
    """Master keys by key id, in order (the first is current)."""
    from app.core.crypto import key_id

    return {key_id(key): key for key in decode_keys(raw, what="a master key")}
