"""Who may know of a report, and who sees all of it.

The colleague concerned never sees the report (404), whatever else they are, a director
included. The handler and directors see all of it; the reporter sees only its status
(``BreachReportStatusView``); anyone else gets 404. Handling and following a report takes a
staff account: a trustee never does either (§3.1), whatever the report's columns still say.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, exists, false, func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from app.core.db import id_text
from app.core.errors import PolicyDenied
from app.core.lookup import one_or_missing
from app.models.audit import AuditEvent
from app.models.breach_reports import BreachReport
from app.models.users import User
from app.policy.actor import Actor

RESOURCE = "breach_report"


def visible(actor: Actor) -> ColumnElement[bool]:
    """May this actor know of this report? The one predicate, as an SQL condition on
    ``breach_reports``, behind every path that could show a report or a trace of one (the
    report, the list, the audit trail, the compliance summary, webhook events and delivery logs).

    Never one about itself (§1.8, §7.1), nor one about whoever chose its password; all others
    for a director; otherwise, for a staff account, those it handles or reported. A trustee
    (§3.1) and a service client know of none."""
    if actor.kind != "user":
        return false()
    not_about_me = or_(col(BreachReport.concerned_user_id).is_(None), col(BreachReport.concerned_user_id) != actor.id)
    not_about_me = and_(not_about_me, ~_password_chosen_by_concerned(actor))
    if actor.is_director:
        return not_about_me
    if not actor.is_staff:
        return false()
    return and_(not_about_me, or_(col(BreachReport.handler_id) == actor.id, col(BreachReport.reporter_id) == actor.id))


def _password_chosen_by_concerned(actor: Actor) -> ColumnElement[bool]:
    """Did the colleague concerned choose the actor's current password? Then they may be the one
    logged in (§1.8, §7.1): a director who makes or resets an account knows its password, and its
    own change since may be theirs too. Until another director resets it, the account is them as
    far as reports about them go. Never NULL: no report concerned, or no chooser, is ``false``."""
    me = aliased(User)
    return exists().where(col(me.id) == actor.id, col(me.credentials_set_by) == col(BreachReport.concerned_user_id))


def events_known_to(actor: Actor) -> ColumnElement[bool]:
    """Audit events the actor may see as far as reports go: every event except those about a
    report it may not know of (its ``breach_report.*`` events, detection's included).

    The reports it may not know of are one uncorrelated subquery, so the list still filters
    in SQL and the planner runs it once.
    """
    # NULL-safe: a report with no reporter (the service raised it) is hidden, not unknown.
    hidden = select(id_text(BreachReport.id)).where(~func.coalesce(visible(actor), false())).scalar_subquery()
    about_a_report = func.coalesce(col(AuditEvent.resource_type), "") == RESOURCE
    return ~and_(about_a_report, id_text(func.coalesce(col(AuditEvent.resource_id), "")).in_(hidden))


def sees_all(actor: Actor, report: BreachReport) -> bool:
    """The handler (a staff account, §3.1) and directors see all of a report they may know of;
    the reporter only its status."""
    return actor.is_director or (actor.is_staff and report.handler_id == actor.id)


async def load(session: AsyncSession, report_id: uuid.UUID, actor: Actor, *, lock: bool = False) -> BreachReport:
    return await one_or_missing(session, select(BreachReport).where(col(BreachReport.id) == report_id,
                                                                    visible(actor)), name="breach report", lock=lock)


def require_handler(actor: Actor, report: BreachReport) -> None:
    if not sees_all(actor, report):
        raise PolicyDenied("only the handler of this report or a director may do this", rule="handler",
                           clause="§1.8")

