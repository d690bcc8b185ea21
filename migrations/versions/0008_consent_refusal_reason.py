"""consent refusal reason

Why a person refused consent (§1.2, §6.1): free text about them, so EncryptedText
(stored as TEXT). The column is new, so there is nothing to encrypt here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 07:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_refusal_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch copy of `records` would break the
    # foreign keys that point at it.
    op.drop_column('records', 'consent_refusal_reason')
