"""Demo access requests, one in each state, one of them overdue (part of seed-demo).

Made through the workflows, so each has its audit events and the fulfilled one its
encrypted package (Alice may download her own: it is a personnel request, §3.6).
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from app.core.state import AppState
from app.models.access_requests import AccessDecision, AccessRequest, AccessRequestCreate, AccessWithdrawal
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.access_requests import fulfilment, intake, transitions

# subject name, kind, signed by, capacity, days since the Director received it, what happens next
DEMO: list[tuple[str, str, str, str, int, str]] = [
    ("Sam Okafor", "subject_access", "Sam Okafor", "individual", 20, "received"),  # overdue
    ("Riverside Tenants Association", "subject_access", "Ada Chair", "chair", 3, "approved"),
    ("Priya Shah", "subject_access", "Priya Shah", "individual", 9, "refused"),
    ("Alice Employee", "personnel_access", "Alice Employee", "individual", 12, "fulfilled"),
    ("Morgan Lee", "subject_access", "Morgan Lee", "individual", 5, "withdrawn"),
]


async def seed_access_requests(state: AppState, users: dict[str, User]) -> None:
    now = state.clock.now()
    director, alice = Actor.for_user(users["director"]), Actor.for_user(users["alice"])
    async with state.sessionmaker() as session:
        if (await session.execute(select(AccessRequest.id).limit(1))).first():
            return  # already seeded
        names = [name for name, *_ in DEMO]
        found = {s.name: s for s in (await session.execute(select(Subject).where(col(Subject.name).in_(names))))
                 .scalars()}
        for n, (name, kind, signed_by, capacity, days, outcome) in enumerate(DEMO, start=1):
            subject = found.get(name)
            if subject is None:
                continue  # the records step did not make it (an older demo database)
            logger = alice if kind == "personnel_access" else director
            letter = AccessRequestCreate.model_validate({
                "kind": kind, "subject_id": subject.id, "requester_subject_id": subject.id, "signed_by": signed_by,
                "signatory_capacity": capacity, "in_writing": True, "letter_reference": f"DEMO-SAR-{n:03d}",
                "received_at": now - timedelta(days=days),
            })
            made = await intake.log_request(session, actor=logger, now=now, data=letter)
            if outcome in ("approved", "refused", "fulfilled"):
                reason = "identity not confirmed" if outcome == "refused" else "signed by the right person"
                await transitions.decide_request(session, request_id=made.id, actor=director, now=now,
                                                 data=AccessDecision(approve=outcome != "refused", reason=reason))
            if outcome == "fulfilled":
                await fulfilment.fulfil_request(session, request_id=made.id, actor=director, now=now,
                                                keyring=state.keyring, settings=state.settings)
            if outcome == "withdrawn":
                await transitions.withdraw_request(session, request_id=made.id, actor=director, now=now,
                                                   data=AccessWithdrawal(reason="the writer asked to stop"))
