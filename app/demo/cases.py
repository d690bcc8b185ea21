"""Demo disclosures and breach reports (part of seed-demo), so the case workflows can be
tried from the docs explorer: a closed child-abuse disclosure, an open risk-of-harm one
awaiting the Director, a consented one; a complaint, a conduct concern and a grievance."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from app.core.state import AppState
from app.models.breach_reports import BreachFinding, BreachReportCreate
from app.models.disclosures import Disclosure, DisclosureCreate, DisclosureReport, SubjectInformed
from app.models.subjects import Subject
from app.models.users import User
from app.policy.actor import Actor
from app.workflows import disclosures
from app.workflows.breach_reports import investigation, reports


async def seed_cases(state: AppState, users: dict[str, User]) -> None:
    now = state.clock.now()
    async with state.sessionmaker() as session:
        if (await session.execute(select(Disclosure.id).limit(1))).first():
            return  # already seeded
        subjects = {s.name: s for s in (await session.execute(select(Subject))).scalars()}
        sam, priya = subjects.get("Sam Okafor"), subjects.get("Priya Shah")
        if sam is None or priya is None:
            return  # the records step did not run
        director, alice, ben = (Actor.for_user(users[k]) for k in ("director", "alice", "ben"))
        cai, dev = Actor.for_user(users["cai"]), Actor.for_user(users["dev"])

        closed = await disclosures.raise_disclosure(session, actor=alice, now=now, data=DisclosureCreate(
            subject_id=sam.id, category="child_abuse",  # type: ignore[arg-type]
            summary="Demo: a concern about a child in the household, raised after a home visit."))
        await disclosures.report_disclosure(session, disclosure_id=closed.id, actor=director, now=now,
                                            data=DisclosureReport(reported_at=now, reference="CS-DEMO-001"))
        await disclosures.record_subject_informed(session, disclosure_id=closed.id, actor=alice, now=now,
                                                  data=SubjectInformed(informed_at=now, method="letter"))  # type: ignore[arg-type]
        await disclosures.close_disclosure(session, disclosure_id=closed.id, actor=director, now=now)
        await disclosures.raise_disclosure(session, actor=ben, now=now, data=DisclosureCreate(
            subject_id=priya.id, category="risk_of_harm",  # type: ignore[arg-type]
            summary="Demo: the user said they might harm themselves; for the Director to report."))
        await disclosures.raise_disclosure(session, actor=alice, now=now, data=DisclosureCreate(
            subject_id=priya.id, category="consented",  # type: ignore[arg-type]
            summary="Demo: housing history passed on at the user's request.",
            recipient="Riverside Housing Association", consent_reference="consent form PS-2026-02"))

        await reports.create_report(session, actor=alice, now=now, data=BreachReportCreate(
            kind="external_complaint", concerned_user_id=users["ben"].id,  # type: ignore[arg-type]
            description="Demo: a visitor complained that Ben discussed a case in the café.",
            complainant_name="A. Visitor", complaint_procedure_advised=True))
        conduct = await reports.create_report(session, actor=cai, now=now - timedelta(days=1),
                                              data=BreachReportCreate(
            kind="colleague_conduct", concerned_user_id=users["dev"].id,  # type: ignore[arg-type]
            description="Demo: Dev left case files open on a shared desk.",
            evidence="Demo: photographs of the desk, dated."))
        await investigation.record_finding(session, report_id=conduct.id, actor=director, now=now,
                                           data=BreachFinding(finding="unsubstantiated"))  # type: ignore[arg-type]
        await reports.create_report(session, actor=dev, now=now, data=BreachReportCreate(
            kind="grievance", description="Demo: a grievance about how rotas are set."))  # type: ignore[arg-type]
