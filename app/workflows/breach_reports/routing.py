"""Who handles a report.

The handler is the line manager of the colleague concerned; a director when that line
manager is the reporter or the colleague concerned, is inactive, or there is none. A
grievance about KMM itself (no colleague concerned) goes to the reporter's own line
manager, as §7.1 says, or a director when they have none. The director chosen is the
earliest-created active one who is not the colleague concerned, preferring one who is
not the reporter.

An account whose password the colleague concerned chose never sees the report (``visible``),
so it is no handler: the line manager is passed over, and a director whose password they
chose is chosen only when there is no other (the report then waits for another director).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, case
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import Conflict
from app.models.breach_reports import BreachKind, HandlerBasis
from app.models.users import User

STAFF_ROLES = ("colleague", "director")


async def _director(session: AsyncSession, *, not_id: uuid.UUID | None, prefer_not: uuid.UUID | None) -> uuid.UUID:
    """The earliest-created active director other than ``not_id``, preferring one whose password
    ``not_id`` did not choose, then one other than ``prefer_not``."""
    query = select(User.id).where(col(User.role) == "director", col(User.active).is_(True))
    order: list[ColumnElement[int]] = []
    if not_id is not None:
        query = query.where(col(User.id) != not_id)
        order.append(case((col(User.credentials_set_by) == not_id, 1), else_=0))
    if prefer_not is not None:
        order.append(case((col(User.id) == prefer_not, 1), else_=0))
    found = (await session.execute(
        query.order_by(*order, col(User.created_at), col(User.id)).limit(1))).scalar_one_or_none()
    if found is None:
        raise Conflict("no active director can handle this report", type="no-handler")
    return found


def chose_password_of(concerned: User | None, account: User) -> bool:
    """Did the colleague concerned choose this account's current password (§1.8, §7.1)?"""
    return concerned is not None and account.credentials_set_by == concerned.id


async def route_handler(
    session: AsyncSession, *, concerned: User | None, reporter_id: uuid.UUID | None, kind: BreachKind
) -> tuple[uuid.UUID, HandlerBasis]:
    """The handler's id and why (as the line manager, or a director)."""
    manager_of = concerned
    if concerned is None and kind == BreachKind.grievance and reporter_id is not None:
        manager_of = await session.get(User, reporter_id)  # §7.1: raise it with your line manager
    if manager_of is not None and manager_of.line_manager_id is not None:
        manager = await session.get(User, manager_of.line_manager_id)
        excluded = {reporter_id, concerned.id if concerned else None}
        if manager is not None and manager.active and manager.role in STAFF_ROLES and manager.id not in excluded \
                and not chose_password_of(concerned, manager):
            return manager.id, HandlerBasis.line_manager
    director = await _director(session, not_id=concerned.id if concerned else None, prefer_not=reporter_id)
    return director, HandlerBasis.director
