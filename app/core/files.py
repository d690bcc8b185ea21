"""Owner-only files for secrets: the development secrets, the demo logins, the SQLite database.

Each is 0600 from the moment it exists, whatever the umask: it is written to a fresh
temporary file in the same directory (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600), synced,
then renamed over the target, or linked to it when it must not replace one. A reader never
sees a half-written file, nothing is written through a symbolic link, and a leftover or
planted temporary file is never reused. A symbolic link in place of a secrets file is
refused rather than followed.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from app.core.config import ConfigurationError

log = logging.getLogger("kmm.files")

PRIVATE = 0o600
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _temporary(path: Path) -> tuple[Path, int]:
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            return tmp, os.open(tmp, _CREATE, PRIVATE)
        except FileExistsError:
            continue


def write_private(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path``, mode 0600, atomically.

    With ``replace=False`` an existing ``path`` (or a symbolic link there) is left alone and
    the result is False: of two processes creating the file together, one wins whole.
    """
    tmp, fd = _temporary(path)
    try:
        os.fchmod(fd, PRIVATE)  # exactly 0600, even under a umask that takes more away
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)  # rename replaces a symbolic link itself, never its target
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read_private(path: Path) -> str | None:
    """The text of an owner-only file, or None when there is none; a symbolic link is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigurationError(
                f"{path} is a symbolic link; secrets are never read or written through one (remove it)"
            ) from exc
        raise
    with os.fdopen(fd, "r") as fh:
        if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) & 0o077:
            log.warning("%s can be read by others than its owner; make it mode 0600", path,
                        extra={"path": str(path)})
        return fh.read()


def create_private(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless something is there already."""
    try:
        fd = os.open(path, _CREATE, PRIVATE)
    except FileExistsError:
        return
    os.fchmod(fd, PRIVATE)
    os.close(fd)
