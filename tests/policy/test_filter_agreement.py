"""The point decision and the SQL list filter agree, for every actor and record.

Hypothesis builds small organisations (accounts of every role with line managers set at
creation or recently, some deactivated; employee subjects linked to accounts of any role;
records of every class kept by accounts of any role, as after a colleague becomes a
trustee; shares, named lists and grants that are live, expired or revoked, on a record or
a whole subject, including over one's own file), inserts them straight through the
session, and checks that ``decide(actor, read, facts, now).allowed`` is exactly membership
of ``select(Record.id).where(records_filter(actor, now))``.
Runs on SQLite and on Postgres (the suite runs on both).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam
from sqlmodel import col, select

from app.models.emergency_grants import EmergencyGrant
from app.models.records import Classification, Record, RecordNamedAccess, RecordShare
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.policy.decide import Decision, RecordFacts, decide, records_filter
from app.policy.rules import Action
from app.workflows.records.queries import list_shape as _shape
from app.workflows.records.queries import load_record
from tests.conftest import reset_database

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
# When a line manager was set: at creation (None), long ago, or within the last day.
SINCE = {"creation": None, "old": timedelta(days=-3), "recent": timedelta(hours=-2), "edge": timedelta(days=-1)}
GRANT_STATES = {"live": (timedelta(hours=1), False), "expired": (timedelta(hours=-1), False),
                "at_now": (timedelta(0), False), "revoked": (timedelta(hours=1), True)}


@st.composite
def organisations(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(min_value=2, max_value=6))
    users = []
    for i in range(n):
        users.append({
            "role": draw(st.sampled_from(["colleague", "colleague", "director", "trustee"])),
            "manager": draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None,
            "since": draw(st.sampled_from(sorted(SINCE))),
            "active": True,
        })
    for i in draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True)):
        users[i]["active"] = False
    # Any account may keep records, manage others or have a personnel file: a role can change
    # after the fact (a colleague who keeps records becomes a trustee), and the policy must hold.
    employees = draw(st.lists(st.integers(0, n - 1), max_size=3, unique=True))
    n_subjects = 1 + len(employees)  # subject 0 is a service user; the rest are employees
    records = draw(st.lists(st.fixed_dictionaries({
        "classification": st.sampled_from(list(Classification)),
        "custodian": st.integers(0, n - 1),
        "subject": st.integers(0, n_subjects - 1),
    }), min_size=1, max_size=8))
    r, u = len(records), n
    shares = draw(st.lists(st.tuples(st.integers(0, r - 1), st.integers(0, u - 1)), max_size=6, unique=True))
    named = draw(st.lists(st.tuples(st.integers(0, r - 1), st.integers(0, u - 1)), max_size=6, unique=True))
    grants = draw(st.lists(st.fixed_dictionaries({
        "grantee": st.integers(0, u - 1),
        "target": st.one_of(st.tuples(st.just("record"), st.integers(0, r - 1)),
                            st.tuples(st.just("subject"), st.integers(0, n_subjects - 1))),
        "state": st.sampled_from(sorted(GRANT_STATES)),
    }), max_size=5))
    return {"users": users, "employees": employees, "records": records, "shares": shares, "named": named,
            "grants": grants}


def _since(name: str) -> datetime | None:
    delta = SINCE[name]
    return NOW + delta if delta is not None else None


async def _insert(state: Any, org: dict[str, Any]) -> tuple[list[User], list[uuid.UUID]]:
    async with state.sessionmaker() as session:
        users = []
        for i, u in enumerate(org["users"]):
            user = User(email=f"u{i}@prop.kmm", full_name=f"User {i}", role=u["role"],
                        staff_type="employee" if u["role"] != "trustee" else None,
                        line_manager_id=users[u["manager"]].id if u["manager"] is not None else None,
                        line_manager_since=_since(u.get("since", "creation")),
                        active=u["active"], password_hash="x", created_at=NOW)
            users.append(user)
            session.add(user)
            await session.flush()
        subjects = [Subject(kind="individual", name="Service user", category="service_user", created_at=NOW)]
        subjects += [Subject(kind="individual", name=f"Employee {i}", category="employee", user_id=users[i].id,
                             created_at=NOW) for i in org["employees"]]
        session.add_all(subjects)
        await session.flush()
        records = [Record(subject_id=subjects[r["subject"]].id, classification=r["classification"].value,
                          purpose="service_delivery", custodian_id=users[r["custodian"]].id,
                          created_at=NOW, updated_at=NOW, retention_until=NOW + timedelta(days=365),
                          review_due=NOW + timedelta(days=365)) for r in org["records"]]
        session.add_all(records)
        await session.flush()
        for ri, ui in org["shares"]:
            session.add(RecordShare(record_id=records[ri].id, user_id=users[ui].id, reason="r",
                                    shared_by=users[0].id, shared_at=NOW))
        for ri, ui in org["named"]:
            session.add(RecordNamedAccess(record_id=records[ri].id, user_id=users[ui].id, consent_reference="c",
                                          added_by=users[0].id, added_at=NOW))
        for g in org["grants"]:
            delta, revoked = GRANT_STATES[g["state"]]
            kind, idx = g["target"]
            session.add(EmergencyGrant(
                grantee_id=users[g["grantee"]].id, reason="r", expires_at=NOW + delta,
                record_id=records[idx].id if kind == "record" else None,
                subject_id=subjects[idx].id if kind == "subject" else None,
                issued_by=users[0].id, issued_at=NOW - timedelta(hours=2),
                revoked_at=NOW - timedelta(minutes=1) if revoked else None))
        await session.commit()
        return users, [r.id for r in records]


def _actor(user: User) -> Actor:
    return Actor(id=user.id, kind="user", role=user.role, active=user.active, line_manager_id=user.line_manager_id)


def _user(role: str, manager: int | None = None, since: str = "creation") -> dict[str, Any]:
    return {"role": role, "manager": manager, "since": since, "active": True}


def _record(classification: Classification, custodian: int, subject: int = 0) -> dict[str, Any]:
    return {"classification": classification, "custodian": custodian, "subject": subject}


C = Classification
# Always tried: directors and an employee over their own personnel files (by rank, by line
# management and by grant), a trustee who keeps records, manages a colleague and is named,
# and line-manager relations set recently and long ago.
SIDE_DOORS: dict[str, Any] = {
    "users": [_user("director"), _user("director"), _user("colleague", 0, "recent"), _user("trustee", 0),
              _user("colleague", 3, "old"), _user("colleague", 2, "recent")],
    "employees": [0, 2, 5],  # subjects 1, 2, 3
    "records": [_record(C.personnel, 2, 1), _record(C.personnel, 1, 2), _record(C.confidential, 3),
                _record(C.sensitive, 4), _record(C.confidential, 2), _record(C.personnel, 1, 3),
                _record(C.sensitive, 5)],
    "shares": [(4, 3)], "named": [(3, 3), (6, 3)],
    "grants": [{"grantee": 2, "target": ("subject", 2), "state": "live"},
               {"grantee": 0, "target": ("record", 0), "state": "live"},
               {"grantee": 3, "target": ("record", 5), "state": "live"}],
}


@pytest.mark.slow  # a property test: thirty organisations, each built and asked every question
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(org=organisations())
@example(org=SIDE_DOORS)
async def test_decide_and_sql_filter_agree(app: Any, state: Any, org: dict[str, Any]) -> None:
    await reset_database(app)
    users, record_ids = await _insert(state, org)
    actors = [_actor(u) for u in users] + [
        Actor(id=uuid.uuid4(), kind="client", role=None, scopes=frozenset(s)) for s in ((), ("records:read",))]
    async with state.sessionmaker() as session:
        for actor in actors:
            listed = set((await session.execute(
                select(Record.id).where(records_filter(actor, NOW)))).scalars())
            # The form GET /records runs: built once per kind of actor, id and time bound later.
            bound = set((await session.execute(
                select(Record.id).where(records_filter(_shape(actor), bindparam("now"),
                                                       actor_id=bindparam("actor_id"))),
                {"now": NOW, "actor_id": actor.id})).scalars())
            assert bound == listed, actor
            for rid in record_ids:
                loaded = await load_record(session, rid, actor=actor)
                decision = decide(actor, Action.read, loaded.facts, NOW)
                assert decision.allowed == (rid in listed), (actor, loaded.facts)
                _check_flags(actor, loaded.facts, decision)


def _check_flags(actor: Actor, facts: RecordFacts, decision: Decision) -> None:
    """What the rules promise whatever the organisation: trustees keep only what was passed
    to them (§3.1), nobody reads their own personnel file (§3.6), and a read through a
    line-manager relation set within the last day is flagged (§3.2, §4.5)."""
    if not decision.allowed:
        return
    if actor.role == "trustee":
        assert decision.rule in ("general", "shared", "emergency"), (actor, facts, decision)
    if facts.classification == Classification.personnel:
        assert facts.subject_user_id != actor.id, (actor, facts, decision)
    since = {"line-manager": facts.custodian_line_manager_since,
             "personnel": facts.employee_line_manager_since if not actor.is_director else None}.get(decision.rule)
    assert decision.recent_relation == (since is not None and since > NOW - timedelta(days=1)), (facts, decision)


async def test_agreement_sees_a_difference(app: Any, state: Any) -> None:
    """The comparison can fail: a filter for the wrong actor disagrees with decide."""
    await reset_database(app)
    org = {"users": [{"role": "colleague", "manager": None, "active": True},
                     {"role": "colleague", "manager": None, "active": True}],
           "employees": [], "shares": [], "named": [], "grants": [],
           "records": [{"classification": Classification.confidential, "custodian": 0, "subject": 0}]}
    users, (rid,) = await _insert(state, org)
    owner, stranger = _actor(users[0]), _actor(users[1])
    async with state.sessionmaker() as session:
        listed = set((await session.execute(
            select(Record.id).where(col(Record.id) == rid, records_filter(stranger, NOW)))).scalars())
        loaded = await load_record(session, rid, actor=owner)
    assert decide(owner, Action.read, loaded.facts, NOW).allowed and rid not in listed
