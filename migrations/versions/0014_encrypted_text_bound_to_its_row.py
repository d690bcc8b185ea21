"""encrypted free text bound to its row

Every encrypted free-text value (``EncryptedText``) stored in the unbound format
``kmm1`` is re-encrypted as ``kmm2``, whose associated data names its table, column and
primary key, so a ciphertext copied onto another row or column no longer opens (§6.6).
The schema does not change. It needs the master keys, read as the service reads them;
the keys are read only when there is a value to convert. Downgrade converts back.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.encrypted import BOUND_PREFIX, PREFIX, decrypt_text, encrypt_text, row_aad, seal, unseal

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, its primary key columns, its encrypted columns), as of this revision.
ENCRYPTED = (
    ("records", ("id",), ("consent_refusal_reason", "legal_hold_reason", "destroy_reason")),
    ("record_shares", ("record_id", "user_id"), ("reason",)),
    ("emergency_grants", ("id",), ("reason",)),
    ("disclosures", ("id",), ("summary",)),
    ("breach_reports", ("id",), ("description", "evidence", "complainant_name", "notes")),
    ("webhook_subscriptions", ("id",), ("secret",)),
)


def _convert(*, bind_rows: bool) -> None:
    """Rewrite ``kmm1`` values as ``kmm2`` (or, going down, ``kmm2`` as ``kmm1``)."""
    conn = op.get_bind()
    source = PREFIX if bind_rows else BOUND_PREFIX
    keyring: Keyring | None = None
    for name, key, columns in ENCRYPTED:
        table = sa.table(name, *(sa.column(k, sa.Uuid()) for k in key), *(sa.column(c, sa.Text()) for c in columns))
        pk = [table.c[k] for k in key]
        for column in columns:
            value = table.c[column]
            rows = conn.execute(sa.select(*pk, value).where(value.like(f"{source}:%"))).all()
            if rows and keyring is None:
                settings: Settings = context.config.attributes.get("settings") or Settings()
                keyring = Keyring(settings.read_keyring())
            for row in rows:
                ids, stored = tuple(row[: len(pk)]), row[-1]
                assert keyring is not None
                aad = row_aad(name, column, ids)
                new = (seal(keyring, decrypt_text(keyring, stored), aad) if bind_rows
                       else encrypt_text(keyring, unseal(keyring, stored, aad)))
                conn.execute(table.update().where(*(c == v for c, v in zip(pk, ids, strict=True)),
                                                  value == stored).values({column: new}))


def upgrade() -> None:
    _convert(bind_rows=True)


def downgrade() -> None:
    _convert(bind_rows=False)
