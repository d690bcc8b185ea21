"""The link of a seal to the one before (DESIGN §6): what a seal's hash is.

    hash = HMAC-SHA-256(key, prev_hash || canonical(event) [|| |gap_from|sealed_at])

under the key of ``KMM_AUDIT_KEYS`` the seal's ``key_id`` names (app/core/audit_keys.py;
the key is never in the database). A seal made before the chain was keyed has an empty
``key_id`` and the plain SHA-256 of ``prev_hash || canonical(event)``. Sealing computes
the link in Python (``link_mac``), from the canonical text the database builds; verifying
recomputes it in the database, for every seal in one statement (``expected_hash``).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import BigInteger, ColumnElement, LargeBinary, String, Table, Text, bindparam, case, func, literal, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.core.audit_keys import AuditKeys
from app.core.db import sha256_hex
from app.models.audit import AuditSeal
from app.workflows.audit.canonical import canonical_event, concat, epoch_us_pg, sql_text

SEALS = cast(Table, AuditSeal.__table__)  # type: ignore[attr-defined]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def link_hash(prev_hash: str, canonical: str) -> str:
    """The unkeyed link of a seal made before the chain was keyed (an empty key_id)."""
    return sha256_hex(prev_hash + canonical)


def seal_suffix(*, sealed_at: datetime, gap_from: int | None) -> str:
    """What the MAC covers of the seal itself: for a seal that records missing ids,
    ``|gap_from|sealed_at in µs`` (verify trusts the record only when it was made in time,
    so its time must be authentic); nothing otherwise. The seal's place is covered by the
    links: each MAC covers prev_hash, the MAC of the seal before."""
    if gap_from is None:
        return ""
    return f"|{gap_from}|{(sealed_at - _EPOCH) // timedelta(microseconds=1)}"


def link_mac(key: bytes, prev_hash: str, canonical: str, *, sealed_at: datetime, gap_from: int | None) -> str:
    """HMAC-SHA-256 (hex) of ``prev_hash || canonical(event) || seal_suffix``."""
    message = prev_hash + canonical + seal_suffix(sealed_at=sealed_at, gap_from=gap_from)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


# -- the same links, recomputed by the database ---------------------------------------------

class _Sha256Hex(FunctionElement[str]):
    """Hex SHA-256 of a text's UTF-8 bytes, computed by the database."""

    type = String()
    inherit_cache = True
    name = "sha256_hex"


@compiles(_Sha256Hex, "postgresql")
def _sha256_pg(element: _Sha256Hex, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({arg}, 'UTF8')), 'hex')"


@compiles(_Sha256Hex, "sqlite")
def _sha256_sqlite(element: _Sha256Hex, compiler: SQLCompiler, **kw: Any) -> str:
    # Registered on every SQLite connection by app.core.db.
    return f"kmm_sha256_hex({compiler.process(element.clauses, **kw)})"


def _seal_mac_pg(keys: AuditKeys, message: ColumnElement[str]) -> list[tuple[str, ColumnElement[str]]]:
    """Per key id, the MAC as PostgreSQL computes it without pgcrypto: HMAC from sha256().

    H((K xor opad) || H((K xor ipad) || m)), the padded keys read once per statement from
    settings local to the verify transaction (set by set_pads_pg), so they are neither
    stored nor parameters of the long statement (a slow-statement log shows those).
    """
    message_bytes = func.convert_to(message, sql_text("'UTF8'"))
    out = []
    for i, key_id in enumerate(keys.ids()):
        ipad = sql_text(f"(SELECT pg_catalog.decode(pg_catalog.current_setting('kmm.audit_ipad_{i}'), 'hex'))")
        opad = sql_text(f"(SELECT pg_catalog.decode(pg_catalog.current_setting('kmm.audit_opad_{i}'), 'hex'))")
        inner = func.sha256(ipad.op("||", return_type=LargeBinary)(message_bytes))
        mac = func.encode(func.sha256(opad.op("||", return_type=LargeBinary)(inner)), sql_text("'hex'"))
        out.append((key_id, cast(ColumnElement[str], mac)))
    return out


async def set_pads_pg(conn: AsyncConnection, keys: AuditKeys) -> None:
    """Put each key's HMAC pads in transaction-local settings (gone at commit or rollback)."""
    params: dict[str, str] = {}
    calls = []
    for i, key_id in enumerate(keys.ids()):
        ipad, opad = keys.pads(key_id)
        params[f"i{i}"], params[f"o{i}"] = ipad.hex(), opad.hex()
        calls += [f"pg_catalog.set_config('kmm.audit_ipad_{i}', :i{i}, true)",
                  f"pg_catalog.set_config('kmm.audit_opad_{i}', :o{i}, true)"]
    await conn.execute(text("SELECT " + ", ".join(calls)), params)


def expected_hash(dialect: str, keys: AuditKeys) -> ColumnElement[str]:
    """What a seal's hash must be: the MAC under the key its key_id names; NULL for an
    unknown key; for a seal made before the chain was keyed, the plain SHA-256 link.

    On PostgreSQL the keys are read from the settings set_pads_pg puts in the transaction."""
    s = SEALS.c
    canonical = canonical_event(dialect)
    if dialect == "postgresql":
        suffix = concat(sql_text("'|'"), sql_cast(s.gap_from, Text), sql_text("'|'"),
                        sql_cast(epoch_us_pg(s.sealed_at), Text))
        # CASE, not coalesce(): a strict || still evaluates its arguments on NULL.
        message = concat(s.prev_hash, canonical, case((s.gap_from.is_(None), sql_text("''")), else_=suffix))
        macs = _seal_mac_pg(keys, message)
    else:
        # "YYYY-MM-DD HH:MM:SS.ffffff": whole seconds by strftime (exact on a whole second),
        # then the six digits.
        sealed_us = (sql_cast(func.strftime(sql_text("'%s'"), func.substr(s.sealed_at, 1, 19)), BigInteger)
                     * 1_000_000 + sql_cast(func.substr(s.sealed_at, 21, 6), BigInteger))
        suffix = sql_text("'|'") + sql_cast(s.gap_from, String) + sql_text("'|'") + sql_cast(sealed_us, String)
        message = s.prev_hash + canonical + case((s.gap_from.is_(None), sql_text("''")), else_=suffix)
        macs = [(key_id, cast(ColumnElement[str], func.kmm_hmac_sha256_hex(
            bindparam(f"audit_key_{i}", keys.get(key_id), type_=LargeBinary), message)))
            for i, key_id in enumerate(keys.ids())]
    whens = [(s.key_id == literal(key_id, String), mac) for key_id, mac in macs]
    whens.append((s.key_id == sql_text("''"), _Sha256Hex(s.prev_hash + canonical)))
    return case(*whens)
