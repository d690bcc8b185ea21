"""login throttle by address and email key; passwords that must be changed

login_attempts gains the keyed hash of the email tried, the client address and an
outcome (pending / success / failed / refused / unlocked) in place of the success flag;
users gain must_change_password (set by a director's reset).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 07:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types)
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))

    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('client_address', sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    attempts = sa.table('login_attempts', sa.column('success', sa.Boolean()), sa.column('outcome', sa.String()))
    op.execute(attempts.update().values(outcome=sa.case((attempts.c.success, 'success'), else_='failed')))
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.alter_column('outcome', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
                              nullable=False)
        batch_op.drop_column('success')
        batch_op.create_index('ix_login_attempts_email_key', ['email_key', 'id'], unique=False)
        batch_op.create_index('ix_login_attempts_address', ['client_address', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_address')
        batch_op.drop_index('ix_login_attempts_email_key')
        batch_op.add_column(sa.Column('success', sa.Boolean(), nullable=True))
    attempts = sa.table('login_attempts', sa.column('success', sa.Boolean()), sa.column('outcome', sa.String()))
    op.execute(attempts.update().values(success=attempts.c.outcome == 'success'))
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.alter_column('success', existing_type=sa.Boolean(), nullable=False)
        batch_op.drop_column('outcome')
        batch_op.drop_column('client_address')
        batch_op.drop_column('email_key')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
