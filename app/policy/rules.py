"""The rule table of DESIGN §4, as data.

One table serves both questions the service asks: "may this actor do this to this
record?" (``decide.decide``) and "which records may this actor read?" (the SQL filter
in ``decide.records_filter``). Each rule names the relations that satisfy it; the
relations have one meaning in Python (``decide.holds``) and one in SQL
(``decide.relation_sql``), and a property test proves the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from app.models.records import Classification


class Action(StrEnum):
    read = "read"
    update = "update"
    share = "share"
    destroy = "destroy"


class Relation(StrEnum):
    any_active = "any_active"  # any active account (a service client needs records:read)
    custodian = "custodian"  # the record's custodian
    custodians_line_manager = "custodians_line_manager"  # custodian.line_manager_id == actor
    shared_with = "shared_with"  # the record was passed to the actor (§3.1)
    named = "named"  # the actor is on the sensitive record's entitled list (§3.2)
    director = "director"  # the actor is a director
    employees_line_manager = "employees_line_manager"  # the employee's current line manager
    grant_holder = "grant_holder"  # the actor holds a live emergency grant (§4.5)
    subject_self = "subject_self"  # the record's subject is linked to the actor's own account


# Relations that hold only for staff (colleagues and directors): keeping a record, managing
# the colleague who keeps it or the employee it is about, and being named on it. A trustee
# sees what is passed to them (§3.1), whatever they kept or managed before their role changed.
STAFF_RELATIONS = frozenset({Relation.custodian, Relation.custodians_line_manager, Relation.named,
                             Relation.employees_line_manager})
# Relations that date from when a line manager was set; a read through one younger than this
# is flagged in the audit as emergency reads are, so re-parenting is never a quiet way round
# the named list and emergency grants (§3.2, §4.5).
RECENT_RELATION = timedelta(days=1)


C = Classification
A = Action
R = Relation
ALL_CLASSES = frozenset(C)
NOT_PERSONNEL = frozenset({C.general, C.confidential, C.sensitive})


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    clause: str
    relations: frozenset[Relation]
    classifications: frozenset[Classification]
    actions: frozenset[Action]
    emergency: bool = False


RULES: tuple[Rule, ...] = (
    Rule("general", "§4.1", frozenset({R.any_active}), frozenset({C.general}), frozenset({A.read})),
    Rule("custodian", "§4.2, §3.2", frozenset({R.custodian}), NOT_PERSONNEL,
         frozenset({A.read, A.update, A.share})),
    Rule("line-manager", "§1.3, §3.3, §4.2", frozenset({R.custodians_line_manager}), NOT_PERSONNEL,
         frozenset({A.read, A.update, A.share, A.destroy})),
    Rule("shared", "§3.1", frozenset({R.shared_with}), frozenset({C.confidential}), frozenset({A.read})),
    Rule("named", "§3.2", frozenset({R.named}), frozenset({C.sensitive}), frozenset({A.read})),
    Rule("director", "§3.1, §3.4", frozenset({R.director}), frozenset({C.general, C.confidential}),
         frozenset({A.read, A.update, A.share, A.destroy})),
    Rule("personnel", "§4.3", frozenset({R.employees_line_manager, R.director}), frozenset({C.personnel}),
         frozenset({A.read, A.update, A.destroy})),
    Rule("emergency", "§4.5", frozenset({R.grant_holder}), ALL_CLASSES, frozenset({A.read}), emergency=True),
)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Where ``relation`` holds on a record of these classes, no rule allows anything; a
    refusal that only this causes names ``rule`` and ``clause``."""

    rule: str
    clause: str
    relation: Relation
    classifications: frozenset[Classification]
    instead: str  # what the refused account does instead, in a denial's words


EXCLUSIONS: tuple[Exclusion, ...] = (
    # The employee a personnel file is about asks for it in writing (§3.6), whatever their
    # role, line-management relations or emergency grants.
    Exclusion("personnel", "§3.6", R.subject_self, frozenset({C.personnel}),
              "nobody opens their own personnel records: the employee asks the Director in writing "
              "(POST /access-requests, kind personnel_access)"),
)

# When no rule allows, the denial names the rules that would (every rule of the table that
# allows the action on the record's class), and cites first the rule that governs the class
# where it is one of them, else the first of them in table order. Where none would (nobody
# shares a personnel record), it cites the rule that governs the class.
DENIAL: dict[Classification, str] = {
    C.general: "general",
    C.confidential: "shared",
    C.sensitive: "named",
    C.personnel: "personnel",
}
FORMER = ("former", "§7.2")

# Who each relation is, in the words (and the order) a denial lists them: "only the custodian
# or a director may ...".
WHO: dict[Relation, str] = {
    R.any_active: "an active account (a service client with records:read)",
    R.custodian: "the custodian",
    R.custodians_line_manager: "the custodian's line manager",
    R.shared_with: "someone it was passed to",
    R.named: "a colleague named as entitled",
    R.employees_line_manager: "the employee's line manager",
    R.director: "a director",
    R.grant_holder: "the holder of an emergency grant",
    R.subject_self: "the employee it is about",
}
