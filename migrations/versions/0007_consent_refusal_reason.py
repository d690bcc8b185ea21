"""consent refusal reason

Why a person refused consent (§1.2, §6.1): free text about them, so EncryptedText
(stored as TEXT). The column is new, so there is nothing to encrypt here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 07:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_refusal_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_column('consent_refusal_reason')
