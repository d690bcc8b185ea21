"""Every table, imported so SQLModel.metadata (and Alembic) sees them all."""

from app.models.accounts import AuthSession, LoginAttempt, RefreshToken, ServiceClient, User
from app.models.audit import AuditEvent, AuditSeal

__all__ = ["AuditEvent", "AuditSeal", "AuthSession", "LoginAttempt", "RefreshToken", "ServiceClient", "User"]
