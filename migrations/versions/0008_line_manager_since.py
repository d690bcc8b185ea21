"""line_manager_since: when an account's line manager was last changed

A read through a line-manager relation less than a day old is flagged in the audit
(§3.2, §4.5). Existing accounts get NULL: their relation counts as set when the account
was made, and is not flagged.

Revision ID: 0008
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = '0008'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("line_manager_since", app.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("line_manager_since")
