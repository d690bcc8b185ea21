"""housekeeping indexes: what the deletes of old rows find their rows by (§6.5)

Finished webhook deliveries already have ``ix_webhook_deliveries_due`` (status, next
attempt) and idempotency keys ``ix_idempotency_keys_expires_at``. Added: webhook events by
occurrence and creation (the old events that are not scheduled notices, found without
scanning the notices, which are kept for good); deliveries by event (is any left, and
PostgreSQL's foreign-key check when an event is deleted); login attempts by time; sessions
by creation and by revocation.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 09:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ('webhook_events', 'ix_webhook_events_occurrence_created', ['occurrence_at', 'created_at']),
    ('webhook_deliveries', 'ix_webhook_deliveries_event', ['event_id']),
    ('login_attempts', 'ix_login_attempts_at', ['at']),
    ('auth_sessions', 'ix_auth_sessions_created_at', ['created_at']),
    ('auth_sessions', 'ix_auth_sessions_revoked_at', ['revoked_at']),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
