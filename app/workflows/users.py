"""Managing accounts (DESIGN §2): line management, roles, deactivation (§7.2); passwords
and locks (§6.6): an account changes its own password (its other sessions end); a director
resets one (every session of the account ends, and it must be changed at the next login)
or unlocks an account locked by failed logins. Each is an audit event that never holds a
password."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import PolicyDenied, field_error
from app.core.lookup import get_or_missing
from app.core.pagination import CursorCodec, Page, page_of
from app.core.password_rules import check_new_password
from app.core.security import Passwords
from app.core.state import AppState
from app.models.auth import LoginAttempt
from app.models.users import User, UserCreate, UserPublic, UserUpdate
from app.policy.actor import Actor
from app.workflows.audit.trail import add_event
from app.workflows.auth import begin_password_check, email_key, end_sessions, finish_password_check
from app.workflows.breach_reports.rerouting import reroute_after_account_change
from app.workflows.emergency_grants import end_grants_about

MAX_DEPTH = 1000


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    return await get_or_missing(session, User, user_id, name="account")


async def _check_line_manager(
    session: AsyncSession, *, user_id: uuid.UUID | None, manager_id: uuid.UUID
) -> None:
    if manager_id == user_id:
        raise field_error("line_manager_id", "an account cannot be its own line manager")
    manager = await session.get(User, manager_id)
    if manager is None:
        raise field_error("line_manager_id", "no such account")
    if not manager.active:
        raise field_error("line_manager_id", "the line manager's account is deactivated")
    if manager.role == "trustee":
        raise field_error("line_manager_id", "a trustee cannot be a line manager")
    if user_id is None:
        return
    # Walk up from the proposed manager: meeting the account itself would close a cycle.
    seen = {manager_id}
    current = manager.line_manager_id
    for _ in range(MAX_DEPTH):
        if current is None:
            return
        if current == user_id or current in seen:
            raise field_error("line_manager_id", "this line manager would make a cycle")
        seen.add(current)
        current = (
            await session.execute(select(User.line_manager_id).where(User.id == current))
        ).scalar_one_or_none()
    raise field_error("line_manager_id", "the line-management chain is too deep")


async def _check_email_free(session: AsyncSession, email: str) -> None:
    taken = (await session.execute(select(func.count()).where(User.email == email))).scalar_one()
    if taken:
        raise field_error("email", "an account with this email already exists")


async def create_user(
    session: AsyncSession,
    *,
    data: UserCreate,
    passwords: Passwords,
    now: datetime,
    actor: Actor | None,
) -> User:
    check_new_password(data.password, email=data.email, full_name=data.full_name)
    await _check_email_free(session, data.email)
    if data.line_manager_id is not None:
        await _check_line_manager(session, user_id=None, manager_id=data.line_manager_id)
    user = User(
        email=data.email,
        full_name=data.full_name,
        role=data.role,
        staff_type=data.staff_type,
        line_manager_id=data.line_manager_id,
        password_hash=await asyncio.to_thread(passwords.hash, data.password),
        credentials_set_by=_chosen_by(actor),
        created_at=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request took the email between our check and the insert.
        await session.rollback()
        raise field_error("email", "an account with this email already exists") from exc
    add_event(session, now=now, actor=actor, action="account.create", resource_type="user",
              resource_id=user.id, decision="allow", rule="director", clause="§2")
    await session.commit()
    return user


async def list_users(
    session: AsyncSession, *, cursors: CursorCodec, limit: int, cursor: str | None, active: bool | None
) -> Page[UserPublic]:
    """Accounts in email order, keyset-paginated."""
    query = select(User).order_by(col(User.email)).limit(limit + 1)
    if cursor:
        (after,) = cursors.decode("users", cursor)
        query = query.where(col(User.email) > str(after))
    if active is not None:
        query = query.where(col(User.active) == active)
    rows = list((await session.execute(query)).scalars())
    return page_of(rows, UserPublic.model_validate, cursors=cursors, scope="users", limit=limit,
                   key=lambda last: [last.email])


async def update_user(
    session: AsyncSession, *, user_id: uuid.UUID, data: UserUpdate, now: datetime, actor: Actor
) -> User:
    user = await get_user(session, user_id)
    changes = data.model_dump(exclude_unset=True)
    for key in ("full_name", "role", "active"):
        if key in changes and changes[key] is None:
            raise field_error(key, "cannot be null")
    if "line_manager_id" in changes and changes["line_manager_id"] is not None:
        await _check_line_manager(session, user_id=user.id, manager_id=changes["line_manager_id"])
    # Old and new values of what changes who may see what (ids and roles only).
    moved: dict[str, list[object]] = {key: [_plain(getattr(user, key)), _plain(changes[key])]
             for key in ("line_manager_id", "role", "active") if key in changes and changes[key] != getattr(user, key)}
    if "line_manager_id" in moved and changes["line_manager_id"] is not None and await _acting_as_one(
            session, actor.id, changes["line_manager_id"]):
        await _refuse_self_as_line_manager(session, user=user, actor=actor, now=now, moved=moved)
    if changes.get("role") is not None:
        if changes["role"] == "trustee":
            has_reports = (
                await session.execute(
                    select(func.count()).where(User.line_manager_id == user.id, User.active)
                )
            ).scalar_one()
            if has_reports:
                raise field_error("role", "an account that line-manages others cannot be a trustee")
        changes["role"] = str(changes["role"])
    if changes.get("staff_type") is not None:
        changes["staff_type"] = str(changes["staff_type"])
    if user.id == actor.id:
        # A director who demotes or deactivates themself could leave nobody to manage accounts.
        if changes.get("active") is False:
            raise field_error("active", "a director cannot deactivate their own account")
        if changes.get("role") not in (None, user.role):
            raise field_error("role", "a director cannot change their own role")
    if "line_manager_id" in moved:
        user.line_manager_since = now if changes["line_manager_id"] is not None else None
    for key in ("full_name", "role", "staff_type", "line_manager_id"):
        if key in changes:
            setattr(user, key, changes[key])
    if "active" in changes and changes["active"] != user.active:
        user.active = changes["active"]
        if not user.active:
            user.deactivated_at = now
            # A former colleague's sessions end at once (§7.2).
            await end_sessions(session, user_id=user.id, now=now, reason="deactivated")
        else:
            user.deactivated_at = None
    session.add(user)
    if moved:
        # A report's handler keeps it only while the relation that made them handler holds
        # (§1.8, §3.1, §7.2); the response and the event below say nothing of reports.
        await reroute_after_account_change(session, account_id=user.id, actor=actor, now=now)
    add_event(session, now=now, actor=actor, action="account.update", resource_type="user",
              resource_id=user.id, decision="allow", rule="director", clause="§2",
              detail={"fields": sorted(changes), **moved})
    await session.commit()
    return user


def _plain(value: object) -> object:
    return str(value) if isinstance(value, uuid.UUID | StrEnum) else value


async def _acting_as_one(session: AsyncSession, actor_id: uuid.UUID, manager_id: uuid.UUID) -> bool:
    """Could the director making the change be the line manager it makes (§3.2, §4.5)? They are
    when it is their own account, when they chose the manager's password (they may log in as it),
    and when the manager chose theirs (the manager may be the one logged in as this director)."""
    if actor_id == manager_id:
        return True
    chosen = (await session.execute(
        select(User.id, User.credentials_set_by).where(col(User.id).in_((actor_id, manager_id))))).all()
    set_by = {user_id: chooser for user_id, chooser in chosen}
    return set_by.get(manager_id) == actor_id or set_by.get(actor_id) == manager_id


async def _refuse_self_as_line_manager(
    session: AsyncSession, *, user: User, actor: Actor, now: datetime, moved: dict[str, list[object]]
) -> None:
    """A director does not make themself someone's line manager alone: the relation would open
    that colleague's records, sensitive ones included, which otherwise takes being named or an
    emergency grant (§3.2, §4.5). Another director may make the change. An account whose password
    the director chose (or who chose the director's) counts as the director: they may log in as
    it. The attempt is audited."""
    add_event(session, now=now, actor=actor, action="account.update", resource_type="user",
              resource_id=user.id, decision="deny", rule="line-manager-change", clause="§4.5, §3.2",
              detail={"line_manager_id": moved["line_manager_id"]})
    await session.commit()
    raise PolicyDenied("a director cannot make themself, or an account whose password they may know, someone's "
                       "line manager: another director makes that change", rule="line-manager-change",
                       clause="§4.5, §3.2")


def _chosen_by(actor: Actor | None) -> uuid.UUID | None:
    """Who chooses a password set for an account: the director acting; nobody on the server."""
    return actor.id if actor is not None and actor.kind == "user" else None


# -- passwords and locks (§6.6) ----------------------------------------------------


async def change_own_password(
    session: AsyncSession, *, state: AppState, actor: Actor, current: str, new: str, now: datetime,
    address: str | None,
) -> None:
    """The current password is checked like a login (throttled, and a wrong one counts as a
    failed login); the new one must be acceptable. The caller's session goes on."""
    me = await get_user(session, actor.id)
    check_new_password(new, field="new_password", email=me.email, full_name=me.full_name, current=current)
    email = me.email
    await session.rollback()  # no transaction stays open across the hash checks
    user, attempt = await begin_password_check(session, state=state, email=email, address=address, now=now)
    assert user is not None
    ok = await asyncio.to_thread(state.passwords.verify, current, user.password_hash)
    if not ok:
        await finish_password_check(session, state=state, attempt=attempt, user=user, outcome="failed", now=now)
        add_event(session, now=now, actor=actor, action="account.password_change_failed", resource_type="user",
                  resource_id=user.id, decision="deny", rule="credentials", clause="§6.6")
        await session.commit()
        raise PolicyDenied("the current password is incorrect", rule="credentials", clause="§6.6")
    hashed = await asyncio.to_thread(state.passwords.hash, new)
    await finish_password_check(session, state=state, attempt=attempt, user=user, outcome="success", now=now)
    await session.execute(
        update(User).where(col(User.id) == user.id).values(password_hash=hashed, must_change_password=False)
    )
    await end_sessions(session, user_id=user.id, now=now, reason="password_change", keep=actor.session_id)
    add_event(session, now=now, actor=actor, action="account.password_change", resource_type="user",
              resource_id=user.id, decision="allow", rule="own-password", clause="§6.6")
    await session.commit()


async def reset_password(
    session: AsyncSession, *, state: AppState, actor: Actor, user_id: uuid.UUID, new: str, now: datetime
) -> None:
    """A director sets a password for another account: every session of that account ends,
    its lock is lifted, and it must change the password at its next login."""
    if user_id == actor.id:
        raise PolicyDenied("a director changes their own password with the current one (POST /users/me/password)",
                           rule="own-password", clause="§6.6")
    user = await get_user(session, user_id)
    check_new_password(new, field="new_password", email=user.email, full_name=user.full_name)
    email = user.email
    await session.rollback()  # no transaction stays open across the hash
    hashed = await asyncio.to_thread(state.passwords.hash, new)
    # The director now knows the password; the account counts as them until another director
    # resets it (§3.2, §1.8). The account's own change later keeps this.
    await session.execute(
        update(User).where(col(User.id) == user_id).values(password_hash=hashed, must_change_password=True,
                                                           credentials_set_by=_chosen_by(actor))
    )
    session.add(LoginAttempt(user_id=user_id, email_key=email_key(state, email), at=now, outcome="unlocked"))
    await end_sessions(session, user_id=user_id, now=now, reason="password_reset")
    add_event(session, now=now, actor=actor, action="account.password_reset", resource_type="user",
              resource_id=user_id, decision="allow", rule="director", clause="§6.6")
    # The account no longer sees reports about the director who chose its password (§1.8, §7.1):
    # those it handles go to someone who does. Nothing of them reaches the response or this event.
    await reroute_after_account_change(session, account_id=user_id, actor=actor, now=now)
    await end_grants_about(session, holder_id=user_id, about_user_id=actor.id, actor=actor, now=now)
    await session.commit()


async def unlock(session: AsyncSession, *, state: AppState, actor: Actor, user_id: uuid.UUID, now: datetime) -> None:
    """Lift a lock from failed logins at once: the count starts again from here."""
    user = await get_user(session, user_id)
    session.add(LoginAttempt(user_id=user.id, email_key=email_key(state, user.email), at=now, outcome="unlocked"))
    add_event(session, now=now, actor=actor, action="account.unlock", resource_type="user", resource_id=user.id,
              decision="allow", rule="director", clause="§6.6")
    await session.commit()
