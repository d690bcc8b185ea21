"""The rule table itself: every rule cites real clauses, and decide always names one."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import UTC, datetime, timedelta

from app.models.records import Classification
from app.policy.actor import Actor
from app.policy.decide import RecordFacts, decide, exclusion
from app.policy.rules import DENIAL, EXCLUSIONS, FORMER, RULES, Action

# DESIGN §1: how many bullets each section of the policy has.
SECTIONS = {1: 9, 2: 3, 3: 7, 4: 6, 5: 4, 6: 6, 7: 2}
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _clause_ok(clause: str) -> bool:
    parts = clause.split(", ")
    for part in parts:
        m = re.fullmatch(r"§(\d)\.(\d)", part)
        if not m or not 1 <= int(m.group(2)) <= SECTIONS.get(int(m.group(1)), 0):
            return False
    return bool(parts)


def test_clause_checker_can_fail() -> None:
    assert _clause_ok("§3.2") and _clause_ok("§1.3, §3.3, §4.2")
    assert not _clause_ok("§3.8") and not _clause_ok("§8.1") and not _clause_ok("3.2") and not _clause_ok("")


def test_every_rule_cites_clauses_that_exist() -> None:
    cited = [r.clause for r in RULES] + [FORMER[1]] + [e.clause for e in EXCLUSIONS]
    bad = [c for c in cited if not _clause_ok(c)]
    assert bad == []


def test_rule_ids_are_unique_and_cover_the_design_table() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert set(ids) | {FORMER[0]} == {"general", "custodian", "line-manager", "shared", "named", "director",
                                      "personnel", "emergency", "former"}
    assert set(DENIAL) == set(Classification) and set(DENIAL.values()) <= set(ids)


def _actors() -> list[Actor]:
    me, boss = uuid.uuid4(), uuid.uuid4()
    users = [Actor(id=me, kind="user", role=role, active=active, line_manager_id=boss)
             for role in ("colleague", "director", "trustee") for active in (True, False)]
    clients = [Actor(id=uuid.uuid4(), kind="client", role=None, scopes=frozenset(s))
               for s in ((), ("records:read",))]
    return users + clients


def test_decide_always_names_a_rule_and_clause() -> None:
    """Every combination of actor, action and facts gives a decision with a rule and a real clause."""
    valid_rules = {r.id for r in RULES} | {FORMER[0]}
    valid_rules |= {e.rule for e in EXCLUSIONS}
    grants = (None, NOW - timedelta(seconds=1), NOW, NOW + timedelta(seconds=1))
    since = (None, NOW - timedelta(hours=1))
    checked = 0
    for actor in _actors():
        other = uuid.uuid4()
        for action, cls, custodian, clm, elm, shared, named, grant, lm_since, subject in itertools.product(
            Action, Classification, (actor.id, other), (actor.id, other, None), (actor.id, other, None),
            (False, True), (False, True), grants, since, (actor.id, None),
        ):
            facts = RecordFacts(cls, custodian, clm, elm, shared, named, grant, lm_since, lm_since, subject)
            d = decide(actor, action, facts, NOW)
            assert d.rule in valid_rules and _clause_ok(d.clause) and d.reason, (actor, action, facts, d)
            if not actor.active:
                assert (d.allowed, d.rule, d.clause) == (False, "former", "§7.2")
            if not d.allowed and d.allowed_by:  # a refusal cites a rule that would allow it
                assert (d.rule, d.clause) in d.allowed_by and d.reason.startswith("only "), d
            if d.emergency:
                assert d.allowed and d.rule == "emergency" and grant is not None and grant > NOW
            if d.recent_relation:
                assert d.allowed and d.rule in ("line-manager", "personnel") and lm_since is not None
            if d.allowed and actor.role == "trustee":  # what is passed to them, and grants (§3.1, §4.5)
                assert d.rule in ("general", "shared", "emergency"), (facts, d)
            if d.allowed and cls == Classification.personnel and actor.kind == "user":  # never one's own file (§3.6)
                assert subject != actor.id, (actor, facts, d)
            checked += 1
    assert checked > 40_000


def _facts(cls: Classification, **kw: object) -> RecordFacts:
    base: dict[str, object] = {"classification": cls, "custodian_id": uuid.uuid4(), "custodian_line_manager_id": None,
                               "employee_line_manager_id": None, "shared_with_actor": False, "actor_named": False,
                               "actor_grant_expires_at": None}
    base.update(kw)
    return RecordFacts(**base)  # type: ignore[arg-type]


def test_grant_expiring_now_is_expired() -> None:
    actor = Actor(id=uuid.uuid4(), kind="user", role="colleague")
    assert not decide(actor, Action.read, _facts(Classification.sensitive, actor_grant_expires_at=NOW), NOW).allowed
    d = decide(actor, Action.read, _facts(Classification.sensitive,
                                          actor_grant_expires_at=NOW + timedelta(microseconds=1)), NOW)
    assert (d.allowed, d.rule, d.clause, d.emergency) == (True, "emergency", "§4.5", True)


def test_service_client_is_never_custodian_or_manager() -> None:
    client = Actor(id=uuid.uuid4(), kind="client", role=None, scopes=frozenset({"records:read"}))
    facts = _facts(Classification.confidential, custodian_id=client.id, custodian_line_manager_id=client.id)
    assert not decide(client, Action.read, facts, NOW).allowed
    assert decide(client, Action.read, _facts(Classification.general), NOW).allowed
    no_scope = Actor(id=uuid.uuid4(), kind="client", role=None)
    assert not decide(no_scope, Action.read, _facts(Classification.general), NOW).allowed


def test_a_denial_lists_exactly_the_rules_that_would_allow_it() -> None:
    """Derived from the table: for each action and class, the refusal's allowed_by is every rule
    allowing that action on that class, and its reason names each of their relations."""
    from app.policy.rules import WHO

    colleague = Actor(id=uuid.uuid4(), kind="user", role="colleague")
    for action, cls in itertools.product(Action, Classification):
        d = decide(colleague, action, _facts(cls), NOW)
        if d.allowed:
            continue
        allowing = [r for r in RULES if action in r.actions and cls in r.classifications]
        assert d.allowed_by == tuple((r.id, r.clause) for r in allowing), (action, cls)
        if not allowing:
            assert d.reason == f"no one may {action.value} a {cls.value} record"
            continue
        assert d.reason.endswith(f" may {action.value} a {cls.value} record"), d.reason
        for rule in allowing:
            assert any(WHO[rel] in d.reason for rel in rule.relations), (rule.id, d.reason)
    destroy = decide(colleague, Action.destroy, _facts(Classification.confidential, custodian_id=colleague.id), NOW)
    assert destroy.reason == "only the custodian's line manager or a director may destroy a confidential record"
    assert (destroy.rule, destroy.clause) == ("line-manager", "§1.3, §3.3, §4.2")


def test_the_exclusion_names_itself_only_for_the_record_it_excludes() -> None:
    """``exclusion`` is the personnel exclusion alone (§3.6): for one's own personnel file,
    whatever the role or action; never for another's, nor for another class about oneself."""
    for actor in _actors():
        if actor.kind != "user":
            continue
        own = exclusion(actor, _facts(Classification.personnel, subject_user_id=actor.id), NOW)
        assert own is not None and (own.allowed, own.rule, own.clause) == (False, "personnel", "§3.6")
        for action in Action:
            denied = decide(actor, action, _facts(Classification.personnel, subject_user_id=actor.id,
                                                  employee_line_manager_id=actor.id), NOW)
            assert not denied.allowed
        assert exclusion(actor, _facts(Classification.personnel, subject_user_id=uuid.uuid4()), NOW) is None
        for cls in Classification:
            if cls != Classification.personnel:
                assert exclusion(actor, _facts(cls, subject_user_id=actor.id), NOW) is None
