"""What one service process holds: settings, engine, clock, token and key handlers.

Nothing here is state another process needs: every fact lives in the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.audit_keys import AuditKeys, install_audit_keys
from app.core.audit_writer import AuditWriter
from app.core.clock import Clock
from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.db import RowSource, make_engine, make_sessionmaker, row_source
from app.core.encrypted import install_keyring
from app.core.pagination import CursorCodec
from app.core.security import Passwords, Tokens


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock
    tokens: Tokens
    passwords: Passwords
    cursors: CursorCodec
    keyring: Keyring
    audit_keys: AuditKeys
    # The hot path's reads (GET /records/{id}) and its group-committed audit events.
    rows: RowSource
    audit: AuditWriter

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None) -> AppState:
        settings.require_secrets()
        engine = make_engine(settings)
        # Reloads from its source when it meets a key id it lacks (see `kmm rotate-key`).
        keyring = Keyring(settings.keyring, source=settings.read_keyring)
        audit_keys = AuditKeys(settings.audit_key_list, unkeyed_allowed=settings.audit_unkeyed_seals)
        rows = row_source(settings, engine)
        state = cls(
            settings=settings,
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            clock=clock or Clock(),
            tokens=Tokens(settings),
            passwords=Passwords(settings),
            cursors=CursorCodec(settings.signing_key),
            keyring=keyring,
            audit_keys=audit_keys,
            rows=rows,
            audit=AuditWriter(rows),
        )
        state.install_keys()
        return state

    def install_keys(self) -> None:
        """Make this state's keys the process's: EncryptedText columns and audit seals use the
        installed ones, which must be the keys this state wraps and re-wraps with (§6.6)."""
        install_keyring(self.keyring)
        install_audit_keys(self.audit_keys)
