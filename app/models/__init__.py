"""Every table, imported so SQLModel.metadata (and Alembic) sees them all."""

from app.models import breach_reports, disclosures  # noqa: F401  (their tables)
from app.models.accounts import AuthSession, LoginAttempt, RefreshToken, ServiceClient, User
from app.models.audit import AuditEvent
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
    "RecordShare",
    "RefreshToken",
    "ServiceClient",
    "Subject",
    "User",
]
