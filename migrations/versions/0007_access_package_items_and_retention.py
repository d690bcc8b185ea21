"""access-request package items and package retention

Each record in a stored package becomes a row of its own (``access_package_items``), so
shredding a record removes it from every package (§4.6); packages get ``retention_until``
(§6.5). Packages already stored are split here with the current master key: their records
move into items (a record destroyed since keeps no content), and their retention date is
``generated_at`` plus ``package_retention_days``. Downgrade puts the live items back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:00:00.000000
"""
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types)
from alembic import context, op

import app.core.db  # noqa: F401  (UTCDateTime)
from app.core.config import Settings
from app.core.crypto import Keyring, decrypt, encrypt

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PACKAGES = sa.table(
    "access_request_packages",
    sa.column("request_id", sa.Uuid()), sa.column("key_id", sa.String()), sa.column("wrapped_key", sa.LargeBinary()),
    sa.column("package_ct", sa.LargeBinary()), sa.column("generated_at", app.core.db.UTCDateTime(timezone=True)),
    sa.column("retention_until", app.core.db.UTCDateTime(timezone=True)),
)
ITEMS = sa.table(
    "access_package_items",
    sa.column("request_id", sa.Uuid()), sa.column("record_id", sa.Uuid()), sa.column("position", sa.Integer()),
    sa.column("item_ct", sa.LargeBinary()),
)
RECORDS = sa.table("records", sa.column("id", sa.Uuid()),
                   sa.column("destroyed_at", app.core.db.UTCDateTime(timezone=True)))


def _aad(request_id: uuid.UUID, part: str) -> bytes:  # as app.workflows.access_requests.package
    return b"access-package:" + request_id.bytes + b":" + part.encode()


def _settings() -> Settings:
    return context.config.attributes.get("settings") or Settings()


def _packages() -> tuple[Keyring | None, list[Any]]:
    rows = op.get_bind().execute(sa.select(PACKAGES).order_by(PACKAGES.c.request_id)).all()
    return (Keyring(_settings().read_keyring()) if rows else None), rows


def _split() -> None:
    """Move the records of packages stored whole into items."""
    bind = op.get_bind()
    keyring, rows = _packages()
    for row in rows:
        assert keyring is not None
        rid = row.request_id
        key = keyring.unwrap(row.key_id, bytes(row.wrapped_key), aad=_aad(rid, "key"))
        package = json.loads(decrypt(key, bytes(row.package_ct), _aad(rid, "package")))
        records = package.get("records") or []
        package["records"] = []
        package["retention_until"] = row.retention_until.isoformat()
        for position, rec in enumerate(records):
            record_id = uuid.UUID(rec["id"])
            destroyed = bind.execute(sa.select(RECORDS.c.destroyed_at).where(RECORDS.c.id == record_id)).scalar()
            item_ct = None if destroyed is not None else encrypt(
                key, json.dumps(rec).encode(), _aad(rid, "item:" + record_id.hex))
            bind.execute(ITEMS.insert().values(request_id=rid, record_id=record_id, position=position,
                                               item_ct=item_ct))
        bind.execute(PACKAGES.update().where(PACKAGES.c.request_id == rid).values(
            package_ct=encrypt(key, json.dumps(package).encode(), _aad(rid, "package"))))


def _join() -> None:
    """Put each package's live items back inside it."""
    bind = op.get_bind()
    keyring, rows = _packages()
    for row in rows:
        assert keyring is not None
        rid = row.request_id
        key = keyring.unwrap(row.key_id, bytes(row.wrapped_key), aad=_aad(rid, "key"))
        package = json.loads(decrypt(key, bytes(row.package_ct), _aad(rid, "package")))
        items = bind.execute(sa.select(ITEMS.c.record_id, ITEMS.c.item_ct)
                             .where(ITEMS.c.request_id == rid, ITEMS.c.item_ct.is_not(None))
                             .order_by(ITEMS.c.position)).all()
        package["records"] = [json.loads(decrypt(key, bytes(ct), _aad(rid, "item:" + record_id.hex)))
                              for record_id, ct in items]
        package.pop("retention_until", None)
        package.pop("destroyed", None)
        bind.execute(PACKAGES.update().where(PACKAGES.c.request_id == rid).values(
            package_ct=encrypt(key, json.dumps(package).encode(), _aad(rid, "package"))))


def _set_retention() -> None:
    bind = op.get_bind()
    days = timedelta(days=_settings().package_retention_days)
    for rid, generated_at in bind.execute(sa.select(PACKAGES.c.request_id, PACKAGES.c.generated_at)).all():
        bind.execute(PACKAGES.update().where(PACKAGES.c.request_id == rid).values(retention_until=generated_at + days))


def upgrade() -> None:
    with op.batch_alter_table('access_request_packages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_until', app.core.db.UTCDateTime(timezone=True), nullable=True))
    _set_retention()
    with op.batch_alter_table('access_request_packages', schema=None) as batch_op:
        batch_op.alter_column('retention_until', existing_type=app.core.db.UTCDateTime(timezone=True),
                              nullable=False)
        batch_op.create_index('ix_access_request_packages_retention', ['retention_until'], unique=False)

    op.create_table('access_package_items',
    sa.Column('request_id', sa.Uuid(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('item_ct', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['access_request_packages.request_id'], ),
    sa.PrimaryKeyConstraint('request_id', 'record_id')
    )
    with op.batch_alter_table('access_package_items', schema=None) as batch_op:
        batch_op.create_index('ix_access_package_items_record', ['record_id'], unique=False)
    _split()


def downgrade() -> None:
    _join()
    with op.batch_alter_table('access_package_items', schema=None) as batch_op:
        batch_op.drop_index('ix_access_package_items_record')
    op.drop_table('access_package_items')

    with op.batch_alter_table('access_request_packages', schema=None) as batch_op:
        batch_op.drop_index('ix_access_request_packages_retention')
        batch_op.drop_column('retention_until')
