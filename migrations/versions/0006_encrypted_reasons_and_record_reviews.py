"""encrypted reasons and record reviews

Legal hold and destroy reasons become EncryptedText (stored as TEXT): values already
in the table are encrypted here with the current master key; downgrade decrypts them.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-26 07:30:49.259336
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types)
from alembic import context, op

import app.core.db  # noqa: F401  (UTCDateTime)
from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.encrypted import PREFIX, decrypt_text, encrypt_text

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("legal_hold_reason", "destroy_reason")


def _reasons(*, encrypt: bool) -> None:
    """Encrypt the plain reasons already stored (or, going down, decrypt them)."""
    settings: Settings = context.config.attributes.get("settings") or Settings()
    keyring = Keyring(settings.read_keyring())
    records = sa.table("records", sa.column("id", sa.Uuid()), *(sa.column(c, sa.Text()) for c in REASONS))
    bind = op.get_bind()
    for name in REASONS:
        column = records.c[name]
        encrypted = column.like(f"{PREFIX}:%")
        rows = bind.execute(
            sa.select(records.c.id, column).where(column.is_not(None), ~encrypted if encrypt else encrypted)
        ).all()
        for rid, value in rows:
            new = encrypt_text(keyring, value) if encrypt else decrypt_text(keyring, value)
            bind.execute(records.update().where(records.c.id == rid).values({name: new}))


def upgrade() -> None:
    op.create_table('record_reviews',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('reviewed_by', sa.Uuid(), nullable=False),
    sa.Column('reviewed_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('note_ct', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], ),
    sa.ForeignKeyConstraint(['reviewed_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('record_reviews', schema=None) as batch_op:
        batch_op.create_index('ix_record_reviews_record', ['record_id', 'reviewed_at'], unique=False)

    with op.batch_alter_table('records', schema=None) as batch_op:
        for name in REASONS:
            batch_op.alter_column(name, existing_type=sa.VARCHAR(length=500), type_=sa.Text(),
                                  existing_nullable=True)
    _reasons(encrypt=True)


def downgrade() -> None:
    _reasons(encrypt=False)
    with op.batch_alter_table('records', schema=None) as batch_op:
        for name in reversed(REASONS):
            batch_op.alter_column(name, existing_type=sa.Text(), type_=sa.VARCHAR(length=500),
                                  existing_nullable=True)

    with op.batch_alter_table('record_reviews', schema=None) as batch_op:
        batch_op.drop_index('ix_record_reviews_record')

    op.drop_table('record_reviews')
