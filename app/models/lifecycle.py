"""A record's lifecycle (§6): accuracy reviews and legal holds. The sweep is in retention.py."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Index, LargeBinary
from sqlmodel import Column, Field, SQLModel

from app.models.base import created_at_field, uuid_pk
from app.models.records import REASON_MAX

NOTE_MAX = 2000


class ReviewCreate(BaseModel):
    note: str | None = Field(default=None, min_length=1, max_length=NOTE_MAX)


class ReviewPublic(BaseModel):
    id: uuid.UUID
    record_id: uuid.UUID
    reviewed_by: uuid.UUID
    reviewed_at: datetime
    note: str | None
    last_verified_at: datetime
    review_due: datetime
    version: int


class RecordReview(SQLModel, table=True):
    """One verification of a record's accuracy (§6.4).

    The note is encrypted with the record's own data key, so destroying the record
    (which deletes that key) shreds the note with it (§4.6).
    """

    __tablename__ = "record_reviews"
    __table_args__ = (Index("ix_record_reviews_record", "record_id", "reviewed_at"),)

    id: uuid.UUID = uuid_pk()
    record_id: uuid.UUID = Field(foreign_key="records.id")
    reviewed_by: uuid.UUID = Field(foreign_key="users.id")
    reviewed_at: datetime = created_at_field()
    note_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class LegalHoldChange(BaseModel):
    legal_hold: bool
    reason: str = Field(min_length=1, max_length=REASON_MAX)


class LegalHoldPublic(BaseModel):
    record_id: uuid.UUID
    legal_hold: bool
    reason: str
    version: int
    changed_by: uuid.UUID
    changed_at: datetime
