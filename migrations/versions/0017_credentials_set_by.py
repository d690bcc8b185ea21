"""credentials_set_by: the director who chose an account's current password

Set when a director makes the account or resets its password, kept when the account changes
its own (the director may have made that change, logged in as it), replaced by the next
director's reset. The account counts as that director where the policy keeps something from
them: it is not made someone's line manager by them (§3.2, §4.5) and sees no breach report
about them (§1.8, §7.1).

Accounts already there get it from the audit trail: the director of the last allowed
``account.create`` or ``account.password_reset`` event about the account, if any (an account
made on the server, ``kmm create-user``, has no director there). The trail is only read.

A column of ``users``: the service role's grants on the table (0012) cover it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 12:00:00.000000
"""
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = 'fk_users_credentials_set_by_users'
CHOSEN = ('account.create', 'account.password_reset')

events = sa.table('audit_events', sa.column('id', sa.BigInteger()), sa.column('actor_id', sa.Uuid()),
                  sa.column('actor_kind', sa.String()), sa.column('action', sa.String()),
                  sa.column('resource_type', sa.String()), sa.column('resource_id', sa.String()),
                  sa.column('decision', sa.String()))
users = sa.table('users', sa.column('id', sa.Uuid()), sa.column('credentials_set_by', sa.Uuid()))


def _from_the_trail() -> None:
    bind = op.get_bind()
    chosen = bind.execute(
        sa.select(events.c.resource_id, events.c.actor_id)
        .where(events.c.action.in_(CHOSEN), events.c.resource_type == 'user', events.c.decision == 'allow',
               events.c.actor_kind == 'user', events.c.actor_id.is_not(None))
        .order_by(events.c.id))
    last: dict[uuid.UUID, uuid.UUID] = {}
    for resource_id, actor_id in chosen:
        try:
            last[uuid.UUID(resource_id)] = actor_id
        except (TypeError, ValueError):
            continue
    known = set(bind.execute(sa.select(users.c.id)).scalars())
    for user_id, director_id in last.items():
        if user_id in known and director_id in known and director_id != user_id:
            bind.execute(sa.update(users).where(users.c.id == user_id).values(credentials_set_by=director_id))


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('credentials_set_by', sa.Uuid(), nullable=True))
        batch.create_foreign_key(FOREIGN_KEY, 'users', ['credentials_set_by'], ['id'])
    _from_the_trail()


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint(FOREIGN_KEY, type_='foreignkey')
        batch.drop_column('credentials_set_by')
