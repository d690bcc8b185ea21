"""Accounts, service clients, sessions, refresh tokens and login attempts (DESIGN §2, §7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import EmailStr, StringConstraints, field_validator
from sqlalchemy import JSON, Index, false
from sqlmodel import Column, Field, SQLModel

from app.models.base import BigIntPK, created_at_field, enum_field, utc_column, uuid_pk


class Role(StrEnum):
    colleague = "colleague"
    director = "director"
    trustee = "trustee"


class StaffType(StrEnum):
    employee = "employee"
    volunteer = "volunteer"
    intern = "intern"


MIN_PASSWORD = 12
MAX_PASSWORD = 256


class UserBase(SQLModel):
    email: EmailStr = Field(max_length=254, unique=True, index=True)
    full_name: str = Field(min_length=1, max_length=200)
    role: Role = enum_field(16)
    staff_type: StaffType | None = enum_field(16, default=None)
    line_manager_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", index=True)

    @field_validator("email")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


class UserCreate(UserBase):
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class UserUpdate(SQLModel):
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    staff_type: StaffType | None = None
    line_manager_id: uuid.UUID | None = None
    active: bool | None = None


class UserPublic(UserBase):
    id: uuid.UUID
    active: bool
    created_at: datetime


class User(UserBase, table=True):
    __tablename__ = "users"

    id: uuid.UUID = uuid_pk()
    # When line_manager_id was last changed; None when it is as the account was made.
    line_manager_since: datetime | None = utc_column(nullable=True)
    active: bool = True
    password_hash: str = Field(max_length=255)
    # Set by a director's reset: until the account changes it, its sessions may do nothing else.
    must_change_password: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = created_at_field()
    deactivated_at: datetime | None = utc_column(nullable=True)


Scope = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ServiceClientBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=list, max_length=20, sa_type=JSON, nullable=False)


class ServiceClientCreate(ServiceClientBase):
    pass


class ServiceClientPublic(ServiceClientBase):
    id: uuid.UUID
    client_id: str
    active: bool
    created_at: datetime


class ServiceClientCreated(ServiceClientPublic):
    client_secret: str  # shown once


class ServiceClient(ServiceClientBase, table=True):
    __tablename__ = "service_clients"

    id: uuid.UUID = uuid_pk()
    client_id: str = Field(max_length=64, unique=True, index=True)
    secret_hash: str = Field(max_length=128)
    active: bool = True
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = created_at_field()


class AuthSession(SQLModel, table=True):
    """One login: its refresh tokens form a family; access tokens carry its id (``sid``)."""

    __tablename__ = "auth_sessions"

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


class PasswordChange(SQLModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class PasswordReset(SQLModel):
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
