"""Fulfilling an approved request and downloading its package (§3.4, §3.5, §3.6)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.crypto import Keyring
from app.core.errors import Conflict, Gone, PolicyDenied
from app.models.access_requests import AccessPackage, AccessRequestKind, AccessRequestPublic, AccessRequestStatus
from app.models.records import Classification
from app.policy.actor import Actor
from app.workflows.access_requests import package_retention
from app.workflows.access_requests.package import build_package, load_package, seal_package
from app.workflows.access_requests.read import load
from app.workflows.access_requests.rules import DIRECTOR_ONLY, RESOURCE, clause_for, not_about_themself
from app.workflows.access_requests.transitions import conflict, finish, transition
from app.workflows.audit.trail import add_event

S = AccessRequestStatus


async def fulfil_request(
    session: AsyncSession, *, request_id: uuid.UUID, actor: Actor, now: datetime, keyring: Keyring,
    settings: Settings,
) -> AccessRequestPublic:
    """A director fulfils an approved request: the package is built and stored encrypted, once,
    and kept for ``package_retention_days`` (§6.5)."""
    request, subject_user_id = await load(session, request_id, actor)
    not_about_themself(actor, subject_user_id)
    if request.status != S.approved:
        raise conflict(request, S.fulfilled)
    package = await build_package(session, request=request, actor=actor, now=now, keyring=keyring,
                                  retention_until=now + timedelta(days=settings.package_retention_days))
    await transition(session, request=request, to=S.fulfilled, allowed_from=(S.approved,), actor=actor, now=now,
                     values={"fulfilled_by": actor.id, "fulfilled_at": now},
                     action="access_request.fulfil", rule=DIRECTOR_ONLY[0], clause=clause_for(request.kind))
    sealed, items = seal_package(keyring, package)
    session.add(sealed)
    await session.flush()
    session.add_all(items)
    for record in package.records:  # each released record is an export on its own access log (DESIGN §6)
        add_event(session, now=now, actor=actor, action="record.export", resource_type="record",
                  resource_id=record.id, decision="allow", rule="access-request", clause=clause_for(request.kind),
                  detail={"access_request_id": str(request.id), "classification": record.classification})
    return await finish(session, request, now)


async def download_package(
    session: AsyncSession, *, request_id: uuid.UUID, actor: Actor, now: datetime, keyring: Keyring
) -> AccessPackage:
    """Directors; and the employee a fulfilled personnel request is about (§3.6). Audited either way."""
    request, employee_user_id = await load(session, request_id, actor)
    own = request.kind == AccessRequestKind.personnel_access and employee_user_id == actor.id
    rule, clause = ("personnel-request", "§3.6") if own else (DIRECTOR_ONLY[0], clause_for(request.kind))
    if not (actor.is_director or own):
        add_event(session, now=now, actor=actor, action="access_request.package_download", resource_type=RESOURCE,
                  resource_id=request.id, decision="deny", rule=rule, clause=clause,
                  detail={"status": request.status})
        await session.commit()
        raise PolicyDenied("only a director, or the employee a personnel request is about, receives the package",
                           rule=rule, clause=clause)
    if request.status != S.fulfilled:
        raise Conflict(f"the package is ready once the request is fulfilled; it is {request.status}",
                      type="not-fulfilled", current_status=request.status)
    package = await load_package(session, keyring, request.id)
    if package is None:
        raise Gone("the package was destroyed at the end of its retention period", type="package-destroyed",
                      rule=package_retention.RULE, clause=package_retention.CLAUSE)
    add_event(session, now=now, actor=actor, action="access_request.package_download", resource_type=RESOURCE,
              resource_id=request.id, decision="allow", rule=rule, clause=clause,
              detail={"status": request.status, "records": len(package.records),
                      "withheld": package.withheld_count})
    if not own:
        # The director receives sensitive content only to send it to the requester named on
        # the file (§3.5), never by rank (§3.2): each such item is a flagged export that shows
        # on the record's own access log.
        for record in package.records:
            if record.classification == Classification.sensitive:
                add_event(session, now=now, actor=actor, action="record.export", resource_type="record",
                          resource_id=record.id, decision="allow", rule="access-request", clause="§3.5",
                          emergency=True, detail={"access_request_id": str(request.id),
                                                  "classification": record.classification,
                                                  "via": "package_download"})
    await session.commit()
    return package
