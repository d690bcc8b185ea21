"""Every table, imported so SQLModel.metadata (and Alembic) sees them all."""

from app.models.accounts import AuthSession, LoginAttempt, RefreshToken, ServiceClient, User
from app.models.audit import AuditEvent
from app.models.lifecycle import RecordReview
from app.models.records import (
    EmergencyGrant,
    Record,
    RecordContent,
    RecordNamedAccess,
    RecordShare,
    Subject,
)

__all__ = [
    "AuditEvent",
    "AuthSession",
    "EmergencyGrant",
    "LoginAttempt",
    "Record",
    "RecordContent",
    "RecordNamedAccess",
    "RecordReview",
    "RecordShare",
    "RefreshToken",
    "ServiceClient",
    "Subject",
    "User",
]
