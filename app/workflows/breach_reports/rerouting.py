"""Routing an open report again when an account change ends the relation that made its
handler (§1.8, §7.1: the appropriate line manager; §3.1: a trustee never handles a report;
§7.2: a former colleague does nothing).

Why the handler holds a report is its ``handler_basis``, kept with the handler: routed as the
line manager or to a director (when the report is made, or routed again), or assigned by a
director. That relation holds while:

- ``line_manager``: ``route_handler`` still chooses the handler, as the line manager (of the
  colleague concerned, or of the reporter of a grievance about KMM);
- ``director``: the handler is still an active director;
- an assignment: the handler is still an active staff account;

and none of them once the colleague concerned chose the handler's password (a director's
reset, ``users.credentials_set_by``): the handler no longer sees the report.

A report with no basis (made before the basis was kept, with none in the audit trail when it
was migrated) keeps its handler while ``route_handler`` still chooses it. When the relation
ends, the report is routed again in the caller's transaction, as a ``breach_report.rerouted``
event of ids that ``events_known_to`` hides from whoever may not know of the report; the
caller learns nothing of it. A closed report keeps the handler who found it. With no one to
route to (no active director but the one concerned) the report stays where it is, as a
``breach_report.unrouted`` event, until a director assigns it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import Conflict
from app.models.breach_reports import BreachKind, BreachReport, BreachStatus, HandlerBasis
from app.models.users import User
from app.policy.actor import Actor
from app.workflows.breach_reports.reports import audit_event
from app.workflows.breach_reports.routing import STAFF_ROLES, chose_password_of, route_handler

ASSIGNED = "assigned"
def _still_holds(basis: HandlerBasis | None, handler: User | None, concerned: User | None) -> bool:
    """Whether an assignment or a director's routing still holds; False: ask ``route_handler``.
    Neither holds once the colleague concerned chose the handler's password: it no longer sees
    the report (``visible``)."""
    if handler is None or not handler.active or handler.role not in STAFF_ROLES:
        return False
    if chose_password_of(concerned, handler):
        return False
    return basis == HandlerBasis.assigned or (basis == HandlerBasis.director and handler.role == "director")


async def reroute_after_account_change(
    session: AsyncSession, *, account_id: uuid.UUID, actor: Actor, now: datetime
) -> None:
    """Route again the open reports whose handler's relation the change of ``account_id`` (its
    line manager, role or active, or a director's reset of its password) may have ended: those
    it handles, those about it, and its grievances about KMM. Changes nothing the caller shows."""
    await session.flush()  # routing reads the account as changed
    reports = list((await session.execute(
        select(BreachReport).where(
            col(BreachReport.status) != BreachStatus.closed,
            or_(col(BreachReport.handler_id) == account_id, col(BreachReport.concerned_user_id) == account_id,
                and_(col(BreachReport.kind) == BreachKind.grievance, col(BreachReport.concerned_user_id).is_(None),
                     col(BreachReport.reporter_id) == account_id)))
        .order_by(col(BreachReport.created_at), col(BreachReport.id))
        .with_for_update())).scalars())
    if not reports:
        return
    for r in reports:
        basis = r.handler_basis
        concerned = await session.get(User, r.concerned_user_id) if r.concerned_user_id else None
        if _still_holds(basis, await session.get(User, r.handler_id), concerned):
            continue
        try:
            handler_id, routed = await route_handler(session, concerned=concerned, reporter_id=r.reporter_id,
                                                     kind=r.kind)
        except Conflict:
            audit_event(session, r, actor=actor, now=now, action="unrouted", rule="routing",
                        handler_id=str(r.handler_id), account_id=str(account_id))
            continue
        if handler_id == r.handler_id and (basis is None or routed == basis):
            continue  # the same relation still makes them handler
        previous = r.handler_id
        r.handler_id, r.handler_basis = handler_id, routed
        r.updated_at = now
        audit_event(session, r, actor=actor, now=now, action="rerouted", rule="routing", handler_id=str(handler_id),
                    previous_handler_id=str(previous), routed_to=routed, account_id=str(account_id))
