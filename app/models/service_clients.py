"""Service clients: other KMM systems that call the service with client credentials and scopes (DESIGN §2, §6.6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints
from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, uuid_pk

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
