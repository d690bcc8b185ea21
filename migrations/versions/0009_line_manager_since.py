"""line_manager_since: when an account's line manager was last changed

A read through a line-manager relation less than a day old is flagged in the audit
(§3.2, §4.5). Existing accounts get NULL: their relation counts as set when the account
was made, and is not flagged.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("line_manager_since", app.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+): a batch copy of `users` would break the foreign keys to it.
    op.drop_column("users", "line_manager_since")
