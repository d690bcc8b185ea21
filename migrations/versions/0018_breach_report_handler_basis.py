"""breach_reports.handler_basis: why the handler holds the report

``line_manager`` or ``director`` (routed so when the report was made or routed again), or
``assigned`` (by a director). Re-routing reads it to tell whether the relation that made the
handler still holds (§1.8, §7.1).

Reports already there get it from the audit trail: the latest of the report's
``breach_report.create`` / ``breach_report.rerouted`` (their ``routed_to``) and
``breach_report.assign`` events. The trail is only read. A report with none keeps NULL.

A column of ``breach_reports``: the service role's grants on the table (0012) cover it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 13:00:00.000000
"""
import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HANDLER_EVENTS = ('breach_report.create', 'breach_report.rerouted', 'breach_report.assign')
BASES = ('line_manager', 'director', 'assigned')

events = sa.table('audit_events', sa.column('id', sa.BigInteger()), sa.column('action', sa.String()),
                  sa.column('resource_type', sa.String()), sa.column('resource_id', sa.String()),
                  sa.column('detail', sa.JSON()))
reports = sa.table('breach_reports', sa.column('id', sa.Uuid()), sa.column('handler_basis', sa.String()))


def _from_the_trail() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(events.c.resource_id, events.c.action, events.c.detail)
        .where(events.c.resource_type == 'breach_report', events.c.action.in_(HANDLER_EVENTS))
        .order_by(events.c.id))
    last: dict[uuid.UUID, str | None] = {}
    for resource_id, action, detail in rows:
        try:
            report_id = uuid.UUID(resource_id)
        except (TypeError, ValueError):
            continue
        if isinstance(detail, str):
            detail = json.loads(detail)
        basis = 'assigned' if action == 'breach_report.assign' else (detail or {}).get('routed_to')
        last[report_id] = basis if basis in BASES else None
    for report_id, basis in last.items():
        if basis is not None:
            bind.execute(sa.update(reports).where(reports.c.id == report_id).values(handler_basis=basis))


def upgrade() -> None:
    with op.batch_alter_table('breach_reports') as batch:
        batch.add_column(sa.Column('handler_basis', sa.String(length=16), nullable=True))
    _from_the_trail()


def downgrade() -> None:
    with op.batch_alter_table('breach_reports') as batch:
        batch.drop_column('handler_basis')
