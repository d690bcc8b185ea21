"""Decide one action, or build the SQL filter for lists, from the one rule table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, false, func, or_, true
from sqlmodel import col, select

from app.models.accounts import User
from app.models.records import (
    Classification,
    EmergencyGrant,
    Record,
    RecordNamedAccess,
    RecordShare,
    Subject,
)
from app.policy.actor import Actor
from app.policy.rules import DENIAL, FORMER, RULES, Action, Relation


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


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str
    clause: str
    reason: str
    emergency: bool = False


def _is_user(actor: Actor) -> bool:
    return actor.kind == "user"


# What each relation means in Python; relation_sql below says the same in SQL.
_HOLDS: dict[Relation, Callable[[Actor, RecordFacts, datetime], bool]] = {
    Relation.any_active: lambda a, f, now: a.kind == "user" or a.has_scope("records:read"),
    Relation.custodian: lambda a, f, now: _is_user(a) and f.custodian_id == a.id,
    Relation.custodians_line_manager: lambda a, f, now: _is_user(a) and f.custodian_line_manager_id == a.id,
    Relation.shared_with: lambda a, f, now: f.shared_with_actor,
    Relation.named: lambda a, f, now: f.actor_named,
    Relation.director: lambda a, f, now: a.is_director,
    Relation.employees_line_manager: lambda a, f, now: _is_user(a) and f.employee_line_manager_id == a.id,
    Relation.grant_holder: lambda a, f, now: f.actor_grant_expires_at is not None and f.actor_grant_expires_at > now,
}


def holds(relation: Relation, actor: Actor, facts: RecordFacts, now: datetime) -> bool:
    return _HOLDS[relation](actor, facts, now)


_Candidates = tuple[tuple[Callable[[Actor, RecordFacts, datetime], bool], Decision], ...]
_Key = tuple[Action, Classification]


def _compile() -> tuple[dict[_Key, _Candidates], dict[_Key, Decision]]:
    """Precompute, per action and class, the (relation test, decision) pairs to try in table order."""
    candidates: dict[_Key, _Candidates] = {}
    denials: dict[_Key, Decision] = {}
    for action in Action:
        for cls in Classification:
            candidates[action, cls] = tuple(
                (_HOLDS[relation], Decision(True, rule.id, rule.clause, f"{relation.value} may {action.value}",
                                            emergency=rule.emergency))
                for rule in RULES if action in rule.actions and cls in rule.classifications
                for relation in sorted(rule.relations)
            )
            denials[action, cls] = Decision(False, *DENIAL[cls],
                                            f"no rule lets this account {action.value} a {cls.value} record")
    return candidates, denials


_CANDIDATES, _DENIALS = _compile()
_FORMER = Decision(False, *FORMER, "a deactivated account can do nothing")


def decide(actor: Actor, action: Action, facts: RecordFacts, now: datetime) -> Decision:
    """Allow or deny one action; deny is the default. Always names a rule and clause."""
    if not actor.active:
        return _FORMER
    key = (action, facts.classification)
    for test, decision in _CANDIDATES[key]:
        if test(actor, facts, now):
            return decision
    return _DENIALS[key]


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
        classes = sorted(c.value for c in rule.classifications)
        clauses.append(and_(col(Record.classification).in_(classes), or_(*relations)))
    return or_(*clauses) if clauses else false()


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
