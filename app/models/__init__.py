"""Every table, imported so SQLModel.metadata (and Alembic) sees them all.

One line per module, so adding a module never conflicts with another.
"""

# ruff: noqa: F401
from app.models import breach_reports, disclosures
from app.models.access_requests import AccessPackageSealed, AccessRequest
from app.models.audit import AuditEvent, AuditSeal
from app.models.auth import AuthSession, LoginAttempt, RefreshToken
from app.models.emergency_grants import EmergencyGrant
from app.models.idempotency import IdempotencyKey
from app.models.lifecycle import RecordReview
from app.models.records import Record, RecordContent, RecordNamedAccess, RecordShare
from app.models.service_clients import ServiceClient
from app.models.subjects import Subject
from app.models.users import User
from app.models.webhooks import ScheduledJob, Webhook, WebhookAttempt, WebhookDelivery, WebhookEvent
