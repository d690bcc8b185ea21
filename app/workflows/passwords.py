"""Passwords and locks (§6.6): an account changes its own password (its other sessions
end); a director resets one (every session of the account ends, and it must be changed at
the next login) or unlocks an account locked by failed logins. Each is an audit event
that never holds a password."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import PolicyDenied
from app.core.password_rules import check_new_password
from app.core.state import AppState
from app.models.accounts import AuthSession, LoginAttempt, User
from app.policy.actor import Actor
from app.workflows.accounts import get_user
from app.workflows.audit_trail import add_event
from app.workflows.sessions import begin_password_check, email_key, finish_password_check


async def _end_sessions(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime, reason: str, keep: uuid.UUID | None = None
) -> None:
    query = update(AuthSession).where(col(AuthSession.user_id) == user_id, col(AuthSession.revoked_at).is_(None))
    if keep is not None:
        query = query.where(col(AuthSession.id) != keep)
    await session.execute(query.values(revoked_at=now, revoked_reason=reason))


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
    await _end_sessions(session, user_id=user.id, now=now, reason="password_change", keep=actor.session_id)
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
    await session.execute(
        update(User).where(col(User.id) == user_id).values(password_hash=hashed, must_change_password=True)
    )
    session.add(LoginAttempt(user_id=user_id, email_key=email_key(state, email), at=now, outcome="unlocked"))
    await _end_sessions(session, user_id=user_id, now=now, reason="password_reset")
    add_event(session, now=now, actor=actor, action="account.password_reset", resource_type="user",
              resource_id=user_id, decision="allow", rule="director", clause="§6.6")
    await session.commit()


async def unlock(session: AsyncSession, *, state: AppState, actor: Actor, user_id: uuid.UUID, now: datetime) -> None:
    """Lift a lock from failed logins at once: the count starts again from here."""
    user = await get_user(session, user_id)
    session.add(LoginAttempt(user_id=user.id, email_key=email_key(state, user.email), at=now, outcome="unlocked"))
    add_event(session, now=now, actor=actor, action="account.unlock", resource_type="user", resource_id=user.id,
              decision="allow", rule="director", clause="§6.6")
    await session.commit()
