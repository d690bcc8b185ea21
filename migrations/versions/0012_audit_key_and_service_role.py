"""keyed audit seals and the service's least-privilege role

audit_seals gains ``key_id`` (which HMAC key made the seal; empty for the seals made
before the chain was keyed, which verify still accepts at the start of the chain) and
``gap_from`` (the ids found missing below the event when it was sealed).

On PostgreSQL it also creates the role ``kmm_app`` (NOLOGIN; roles belong to the whole
cluster, so only if it does not exist yet) and grants it, in the schema being migrated,
what the service needs and no more: SELECT and INSERT on the audit trail and its seals,
SELECT, INSERT, UPDATE and DELETE on the other tables (SELECT only on alembic_version),
the sequences, and the same on tables later migrations create. It owns nothing, so it
cannot drop or disable the append-only triggers, nor TRUNCATE. Migrations run as the
owner; the service runs as kmm_app or a login role that is a member of it (README).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 08:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_ROLE = "kmm_app"
# Verify reads the seals that record missing ids, and the unkeyed ones, by these.
INDEXES = (
    ("ix_audit_seals_gaps", ["event_id"], "gap_from IS NOT NULL"),
    ("ix_audit_seals_unkeyed", ["seq", "event_id"], "key_id = ''"),
)
# audit_event_records indexes the trail (0010) and is append-only like it.
APPEND_ONLY = ("audit_events", "audit_seals", "audit_event_records")

# Two migrations in one cluster (other databases, other schemas) may race to create it.
CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{SERVICE_ROLE}') THEN
        CREATE ROLE {SERVICE_ROLE} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$
"""


def _schema() -> str:
    bind = op.get_bind()
    name = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    return str(bind.dialect.identifier_preparer.quote(name))


def upgrade() -> None:
    with op.batch_alter_table('audit_seals') as batch:
        batch.add_column(sa.Column('key_id', sa.String(length=16), nullable=False, server_default=''))
        batch.add_column(sa.Column('gap_from', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('audit_seals') as batch:  # the default was for the seals already there
        batch.alter_column('key_id', existing_type=sa.String(length=16), existing_nullable=False,
                           server_default=None)
    for name, columns, where in INDEXES:
        op.create_index(name, 'audit_seals', columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))
    if op.get_bind().dialect.name != "postgresql":
        return
    schema, role = _schema(), SERVICE_ROLE
    op.execute(CREATE_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}")
    op.execute(f"REVOKE UPDATE, DELETE ON {', '.join(APPEND_ONLY)} FROM {role}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
    # Tables and sequences the owner creates here later (later migrations) come with the same grants.
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        schema, role = _schema(), SERVICE_ROLE
        # The role stays: other databases or schemas of the cluster may use it.
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {role}")
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {role}")
    for name, _, _ in INDEXES:
        op.drop_index(name, table_name='audit_seals')
    with op.batch_alter_table('audit_seals') as batch:
        batch.drop_column('gap_from')
        batch.drop_column('key_id')
