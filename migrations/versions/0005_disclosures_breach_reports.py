"""disclosures and breach reports (DESIGN §5)

uq_breach_reports_open_detection: at most one open unauthorised-access report per
account, so two simultaneous detections cannot open two (§7.2).

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26 07:39:03.487008
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types)
from alembic import op

import app.core.db  # noqa: F401  (UTCDateTime)


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('breach_reports',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reporter_id', sa.Uuid(), nullable=True),
    sa.Column('concerned_user_id', sa.Uuid(), nullable=True),
    sa.Column('handler_id', sa.Uuid(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=True),
    sa.Column('complainant_name', sa.Text(), nullable=True),
    sa.Column('complaint_procedure_advised', sa.Boolean(), nullable=True),
    sa.Column('investigating_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finding', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('found_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['concerned_user_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['found_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['handler_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['reporter_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('breach_reports', schema=None) as batch_op:
        batch_op.create_index('ix_breach_reports_concerned', ['concerned_user_id'], unique=False)
        batch_op.create_index('ix_breach_reports_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_breach_reports_handler', ['handler_id', 'status'], unique=False)
        batch_op.create_index('ix_breach_reports_reporter', ['reporter_id'], unique=False)
        batch_op.create_index('uq_breach_reports_open_detection', ['concerned_user_id'], unique=True, sqlite_where=sa.text("kind = 'unauthorised_access' AND status <> 'closed'"), postgresql_where=sa.text("kind = 'unauthorised_access' AND status <> 'closed'"))

    op.create_table('breach_report_events',
    sa.Column('audit_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('report_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['audit_event_id'], ['audit_events.id'], ),
    sa.ForeignKeyConstraint(['report_id'], ['breach_reports.id'], ),
    sa.PrimaryKeyConstraint('audit_event_id')
    )
    with op.batch_alter_table('breach_report_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_breach_report_events_report_id'), ['report_id'], unique=False)

    op.create_table('disclosures',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('clause', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('record_ids', sa.JSON(), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('consent_reference', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('raised_by', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('authority', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('reported_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reported_by', sa.Uuid(), nullable=True),
    sa.Column('subject_informed_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('subject_informed_method', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('subject_informed_by', sa.Uuid(), nullable=True),
    sa.Column('closed_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['closed_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['raised_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['reported_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ),
    sa.ForeignKeyConstraint(['subject_informed_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('disclosures', schema=None) as batch_op:
        batch_op.create_index('ix_disclosures_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_disclosures_raised_by', ['raised_by', 'created_at'], unique=False)
        batch_op.create_index('ix_disclosures_subject', ['subject_id'], unique=False)



def downgrade() -> None:
    op.drop_table('disclosures')
    op.drop_table('breach_report_events')
    op.drop_table('breach_reports')
