"""Sessions, refresh tokens, login attempts and the token pair a login returns (DESIGN §7)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Column, Field, SQLModel

from app.models.base import BigIntPK, created_at_field, utc_column, uuid_pk


class AuthSession(SQLModel, table=True):
    """One login: its refresh tokens form a family; access tokens carry its id (``sid``)."""

    __tablename__ = "auth_sessions"
    # Housekeeping finds sessions that ended long ago by them (§6.5).
    __table_args__ = (
        Index("ix_auth_sessions_created_at", "created_at"),
        Index("ix_auth_sessions_revoked_at", "revoked_at"),
    )

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", index=True)
    client_id: uuid.UUID | None = Field(default=None, foreign_key="service_clients.id", index=True)
    created_at: datetime = created_at_field()
    revoked_at: datetime | None = utc_column(nullable=True)
    revoked_reason: str | None = Field(default=None, max_length=32)


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: uuid.UUID = uuid_pk()  # the token's jti
    session_id: uuid.UUID = Field(foreign_key="auth_sessions.id", index=True)
    issued_at: datetime = created_at_field()
    expires_at: datetime = utc_column()
    used_at: datetime | None = utc_column(nullable=True)


class LoginAttempt(SQLModel, table=True):
    """One password check (a login, or a password change's current password), or an unlock.

    ``outcome``: ``pending`` while the password is being checked, then ``success``,
    ``failed`` (a wrong password: the only outcome that counts towards a lock),
    ``refused`` (the right password of a deactivated account); ``unlocked`` marks a
    director's unlock. ``email_key`` is a keyed hash of the email tried, so attempts on
    unknown emails are counted alike without keeping the emails.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_user_at", "user_id", "at"),
        Index("ix_login_attempts_email_key", "email_key", "id"),
        Index("ix_login_attempts_address", "client_address", "id"),
        Index("ix_login_attempts_at", "at"),  # housekeeping deletes the old ones (§6.5)
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    email_key: str | None = Field(default=None, max_length=64)
    client_address: str | None = Field(default=None, max_length=64)
    at: datetime = utc_column()
    outcome: str = Field(max_length=16)


class TokenPair(SQLModel):
    access_token: str
    refresh_token: str | None = None
    token_type: str = "bearer"
    expires_in: int
    # The scopes granted, space-separated (RFC 6749 §5.1): a service client's; empty for an
    # account, which acts under its role.
    scope: str = ""
    # True after a director's reset: the tokens only read /users/me, change the password
    # (POST /users/me/password) and log out, until it is changed and the session refreshed.
    password_change_required: bool = False
