"""Shared column helpers for the SQLModel tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlmodel import Column, Field

from app.core.db import UTCDateTime

# An autoincrementing 64-bit key that is SQLite's rowid there.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def enum_field(length: int, *, default: Any = ..., index: bool = False) -> Any:
    """A StrEnum column, stored as the VARCHAR(length) the migrations make.

    Written as the enum; read back as the driver's string, which equals the member (a
    StrEnum is a str), so no row is converted on the way out and the hot path's plain rows
    compare as the ORM's objects do. Response models validate it into the enum.
    """
    return Field(default=default, sa_type=String(length), index=index)


def uuid_pk() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def created_at_field() -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=False))


__all__ = ["BigIntPK", "created_at_field", "datetime", "enum_field", "utc_column", "uuid_pk"]
