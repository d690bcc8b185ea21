"""A small organisation around one record, for the policy tests over HTTP.

Accounts go straight into the database (fast); only the people a test acts as log in.
Shares, named entries and grants are inserted directly, so the matrix can also prove
that a row of the wrong kind (a share on a sensitive record, say) gives nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from app.models.audit import AuditEvent
from app.models.emergency_grants import EmergencyGrant
from app.models.records import Record, RecordContent, RecordNamedAccess, RecordShare
from tests.factory import Factory, Person

# Who is who: name -> (role, manager's name)
ROLES: dict[str, tuple[str, str | None]] = {
    "director": ("director", None),
    "line_manager": ("colleague", "director"),  # the custodian's line manager
    "custodian": ("colleague", "line_manager"),
    "colleague": ("colleague", "line_manager"),  # a peer of the custodian
    "trustee": ("trustee", None),
    "named": ("colleague", "director"),
    "shared": ("colleague", "director"),
    "grant_live": ("colleague", "director"),
    "grant_expired": ("colleague", "director"),
    "deactivated": ("colleague", "director"),
    "target": ("colleague", "director"),  # whom shares and names go to
    "employee_line_manager": ("colleague", "director"),
    "employee": ("colleague", "employee_line_manager"),
    "new_manager": ("colleague", "director"),  # made the custodian's (and employee's) line manager today
}

# Changes made after the organisation is built, each a case of its own in the matrix:
# case -> who acts.
AFTERWARDS: dict[str, str] = {
    "custodian_now_trustee": "custodian",  # the custodian's role becomes trustee (§3.1)
    "named_now_trustee": "named",  # the named colleague's role becomes trustee (§3.1)
    "employee_director": "employee",  # the employee the personnel file is about is a director (§3.6)
    "employee_with_grant": "employee",  # ... or holds a live emergency grant over it (§3.6)
    "new_line_manager": "new_manager",  # a director re-parents the custodian and the employee (§3.2, §4.5)
}


@dataclass
class Org:
    people: dict[str, Person]
    subject_id: str
    record_id: str
    classification: str
    title: str
    content: str

    def __getitem__(self, name: str) -> Person:
        return self.people[name]


async def build_org(factory: Factory, classification: str, *, login: Iterable[str] = (),
                    afterwards: str | None = None) -> Org:
    """One record of ``classification`` and a person in every relation to it; ``afterwards``
    names a change from AFTERWARDS to make once it is built."""
    client, state = factory.client, factory.state
    wanted = set(login) | {"director", "custodian"} | ({AFTERWARDS[afterwards]} if afterwards else set())
    people: dict[str, Person] = {}
    for name, (role, manager) in ROLES.items():
        if name == "employee" and afterwards == "employee_director":
            role = "director"
        people[name] = await factory.user(role, manager=people[manager] if manager else None,
                                          name=name.replace("_", " ").title(), login=name in wanted)
    marker = uuid.uuid4().hex
    title, content = f"TITLE-{marker}", f"CONTENT-{marker}"
    if classification == "personnel":
        subject = await factory.subject(by=people["director"], name="Employee", category="employee",
                                        user_id=str(people["employee"].id))
        # Made by a director with another colleague as custodian: the custodian rule must not reach it.
        record = await factory.record(by=people["director"], subject=subject, classification="personnel", title=title,
                                      content=content, custodian_id=str(people["custodian"].id))
    else:
        subject = await factory.subject(by=people["custodian"])
        record = await factory.record(by=people["custodian"], subject=subject, classification=classification,
                                      title=title, content=content)
    rid = uuid.UUID(record["id"])
    now = state.clock.now()
    async with state.sessionmaker() as session:
        session.add(RecordShare(record_id=rid, user_id=people["shared"].id, reason="cover",
                                shared_by=people["custodian"].id, shared_at=now))
        session.add(RecordNamedAccess(record_id=rid, user_id=people["named"].id, consent_reference="letter 1",
                                      added_by=people["custodian"].id, added_at=now))
        grants = [("grant_live", timedelta(hours=1)), ("grant_expired", timedelta(hours=-1))]
        if afterwards == "employee_with_grant":
            grants.append(("employee", timedelta(hours=1)))
        for name, delta in grants:
            session.add(EmergencyGrant(grantee_id=people[name].id, record_id=rid, reason="emergency",
                                       expires_at=now + delta, issued_by=people["director"].id,
                                       issued_at=now - timedelta(hours=2)))
        await session.commit()
    if "deactivated" in wanted:
        r = await client.patch(f"/users/{people['deactivated'].id}", json={"active": False},
                               headers=people["director"].headers)
        assert r.status_code == 200, r.text
    director = people["director"].headers
    if afterwards in ("custodian_now_trustee", "named_now_trustee"):
        who = people[AFTERWARDS[afterwards]]
        r = await client.patch(f"/users/{who.id}", json={"role": "trustee"}, headers=director)
        assert r.status_code == 200, r.text
    if afterwards == "new_line_manager":
        for who in ("custodian", "employee"):
            r = await client.patch(f"/users/{people[who].id}", json={"line_manager_id": str(people["new_manager"].id)},
                                   headers=director)
            assert r.status_code == 200, r.text
    return Org(people=people, subject_id=subject["id"], record_id=record["id"], classification=classification,
               title=title, content=content)


# -- looking straight into the database ------------------------------------------------


async def db_record(factory: Factory, record_id: str | uuid.UUID) -> Record:
    async with factory.state.sessionmaker() as session:
        record = await session.get(Record, uuid.UUID(str(record_id)))
        assert record is not None
        return record


async def has_content(factory: Factory, record_id: str | uuid.UUID) -> bool:
    async with factory.state.sessionmaker() as session:
        return await session.get(RecordContent, uuid.UUID(str(record_id))) is not None


async def events(factory: Factory, *, action: str | None = None, resource_id: str | None = None,
                 actor_id: uuid.UUID | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.id))
    if action:
        query = query.where(col(AuditEvent.action) == action)
    if resource_id:
        query = query.where(col(AuditEvent.resource_id) == str(resource_id))
    if actor_id:
        query = query.where(col(AuditEvent.actor_id) == actor_id)
    async with factory.state.sessionmaker() as session:
        return list((await session.execute(query)).scalars())


async def count(factory: Factory, model: Any) -> int:
    from sqlalchemy import func

    async with factory.state.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())
