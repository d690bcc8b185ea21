"""Demo subjects and records of every classification, shares, a named list and an
expired grant, so the rules can be tried from the docs explorer (part of seed-demo)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select

from app.core.state import AppState
from app.models.emergency_grants import EmergencyGrant
from app.models.records import NamedAccessCreate, RecordCreate, ShareCreate
from app.models.subjects import Subject, SubjectCreate
from app.models.users import User
from app.policy.actor import Actor
from app.workflows import subjects
from app.workflows.records import commands, shares

SUBJECTS = [
    {"kind": "individual", "name": "Sam Okafor", "category": "service_user"},
    {"kind": "individual", "name": "Priya Shah", "category": "service_user"},
    {"kind": "individual", "name": "Morgan Lee", "category": "member"},
    {"kind": "individual", "name": "Jo Ramos", "category": "volunteer"},
    {"kind": "individual", "name": "Kit Evans", "category": "intern"},
    {"kind": "individual", "name": "Rene Dubois", "category": "trustee"},
    {"kind": "organisation", "name": "Riverside Tenants Association", "category": "organisation",
     "officers": [{"name": "Ada Chair", "office": "chair"}, {"name": "Eli Exec", "office": "executive_officer"}]},
]


# The demo's subjects have the same ids on every machine, so the request examples of the
# OpenAPI document (app/routers/operations.py) name subjects that exist in `make run`'s demo.
DEMO_NAMESPACE = uuid.UUID("6b6d6d2e-6465-6d6f-2e6b-6d6d2e6f7267")


def demo_subject_id(name: str) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, name)


async def seed_records(state: AppState, users: dict[str, User]) -> None:
    now = state.clock.now()
    async with state.sessionmaker() as session:
        if (await session.execute(select(Subject.id).limit(1))).first():
            return  # already seeded
        alice, amir = Actor.for_user(users["alice"]), Actor.for_user(users["manager.a"])
        director = Actor.for_user(users["director"])
        made: dict[str, Subject] = {}
        for body in SUBJECTS:
            name = str(body["name"])  # type: ignore[index]
            made[name] = await subjects.create_subject(
                session, data=SubjectCreate.model_validate(body), actor=alice, now=now,
                subject_id=demo_subject_id(name))
        for key in ("alice", "dev"):
            made[key] = await subjects.create_subject(
                session, data=SubjectCreate(kind="individual", name=users[key].full_name,  # type: ignore[arg-type]
                                            category="employee", user_id=users[key].id),  # type: ignore[arg-type]
                actor=director, now=now, subject_id=demo_subject_id(users[key].full_name))

        async def add(actor, subject, title, classification, purpose="service_delivery", **kw):  # type: ignore[no-untyped-def]
            return await commands.create_record(
                session, actor=actor, now=now, keyring=state.keyring, settings=state.settings,
                data=RecordCreate.model_validate({"subject_id": subject.id, "title": title,
                                                  "content": f"Demo content: {title}.",
                                                  "classification": classification, "purpose": purpose, **kw}))

        sam, priya, org = made["Sam Okafor"], made["Priya Shah"], made["Riverside Tenants Association"]
        await add(alice, org, "Association contact details", "general")
        conf = await add(alice, sam, "Support plan", "confidential")
        await add(alice, priya, "Housing referral", "confidential",
                  consent={"status": "obtained", "obtained_at": now.isoformat(), "purpose_explained": True})
        sens = await add(alice, sam, "Tenancy dispute notes", "sensitive", access_requester_id=str(sam.id))
        await add(amir, made["alice"], "Alice: probation review", "personnel", purpose="personnel_administration")
        await add(director, made["dev"], "Dev: contract", "personnel", purpose="personnel_administration")
        await add(alice, priya, "Equal-opportunities form", "confidential", purpose="equal_opportunities_monitoring")
        await shares.add_share(session, record_id=conf.id, actor=alice, now=now,
                                data=ShareCreate(user_id=users["ben"].id, reason="covering Alice's visits"))
        await shares.add_share(session, record_id=conf.id, actor=alice, now=now,
                                data=ShareCreate(user_id=users["trustee"].id, reason="quarterly case review"))
        await shares.add_named(session, record_id=sens.id, actor=alice, now=now,
                                data=NamedAccessCreate(user_id=users["ben"].id, consent_reference="letter SO-2026-04"))
        # An expired emergency grant, to show that expiry ends access (§4.5).
        session.add(EmergencyGrant(grantee_id=users["cai"].id, record_id=sens.id, reason="out-of-hours crisis call",
                                   expires_at=now - timedelta(hours=1), issued_by=users["director"].id,
                                   issued_at=now - timedelta(hours=25)))
        await session.commit()
