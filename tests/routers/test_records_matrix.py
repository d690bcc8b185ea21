"""DESIGN §4 as a test table (DESIGN §9): classification × relation × action over HTTP.

The expectations are written out by hand from the design, not derived from
app/policy/rules.py, so a change to the rule table that breaks the design fails here.
Each row builds one organisation and runs the four actions on its record in order
(read, update, share, destroy), checking status, rule and clause, and that a refusal
neither leaks the record nor changes it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from app.models.records import RecordNamedAccess, RecordShare
from tests.factory import Factory
from tests.policy.org import AFTERWARDS, Org, build_org, db_record, events, has_content

ACTIONS = ("read", "update", "share", "destroy")

# The clauses each allowing rule cites (DESIGN §4).
CLAUSE = {
    "general": "§4.1",
    "custodian": "§4.2, §3.2",
    "line-manager": "§1.3, §3.3, §4.2",
    "shared": "§3.1",
    "named": "§3.2",
    "director": "§3.1, §3.4",
    "personnel": "§4.3",
    "emergency": "§4.5",
}
# What a refusal cites: a rule that would allow the action on the class (the one that governs
# the class where it does: shared for reading a confidential record, named a sensitive one,
# personnel a personnel one), never one the caller already satisfies. (read, update, share, destroy)
LM = ("line-manager", CLAUSE["line-manager"])
CUSTODIAN = ("custodian", CLAUSE["custodian"])
PERSONNEL = ("personnel", "§4.3")
DENIED = {
    "general": (("general", "§4.1"), CUSTODIAN, CUSTODIAN, LM),
    "confidential": (("shared", "§3.1"), CUSTODIAN, CUSTODIAN, LM),
    "sensitive": (("named", "§3.2"), CUSTODIAN, CUSTODIAN, LM),
    "personnel": (PERSONNEL,) * 4,  # nobody shares a personnel record: the class's rule
}
# Who the refusal says may do it (DESIGN §4, in the order of the table).
WHO_MAY = {
    ("general", "update"): "the custodian, the custodian's line manager or a director",
    ("general", "share"): "the custodian, the custodian's line manager or a director",
    ("general", "destroy"): "the custodian's line manager or a director",
    ("confidential", "read"): "the custodian, the custodian's line manager, someone it was passed to, a director "
                              "or the holder of an emergency grant",
    ("confidential", "update"): "the custodian, the custodian's line manager or a director",
    ("confidential", "share"): "the custodian, the custodian's line manager or a director",
    ("confidential", "destroy"): "the custodian's line manager or a director",
    ("sensitive", "read"): "the custodian, the custodian's line manager, a colleague named as entitled or the "
                           "holder of an emergency grant",
    ("sensitive", "update"): "the custodian or the custodian's line manager",
    ("sensitive", "share"): "the custodian or the custodian's line manager",
    ("sensitive", "destroy"): "the custodian's line manager",
    ("personnel", "read"): "the employee's line manager, a director or the holder of an emergency grant",
    ("personnel", "update"): "the employee's line manager or a director",
    ("personnel", "destroy"): "the employee's line manager or a director",
}
STAFF = "staff-only"  # sharing is for staff accounts; a trustee is stopped before the rules
OWN = "own-file"  # one's own personnel file: asked for in writing, whatever else holds (§3.6)
NO = None
NONE4 = (NO, NO, NO, NO)
TRUSTEE = (NO, NO, STAFF, NO)

# (read, update, share, destroy): the rule that allows, or NO for a refusal.
MATRIX: dict[str, dict[str, tuple[str | None, ...]]] = {
    "general": {
        "custodian": ("general", "custodian", "custodian", NO),
        "line_manager": ("general", "line-manager", "line-manager", "line-manager"),
        "colleague": ("general", NO, NO, NO),
        "trustee": ("general", NO, STAFF, NO),
        "director": ("general", "director", "director", "director"),
        "named": ("general", NO, NO, NO),
        "shared": ("general", NO, NO, NO),
        "grant_live": ("general", NO, NO, NO),
        "grant_expired": ("general", NO, NO, NO),
        "custodian_now_trustee": ("general", NO, STAFF, NO),
        "named_now_trustee": ("general", NO, STAFF, NO),
        "new_line_manager": ("general", "line-manager", "line-manager", "line-manager"),
    },
    "confidential": {
        "custodian": ("custodian", "custodian", "custodian", NO),
        "line_manager": ("line-manager",) * 4,
        "colleague": NONE4,
        "trustee": (NO, NO, STAFF, NO),
        "director": ("director",) * 4,
        "named": NONE4,  # a named row means nothing on a confidential record
        "shared": ("shared", NO, NO, NO),
        "grant_live": ("emergency", NO, NO, NO),
        "grant_expired": NONE4,
        "custodian_now_trustee": TRUSTEE,  # keeps nothing it kept as a colleague (§3.1)
        "named_now_trustee": TRUSTEE,
        "new_line_manager": ("line-manager",) * 4,
    },
    "sensitive": {
        "custodian": ("custodian", "custodian", "custodian", NO),
        "line_manager": ("line-manager",) * 4,
        "colleague": NONE4,
        "trustee": (NO, NO, STAFF, NO),
        "director": NONE4,  # never by rank
        "named": ("named", NO, NO, NO),
        "shared": NONE4,  # a share means nothing on a sensitive record
        "grant_live": ("emergency", NO, NO, NO),
        "grant_expired": NONE4,
        "custodian_now_trustee": TRUSTEE,
        "named_now_trustee": TRUSTEE,
        "new_line_manager": ("line-manager",) * 4,
    },
    "personnel": {
        "custodian": NONE4,  # the custodian, line-manager, shared and named rules never reach personnel
        "line_manager": NONE4,
        "colleague": NONE4,
        "trustee": (NO, NO, STAFF, NO),
        "director": ("personnel", "personnel", NO, "personnel"),
        "named": NONE4,
        "shared": NONE4,
        "employee": NONE4,  # asks in writing instead (§3.6)
        "employee_line_manager": ("personnel", "personnel", NO, "personnel"),
        "grant_live": ("emergency", NO, NO, NO),
        "grant_expired": NONE4,
        "custodian_now_trustee": TRUSTEE,
        "named_now_trustee": TRUSTEE,
        "new_line_manager": ("personnel", "personnel", NO, "personnel"),
        "employee_director": (OWN, OWN, NO, OWN),  # a director's rank does not open their own file
        "employee_with_grant": (OWN, NO, NO, NO),  # nor does an emergency grant
    },
}
CASES = [(cls, rel) for cls, rows in MATRIX.items() for rel in [*rows, "deactivated"]]


async def _act(client: httpx.AsyncClient, factory: Factory, org: Org, who: str, action: str) -> httpx.Response:
    headers, rid = org[who].headers, org.record_id
    target = str(org["target"].id)
    if action == "read":
        return await client.get(f"/records/{rid}", headers=headers)
    if action == "update":
        version = (await db_record(factory, rid)).version
        return await client.patch(f"/records/{rid}", json={"title": f"Renamed {org.title}"},
                                  headers={**headers, "If-Match": f'"v{version}"'})
    if action == "share":
        if org.classification == "sensitive":  # a sensitive record is passed on by naming (§3.2)
            return await client.post(f"/records/{rid}/named-access", headers=headers,
                                     json={"user_id": target, "consent_reference": "letter 7"})
        return await client.post(f"/records/{rid}/shares", json={"user_id": target, "reason": "cover"},
                                 headers=headers)
    return await client.delete(f"/records/{rid}", params={"reason": "matrix"}, headers=headers)


def _expected(cls: str, rel: str, action: str) -> tuple[int, str | None, str | None]:
    if rel == "deactivated":
        return 401, None, None
    rule = MATRIX[cls][rel][ACTIONS.index(action)]
    if rule is NO:
        return 403, *DENIED[cls][ACTIONS.index(action)]
    if rule == OWN:
        return 403, "personnel", "§3.6"
    if rule == STAFF:
        return 403, STAFF, "§4.2"
    if action == "share" and cls == "general":
        return 422, "shared", "§3.1"  # allowed, but a general record has nothing to pass on
    return {"read": 200, "update": 200, "share": 201, "destroy": 200}[action], rule, CLAUSE[rule]


async def _shared_to_target(factory: Factory, org: Org) -> bool:
    rid, target = uuid.UUID(org.record_id), org["target"].id
    async with factory.state.sessionmaker() as session:
        share = await session.get(RecordShare, (rid, target))
        named = await session.get(RecordNamedAccess, (rid, target))
    return share is not None or named is not None


@pytest.mark.parametrize(("classification", "relation"), CASES, ids=[f"{c}-{r}" for c, r in CASES])
async def test_matrix(client: httpx.AsyncClient, factory: Factory, classification: str, relation: str) -> None:
    who = AFTERWARDS.get(relation, relation)
    org = await build_org(factory, classification, login=[who],
                          afterwards=relation if relation in AFTERWARDS else None)
    actor_id = org[who].id
    for action in ACTIONS:
        status, rule, clause = _expected(classification, relation, action)
        before = await db_record(factory, org.record_id)
        r = await _act(client, factory, org, who, action)
        where = f"{classification}/{relation}/{action}"
        assert r.status_code == status, f"{where}: {r.status_code} {r.text}"
        if status >= 400:  # a refusal never carries the record
            assert org.content not in r.text and org.title not in r.text, where
        elif action == "read":
            assert (r.json()["title"], r.json()["content"]) == (org.title, org.content), where
        after = await db_record(factory, org.record_id)
        if status >= 400:
            body: dict[str, Any] = r.json()
            assert r.headers["content-type"].startswith("application/problem+json"), where
            assert (body.get("rule"), body.get("clause")) == (rule, clause), f"{where}: {body}"
            if status == 403 and MATRIX[classification][relation][ACTIONS.index(action)] is NO:
                # A refusal names who may (the rules that would allow it), not the rule already held.
                may = WHO_MAY.get((classification, action))
                assert body["detail"].endswith(f"only {may} may {action} a {classification} record"
                                               if may else f"no one may {action} a {classification} record"), where
                assert rule in [a["rule"] for a in body["allowed_by"]] or not may, where
            # Nothing changed.
            assert (after.version, after.destroyed_at) == (before.version, before.destroyed_at), where
            if action == "share":
                assert not await _shared_to_target(factory, org), where
            if status == 403 and rule != STAFF:  # a refusal by the rules is audited
                denied = await events(factory, action=f"record.{action}", resource_id=org.record_id,
                                      actor_id=actor_id)
                assert denied and (denied[-1].decision, denied[-1].rule) == ("deny", rule), where
            continue
        # Allowed: the decision names the rule, in the response or in the audit event.
        if action in ("read", "update"):
            # Through a line-manager relation set today, the read is flagged (§3.2, §4.5).
            recent = relation == "new_line_manager" and rule in ("line-manager", "personnel")
            assert r.json()["access"] == {"rule": rule, "clause": clause, "emergency": rule == "emergency",
                                          "recent_relation": recent}, where
        else:
            audit = "record.destroy" if action == "destroy" else (
                "record.name" if classification == "sensitive" else "record.share")
            allowed = await events(factory, action=audit, resource_id=org.record_id, actor_id=actor_id)
            assert allowed and (allowed[-1].decision, allowed[-1].rule, allowed[-1].clause) == (
                "allow", rule, clause), where
        if action == "update":
            assert after.version == before.version + 1 and r.json()["title"] == f"Renamed {org.title}"
        if action == "share":
            assert await _shared_to_target(factory, org), where
        if action == "destroy":
            assert after.destroyed_at is not None and not await has_content(factory, org.record_id)


async def test_matrix_covers_design_table() -> None:
    """Every relation the issue lists is in the table, for every class."""
    base = {"custodian", "line_manager", "colleague", "trustee", "director", "named", "shared",
            "grant_live", "grant_expired", "custodian_now_trustee", "named_now_trustee", "new_line_manager"}
    for cls, rows in MATRIX.items():
        expected = base | ({"employee", "employee_line_manager", "employee_director", "employee_with_grant"}
                           if cls == "personnel" else set())
        assert set(rows) == expected, cls
        assert all(len(v) == len(ACTIONS) for v in rows.values())


async def test_read_allowed_event_names_rule(client: httpx.AsyncClient, factory: Factory) -> None:
    """An allowed read is itself an audit event with the rule and clause (DESIGN §6)."""
    org = await build_org(factory, "confidential", login=["shared"])
    r = await client.get(f"/records/{org.record_id}", headers=org["shared"].headers)
    assert r.status_code == 200
    got = await events(factory, action="record.read", resource_id=org.record_id, actor_id=org["shared"].id)
    assert [(e.decision, e.rule, e.clause) for e in got] == [("allow", "shared", "§3.1")]
    assert all(org.content not in str(e.detail) and org.title not in str(e.detail) for e in got)
