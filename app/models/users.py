"""Accounts: staff, volunteers and trustees who use the service, and their passwords (DESIGN §2, §6.6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import EmailStr, field_validator
from sqlalchemy import false
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, utc_column, uuid_pk


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
    # The director who chose the current password, by making the account or resetting it; None when
    # it was made on the server. The account's own change keeps it: the director may have made that
    # change, logged in as the account. The account counts as that director where the policy keeps
    # something from them: line management (§3.2, §4.5) and breach reports about them (§1.8, §7.1).
    credentials_set_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")


class PasswordChange(SQLModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class PasswordReset(SQLModel):
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
