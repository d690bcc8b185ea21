"""every record keeps retention and review dates; list views are traced per record

Records without a retention date (general ones were made without) get the per-purpose
schedule's (created_at + Settings.retention_days), records without a review date get
created_at (or the last verification) + Settings.review_interval_days; then both columns
are NOT NULL (§6.4, §6.5).

audit_event_records indexes the record ids a list event showed (its detail["record_ids"]).
A trigger on audit_events writes those rows in the statement that inserts the event, so
every writer (the group-commit writer included) fills it, in the event's own transaction.
On PostgreSQL the table is append-only like the trail it indexes.

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

import app.core.db
from app.core.config import Settings

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_DAYS = 6 * 365  # a purpose missing from the schedule (app/policy/retention.py)

SQLITE_TRIGGER = """
CREATE TRIGGER audit_events_list_records AFTER INSERT ON audit_events
FOR EACH ROW WHEN NEW.action = 'record.list'
BEGIN
    INSERT INTO audit_event_records (record_id, event_id)
    SELECT value, NEW.id FROM json_each(NEW.detail, '$.record_ids');
END
"""
PG_FUNCTION = """
CREATE FUNCTION kmm_audit_event_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_event_records (record_id, event_id)
    SELECT value, NEW.id FROM json_array_elements_text(NEW.detail -> 'record_ids') AS value;
    RETURN NULL;
END
$$
"""
PG_TRIGGER = """
CREATE TRIGGER audit_events_list_records AFTER INSERT ON audit_events
FOR EACH ROW WHEN (NEW.action = 'record.list') EXECUTE FUNCTION kmm_audit_event_records()
"""


def _plus_days(dialect: str, column: str, days: int) -> str:
    if dialect == "postgresql":
        return f"{column} + make_interval(days => {int(days)})"
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff'; datetime() drops the fraction, so put it back.
    return f"datetime({column}, '+{int(days)} days') || substr({column}, 20)"


def _fill_dates(dialect: str) -> None:
    settings: Settings = context.config.attributes.get("settings") or Settings()
    for purpose, days in settings.retention_days.items():
        op.execute(sa.text(
            f"UPDATE records SET retention_until = {_plus_days(dialect, 'created_at', days)} "
            "WHERE retention_until IS NULL AND purpose = :purpose").bindparams(purpose=purpose))
    op.execute(f"UPDATE records SET retention_until = {_plus_days(dialect, 'created_at', DEFAULT_DAYS)} "
               "WHERE retention_until IS NULL")
    since = "COALESCE(last_verified_at, created_at)"
    op.execute(f"UPDATE records SET review_due = {_plus_days(dialect, since, settings.review_interval_days)} "
               "WHERE review_due IS NULL")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _fill_dates(dialect)
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.alter_column('retention_until', existing_type=app.core.db.UTCDateTime(timezone=True),
                              nullable=False)
        batch_op.alter_column('review_due', existing_type=app.core.db.UTCDateTime(timezone=True),
                              nullable=False)
    op.create_table('audit_event_records',
    sa.Column('record_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('record_id', 'event_id')
    )
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        # append-only, as the trail it indexes (kmm_audit_append_only is made by 0002)
        op.execute("CREATE TRIGGER audit_event_records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
                   "ON audit_event_records FOR EACH STATEMENT EXECUTE FUNCTION kmm_audit_append_only()")
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP TRIGGER audit_events_list_records" + (" ON audit_events" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION kmm_audit_event_records()")
        op.execute("DROP TRIGGER audit_event_records_append_only ON audit_event_records")
    op.drop_table('audit_event_records')
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.alter_column('review_due', existing_type=app.core.db.UTCDateTime(timezone=True),
                              nullable=True)
        batch_op.alter_column('retention_until', existing_type=app.core.db.UTCDateTime(timezone=True),
                              nullable=True)
