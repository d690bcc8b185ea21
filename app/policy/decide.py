"""Decide one action, or build the SQL filter for lists, from the one rule table."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, false, func, not_, or_, true
from sqlmodel import col, select

from app.models.emergency_grants import EmergencyGrant
from app.models.records import Classification, Record, RecordNamedAccess, RecordShare
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.policy.rules import (
    DENIAL,
    EXCLUSIONS,
    FORMER,
    RECENT_RELATION,
    RULES,
    STAFF_RELATIONS,
    WHO,
    Action,
    Relation,
    Rule,
)


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the policy needs to know about one record, relative to one actor."""

    classification: Classification
    custodian_id: uuid.UUID
    custodian_line_manager_id: uuid.UUID | None
    employee_line_manager_id: uuid.UUID | None  # for a subject linked to an account
    shared_with_actor: bool
    actor_named: bool
    actor_grant_expires_at: datetime | None  # latest unrevoked grant covering it
    custodian_line_manager_since: datetime | None = None  # None: since the custodian's account was made
    employee_line_manager_since: datetime | None = None  # likewise for the employee's account
    subject_user_id: uuid.UUID | None = None  # the account the record's subject is linked to


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str
    clause: str
    reason: str
    emergency: bool = False
    recent_relation: bool = False  # allowed by a line-manager relation less than a day old
    # A denial by the table: the (rule, clause) of every rule that would allow the action, in
    # table order (empty when none would); None for the other denials (former, exclusions).
    allowed_by: tuple[tuple[str, str], ...] | None = None


def _is_user(actor: Actor) -> bool:
    return actor.kind == "user"


_Test = Callable[[Actor, RecordFacts, datetime], bool]

# What each relation means in Python; relation_sql below says the same in SQL.
_HOLDS: dict[Relation, _Test] = {
    Relation.any_active: lambda a, f, now: a.kind == "user" or a.has_scope("records:read"),
    Relation.custodian: lambda a, f, now: f.custodian_id == a.id,
    Relation.custodians_line_manager: lambda a, f, now: f.custodian_line_manager_id == a.id,
    Relation.shared_with: lambda a, f, now: f.shared_with_actor,
    Relation.named: lambda a, f, now: f.actor_named,
    Relation.director: lambda a, f, now: a.is_director,
    Relation.employees_line_manager: lambda a, f, now: f.employee_line_manager_id == a.id,
    Relation.grant_holder: lambda a, f, now: f.actor_grant_expires_at is not None and f.actor_grant_expires_at > now,
    Relation.subject_self: lambda a, f, now: _is_user(a) and f.subject_user_id == a.id,
}
for _relation in STAFF_RELATIONS:  # staff accounts only: never a trustee or a service client
    _HOLDS[_relation] = (lambda test: lambda a, f, now: a.is_staff and test(a, f, now))(_HOLDS[_relation])

# Since when a relation holds, for the relations that have a date.
_SINCE: dict[Relation, Callable[[RecordFacts], datetime | None]] = {
    Relation.custodians_line_manager: lambda f: f.custodian_line_manager_since,
    Relation.employees_line_manager: lambda f: f.employee_line_manager_since,
}


def holds(relation: Relation, actor: Actor, facts: RecordFacts, now: datetime) -> bool:
    return _HOLDS[relation](actor, facts, now)


def is_recent(since: datetime | None, now: datetime) -> bool:
    """A relation set less than RECENT_RELATION ago; None means set when the account was made."""
    return since is not None and since > now - RECENT_RELATION


@dataclass(frozen=True, slots=True)
class _Candidate:
    test: _Test
    decision: Decision
    since: Callable[[RecordFacts], datetime | None] | None  # for a relation that has a date
    recent: Decision  # the same decision, flagged as made through a recent relation


_Key = tuple[Action, Classification]


