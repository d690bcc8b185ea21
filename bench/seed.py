"""Seed a realistic organisation straight into a benchmark schema, with COPY.

Everything goes in with psycopg's COPY (one connection, one transaction per table batch),
so 200,000 records take well under a minute. The rows are what the service itself
writes: record content is sealed with the app's envelope encryption (one fresh data key
per record, wrapped by the settings' master key, the app's AAD), so the read path opens
it exactly as in production. Every account shares one password hash made once at the
production argon2 cost (hashing per account would take minutes); the password is random
per run and never written anywhere but memory.

The organisation: directors at the top, managers reporting to a director, colleagues
reporting to a manager (employees, volunteers, interns), a few trustees; subjects, with
one employee subject per employed staff member (linked to the account); records of every
classification with shares (confidential), named lists (sensitive), personnel records kept
by the employee's line manager or a director, and emergency grants (live, expired, revoked).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from app.core.crypto import Keyring, encrypt
from app.core.encrypted import row_aad, seal
from app.workflows.records.content import aad as _aad

# The share of records in each classification (roughly how a small charity's files fall).
CLASS_MIX: tuple[tuple[str, float], ...] = (
    ("general", 0.40),
    ("confidential", 0.35),
    ("sensitive", 0.15),
    ("personnel", 0.10),
)
PURPOSES = ("service_delivery", "equal_opportunities_monitoring", "funder_reporting")
CONSENT = ("obtained", "pending", "not_required", "refused")
SUBJECT_CATEGORIES = (("service_user", 0.70), ("member", 0.15), ("volunteer", 0.06), ("intern", 0.03),
                      ("trustee", 0.01), ("organisation", 0.05))
PARAGRAPHS = (
    "Met at the drop-in centre. Discussed the housing application and the letter from the council; "
    "agreed to chase the caseworker and to meet again next week.",
    "Telephone call about the benefits reassessment. Explained the appeal route and the deadlines; "
    "a referral to the welfare-rights adviser was offered and accepted.",
    "Home visit. The tenancy issues raised last month are unresolved; the landlord has not replied. "
    "Noted the repairs outstanding and the dates given.",
    "Support plan reviewed with the service user. Goals for the next quarter agreed; the next review is "
    "due in three months. Contact details confirmed.",
)
COPY_BATCH = 20_000


@dataclass(frozen=True, slots=True)
class Staff:
    id: uuid.UUID
    email: str
    role: str  # director, colleague or trustee
    line_manager_id: uuid.UUID | None
    is_manager: bool = False


@dataclass
class Org:
    """What was seeded, as much as the scenarios need to pick callers and ids."""

    password: str
    staff: list[Staff]
    subject_ids: list[uuid.UUID]
    employee_subjects: list[tuple[uuid.UUID, uuid.UUID]]  # (subject id, its account id)
    reports: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)  # manager -> direct reports
    records: int = 0

    def by_role(self, role: str) -> list[Staff]:
        return [s for s in self.staff if s.role == role]

    @property
    def directors(self) -> list[Staff]:
        return self.by_role("director")

    @property
    def holders(self) -> list[Staff]:
        """Staff who keep records: directors and colleagues (not trustees)."""
        return [s for s in self.staff if s.role in ("director", "colleague")]

    @property
    def plain_colleagues(self) -> list[Staff]:
        return [s for s in self.staff if s.role == "colleague" and not s.is_manager]


# information_schema's type names, as psycopg names their binary dumpers.
_PG_TYPES = {"uuid": "uuid", "character varying": "text", "text": "text", "bytea": "bytea", "boolean": "bool",
             "integer": "int4", "bigint": "int8", "json": "json", "timestamp with time zone": "timestamptz"}


def _column_types(conn: psycopg.Connection[Any], table: str, columns: Sequence[str]) -> list[str]:
    rows = conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = %s", (table,)).fetchall()
    types = dict(rows)
    return [_PG_TYPES[types[c]] for c in columns]


def _copy(conn: psycopg.Connection[Any], table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY in binary (no text parsing of ciphertext on the server); returns the row count."""
    n = 0
    types = _column_types(conn, table, columns)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def seed_org(
    conn: psycopg.Connection[Any], *, staff: int, subjects: int, password: str, password_hash: str,
    rng: random.Random, now: datetime, domain: str = "bench.kmm.org.uk",
) -> Org:
    """Accounts in a line-management tree, and subjects (one per employed staff member, linked)."""
    n_directors = max(1, staff // 60)
    n_trustees = max(1, staff // 50)
    n_managers = max(1, staff // 12)
    n_colleagues = max(1, staff - n_directors - n_trustees - n_managers)
    people: list[Staff] = []
    staff_types: dict[uuid.UUID, str | None] = {}
    directors = [Staff(uuid.uuid4(), f"director{i}@{domain}", "director", None, True) for i in range(n_directors)]
    managers = [Staff(uuid.uuid4(), f"manager{i}@{domain}", "colleague", rng.choice(directors).id, True)
                for i in range(n_managers)]
    colleagues = [Staff(uuid.uuid4(), f"colleague{i}@{domain}", "colleague", managers[i % n_managers].id)
                  for i in range(n_colleagues)]
    trustees = [Staff(uuid.uuid4(), f"trustee{i}@{domain}", "trustee", None) for i in range(n_trustees)]
    people = directors + managers + colleagues + trustees
    for s in directors + managers:
        staff_types[s.id] = "employee"
    for s in colleagues:
        staff_types[s.id] = rng.choices(("employee", "volunteer", "intern"), (0.7, 0.2, 0.1))[0]
    for s in trustees:
        staff_types[s.id] = None
    reports: dict[uuid.UUID, list[uuid.UUID]] = {}
    for s in people:
        if s.line_manager_id is not None:
            reports.setdefault(s.line_manager_id, []).append(s.id)

    _copy(conn, "users",
          ("id", "email", "full_name", "role", "staff_type", "line_manager_id", "active", "password_hash",
           "created_at"),
          ((s.id, s.email, f"Bench {s.email.split('@')[0].title()}", s.role, staff_types[s.id], s.line_manager_id,
            True, password_hash, now - timedelta(days=rng.randint(30, 3000))) for s in people))

    employees = [s for s in people if staff_types[s.id] == "employee"]
    employee_subjects = [(uuid.uuid4(), s.id) for s in employees]
    cats, weights = zip(*SUBJECT_CATEGORIES, strict=True)
    others = max(0, subjects - len(employee_subjects))
    subject_rows: list[tuple[Any, ...]] = [
        (sid, "individual", f"Employee {uid.hex[:8]}", "employee", "[]", uid, now) for sid, uid in employee_subjects
    ]
    for i in range(others):
        cat = rng.choices(cats, weights)[0]
        kind = "organisation" if cat == "organisation" else "individual"
        officers = '[{"name": "A Chair", "office": "chair"}]' if kind == "organisation" else "[]"
        subject_rows.append((uuid.uuid4(), kind, f"Subject {i}", cat, officers, None, now))
    _copy(conn, "subjects", ("id", "kind", "name", "category", "officers", "user_id", "created_at"), subject_rows)
    conn.commit()
    return Org(password=password, staff=people, subject_ids=[r[0] for r in subject_rows],
               employee_subjects=employee_subjects, reports=reports)


RECORD_COLUMNS = (
    "id", "subject_id", "classification", "purpose", "custodian_id", "access_requester_id", "consent_status",
    "consent_purpose_explained", "consent_refusal_reason", "retention_until", "review_due", "legal_hold", "version",
    "created_by", "created_at", "updated_at",
)
CONTENT_COLUMNS = ("record_id", "key_id", "wrapped_key", "title_ct", "content_ct")


def seed_records(
    conn: psycopg.Connection[Any], org: Org, *, count: int, keyring: Keyring, rng: random.Random, now: datetime,
) -> dict[str, int]:
    """Add ``count`` records (content sealed as the app does), their shares, named lists and grants."""
    classes, class_weights = zip(*CLASS_MIX, strict=True)
    holders = org.holders
    directors = org.directors
    readers = [s for s in org.staff if s.role in ("colleague", "director", "trustee")]
    managers_of = {s.id: s.line_manager_id for s in org.staff}
    counts = {"records": 0, "shares": 0, "named": 0, "grants": 0}
    done = 0
    while done < count:
        n = min(COPY_BATCH, count - done)
        records: list[tuple[Any, ...]] = []
        contents: list[tuple[Any, ...]] = []
        shares: list[tuple[Any, ...]] = []
        named: list[tuple[Any, ...]] = []
        grants: list[tuple[Any, ...]] = []
        for i in range(n):
            rid = uuid.uuid4()
            cls = rng.choices(classes, class_weights)[0]
            requester = None
            if cls == "personnel":
                subject_id, employee_id = rng.choice(org.employee_subjects)
                manager = managers_of.get(employee_id)
                custodian = manager if manager is not None and rng.random() < 0.8 else rng.choice(directors).id
                purpose = "personnel_administration"
            else:
                subject_id = rng.choice(org.subject_ids)
                custodian = rng.choice(holders).id
                purpose = rng.choice(PURPOSES)
            if cls == "sensitive":
                requester = subject_id
                for uid in {rng.choice(holders).id for _ in range(rng.randint(1, 3))} - {custodian}:
                    named.append((rid, uid, f"consent letter {rid.hex[:6]}", custodian, now))
            elif cls == "confidential" and rng.random() < 0.10:
                uid = rng.choice(readers).id
                if uid != custodian:
                    shares.append((rid, uid, "covering a colleague's visits", custodian, now))
            if rng.random() < 0.0005:
                issued = now - timedelta(hours=rng.randint(1, 72))
                expires = issued + timedelta(hours=24)  # some live, some expired
                target = (rid, None) if rng.random() < 0.7 else (None, subject_id)
                revoked = now if rng.random() < 0.2 else None
                grants.append((uuid.uuid4(), rng.choice(holders).id, *target, "out-of-hours crisis call", expires,
                               rng.choice(directors).id, issued, revoked))
            created = now - timedelta(days=rng.randint(0, 2000), seconds=rng.randint(0, 86_400))
            consent = rng.choice(CONSENT)
            # a refusal records why, bound to its row (§1.3, §6.6), as the service writes it
            reason = seal(keyring, "did not want the referral shared", row_aad("records", "consent_refusal_reason",
                                                                               [rid])) if consent == "refused" else None
            records.append((
                rid, subject_id, cls, purpose, custodian, requester, consent, rng.random() < 0.5, reason,
                now + timedelta(days=6 * 365), now + timedelta(days=365),
                False, 1, custodian, created, created,
            ))
            key, kid, wrapped = keyring.new_data_key(aad=_aad(rid, "key"))
            title = f"Case note {done + i}"
            body = f"{rng.choice(PARAGRAPHS)} {rng.choice(PARAGRAPHS)} (ref {rid.hex[:10]})"
            contents.append((rid, kid, wrapped, encrypt(key, title.encode(), _aad(rid, "title")),
                             encrypt(key, body.encode(), _aad(rid, "content"))))
        counts["records"] += _copy(conn, "records", RECORD_COLUMNS, records)
        _copy(conn, "record_contents", CONTENT_COLUMNS, contents)
        counts["shares"] += _copy(conn, "record_shares",
                                  ("record_id", "user_id", "reason", "shared_by", "shared_at"), shares)
        counts["named"] += _copy(conn, "record_named_access",
                                 ("record_id", "user_id", "consent_reference", "added_by", "added_at"), named)
        counts["grants"] += _copy(conn, "emergency_grants",
                                  ("id", "grantee_id", "record_id", "subject_id", "reason", "expires_at",
                                   "issued_by", "issued_at", "revoked_at"), grants)
        conn.commit()
        done += n
    org.records += counts["records"]
    analyze(conn)
    return counts


AUDIT_COLUMNS = ("at", "actor_id", "actor_kind", "actor_role", "action", "resource_type", "resource_id",
                 "decision", "rule", "clause", "emergency", "request_id", "client_ip", "detail")


def seed_audit_events(conn: psycopg.Connection[Any], org: Org, *, count: int, rng: random.Random,
                      now: datetime) -> int:
    """Synthetic record-read events, so verifying the chain has a realistic length."""
    actors = org.holders
    n = 0
    while n < count:
        batch = min(COPY_BATCH * 5, count - n)
        rows = []
        for i in range(batch):
            actor = rng.choice(actors)
            rows.append((now - timedelta(seconds=count - n - i), actor.id, "user", actor.role, "record.read", "record",
                         str(uuid.uuid4()), "allow", "director", "§3.1, §3.4", False, uuid.uuid4().hex, "127.0.0.1",
                         '{"classification": "confidential"}'))
        n += _copy(conn, "audit_events", AUDIT_COLUMNS, rows)
        conn.commit()
    analyze(conn, "audit_events")
    return n


def analyze(conn: psycopg.Connection[Any], *tables: str) -> None:
    """VACUUM ANALYZE after a bulk load: fresh planner statistics and visibility map now, so
    autovacuum does not wake up on the new rows in the middle of a measured scenario."""
    names = tables or ("users", "subjects", "records", "record_contents", "record_shares", "record_named_access",
                       "emergency_grants")
    conn.commit()
    conn.autocommit = True  # VACUUM cannot run inside a transaction
    try:
        for name in names:
            conn.execute(f"VACUUM (ANALYZE) {name}")
    finally:
        conn.autocommit = False


def readable_by_director(conn: psycopg.Connection[Any], limit: int, rng: random.Random) -> list[uuid.UUID]:
    """Ids any director may read by the director rule alone (general and confidential, §3.1, §3.4)."""
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM records WHERE classification IN ('general', 'confidential') "
                    "AND destroyed_at IS NULL")
        ids = [row[0] for row in cur.fetchall()]
    rng.shuffle(ids)
    return ids[:limit]