def _denial(action: Action, cls: Classification, allowing: list[Rule]) -> Decision:
    """No rule allowed: name who may (the relations of the rules that would allow it), and cite
    those rules, the one that governs the class first where it is one of them (rules.DENIAL)."""
    if not allowing:
        governing = next(r for r in RULES if r.id == DENIAL[cls])
        return Decision(False, governing.id, governing.clause, f"no one may {action.value} a {cls.value} record",
                        allowed_by=())
    relations = {relation for r in allowing for relation in r.relations}
    if Relation.any_active in relations:  # every active account may: the others need not be named
        relations = {Relation.any_active}
    who = [phrase for relation, phrase in WHO.items() if relation in relations]
    listed = ", ".join(who[:-1]) + " or " + who[-1] if len(who) > 1 else who[0]
    cited = next((r for r in allowing if r.id == DENIAL[cls]), allowing[0])
    return Decision(False, cited.id, cited.clause, f"only {listed} may {action.value} a {cls.value} record",
                    allowed_by=tuple((r.id, r.clause) for r in allowing))


def _compile() -> tuple[dict[_Key, tuple[_Candidate, ...]], dict[_Key, Decision],
                        dict[_Key, tuple[tuple[_Test, Decision], ...]]]:
    """Precompute, per action and class, the relations to try in table order, the default
    denial, and the exclusions that turn an allow into a denial."""
    candidates: dict[_Key, tuple[_Candidate, ...]] = {}
    denials: dict[_Key, Decision] = {}
    exclusions: dict[_Key, tuple[tuple[_Test, Decision], ...]] = {}
    for action in Action:
        for cls in Classification:
            found = []
            allowing = [rule for rule in RULES if action in rule.actions and cls in rule.classifications]
            for rule in allowing:
                for relation in sorted(rule.relations):
                    decision = Decision(True, rule.id, rule.clause, f"{relation} may {action}",
                                        emergency=rule.emergency)
                    found.append(_Candidate(_HOLDS[relation], decision, _SINCE.get(relation),
                                            dataclasses.replace(decision, recent_relation=True)))
            candidates[action, cls] = tuple(found)
            denials[action, cls] = _denial(action, cls, allowing)
            exclusions[action, cls] = tuple(
                (_HOLDS[e.relation], Decision(False, e.rule, e.clause, e.instead))
                for e in EXCLUSIONS if cls in e.classifications
            )
    return candidates, denials, exclusions


_CANDIDATES, _DENIALS, _EXCLUSIONS = _compile()
_FORMER = Decision(False, *FORMER, "a deactivated account can do nothing")


def decide(actor: Actor, action: Action, facts: RecordFacts, now: datetime) -> Decision:
    """Allow or deny one action; deny is the default. Always names a rule and clause."""
    if not actor.active:
        return _FORMER
    key = (action, facts.classification)
    for candidate in _CANDIDATES[key]:
        if candidate.test(actor, facts, now):
            for excluded, denial in _EXCLUSIONS[key]:
                if excluded(actor, facts, now):
                    return denial
            if candidate.since is not None and is_recent(candidate.since(facts), now):
                return candidate.recent
            return candidate.decision
    return _DENIALS[key]


def exclusion(actor: Actor, facts: RecordFacts, now: datetime) -> Decision | None:
    """The exclusion that keeps the actor from this record whatever else they are (one's own
    personnel file, §3.6), or None. What a role would otherwise override (a director's view of
    who read a record) yields to it too."""
    for excluded, denial in _EXCLUSIONS[Action.read, facts.classification]:
        if excluded(actor, facts, now):
            return denial
    return None


# -- SQL -----------------------------------------------------------------------


# An actor's id and the time may be given as values or as bind parameters (``:actor_id``,
# ``:now``), so that a statement built once per kind of actor serves every one of them.
_Id = uuid.UUID | BindParameter[Any]
_Now = datetime | BindParameter[Any]


def _live_grants(actor_id: _Id, now: _Now) -> ColumnElement[bool]:
    return and_(
        col(EmergencyGrant.grantee_id) == actor_id,
        col(EmergencyGrant.revoked_at).is_(None),
        col(EmergencyGrant.expires_at) > now,
    )


def relation_sql(
    relation: Relation, actor: Actor, now: _Now, *, actor_id: _Id | None = None
) -> ColumnElement[bool] | None:
    """The relation as a condition on ``records``; None where it cannot hold for this actor.

    Which relations can hold depends on the actor's kind, role and scopes; ``actor_id``
    (default ``actor.id``) is the id they are about.
    """
    me = actor.id if actor_id is None else actor_id
    if relation in STAFF_RELATIONS and not actor.is_staff:
        return None
    match relation:
        case Relation.any_active:
            return true() if actor.kind == "user" or actor.has_scope("records:read") else None
        case Relation.custodian:
            return col(Record.custodian_id) == me if actor.kind == "user" else None
        case Relation.custodians_line_manager:
            if actor.kind != "user":
                return None
            reports = select(User.id).where(col(User.line_manager_id) == me)
            return col(Record.custodian_id).in_(reports)
        case Relation.shared_with:
            if actor.kind != "user":
                return None
            shared = select(RecordShare.record_id).where(col(RecordShare.user_id) == me)
            return col(Record.id).in_(shared)
        case Relation.named:
            if actor.kind != "user":
                return None
            named = select(RecordNamedAccess.record_id).where(col(RecordNamedAccess.user_id) == me)
            return col(Record.id).in_(named)
        case Relation.director:
            return true() if actor.is_director else None
        case Relation.employees_line_manager:
            if actor.kind != "user":
                return None
            employees = (
                select(Subject.id)
                .join(User, col(User.id) == Subject.user_id)
                .where(col(User.line_manager_id) == me)
            )
            return col(Record.subject_id).in_(employees)
        case Relation.grant_holder:
            if actor.kind != "user":
                return None
            live = _live_grants(me, now)
            by_record = select(EmergencyGrant.record_id).where(live, col(EmergencyGrant.record_id).is_not(None))
            by_subject = select(EmergencyGrant.subject_id).where(live, col(EmergencyGrant.subject_id).is_not(None))
            return or_(col(Record.id).in_(by_record), col(Record.subject_id).in_(by_subject))
        case Relation.subject_self:
            if actor.kind != "user":
                return None
            own = select(Subject.id).where(col(Subject.user_id) == me)
            return col(Record.subject_id).in_(own)
    return None  # pragma: no cover - every relation is handled above


def records_filter(
    actor: Actor, now: _Now, action: Action = Action.read, *, actor_id: _Id | None = None
) -> ColumnElement[bool]:
    """A condition selecting exactly the records ``decide`` would allow ``action`` on."""
    if not actor.active:
        return false()
    clauses: list[ColumnElement[bool]] = []
    for rule in RULES:
        if action not in rule.actions:
            continue
        relations = [c for r in rule.relations
                     if (c := relation_sql(r, actor, now, actor_id=actor_id)) is not None]
        if not relations:
            continue
        classes = sorted(rule.classifications)
        clauses.append(and_(col(Record.classification).in_(classes), or_(*relations)))
    if not clauses:
        return false()
    excluded = exclusions_sql(actor, now, actor_id=actor_id)
    allowed = or_(*clauses)
    return and_(allowed, not_(excluded)) if excluded is not None else allowed


def exclusions_sql(actor: Actor, now: _Now, *, actor_id: _Id | None = None) -> ColumnElement[bool] | None:
    """The records an exclusion keeps the actor from whatever else they are (one's own
    personnel file, §3.6), as a condition on ``records``; None where none can hold for this
    actor (a service client). What ``exclusion`` says of one record, for every record: the
    paths that list record ids or the trail about them leave these out."""
    excluded = [and_(col(Record.classification).in_(sorted(e.classifications)), cond)
                for e in EXCLUSIONS
                if (cond := relation_sql(e.relation, actor, now, actor_id=actor_id)) is not None]
    return or_(*excluded) if excluded else None


def facts_columns(actor_id: uuid.UUID | BindParameter[Any]) -> dict[str, Any]:
    """Correlated expressions that, selected with a record, give its facts relative to ``actor_id``.

    ``actor_id`` may be a bind parameter, so a statement built once serves every actor.
    """
    shared = (
        select(RecordShare.record_id)
        .where(col(RecordShare.record_id) == Record.id, col(RecordShare.user_id) == actor_id)
        .exists()
    )
    named = (
        select(RecordNamedAccess.record_id)
        .where(col(RecordNamedAccess.record_id) == Record.id, col(RecordNamedAccess.user_id) == actor_id)
        .exists()
    )
    grant = (
        select(func.max(EmergencyGrant.expires_at))
        .where(
            col(EmergencyGrant.grantee_id) == actor_id,
            col(EmergencyGrant.revoked_at).is_(None),
            or_(col(EmergencyGrant.record_id) == Record.id, col(EmergencyGrant.subject_id) == Record.subject_id),
        )
        .scalar_subquery()
    )
    return {"shared": shared.label("shared"), "named": named.label("named"), "grant": grant.label("grant")}
