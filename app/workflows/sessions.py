"""Logging in and out: password and client-credential grants, refresh rotation,
reuse detection and lockout. Every outcome is an audit event."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.db import RowSource
from app.core.errors import Problem
from app.core.security import InvalidToken, TokenClaims, hash_secret, secrets_equal
from app.core.state import AppState
from app.models.accounts import (
    AuthSession,
    LoginAttempt,
    RefreshToken,
    ServiceClient,
    TokenPair,
    User,
)
from app.policy.actor import Actor
from app.workflows.audit_trail import add_event


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, type="not-authenticated", headers={"WWW-Authenticate": "Bearer"})


def check_session(*, found: bool, revoked_at: datetime | None, active: bool) -> None:
    """A token is good only for a live session of an active account; anything else is 401 (§7.2)."""
    if not found or revoked_at is not None:
        raise unauthorized("the session has ended")
    if not active:
        raise unauthorized("the account is deactivated (§7.2)")


def session_actor(user: User | None, revoked_at: datetime | None, session_id: uuid.UUID) -> Actor:
    """The actor of a live session of an active account; anything else is 401 (§7.2)."""
    check_session(found=user is not None, revoked_at=revoked_at, active=user is not None and user.active)
    assert user is not None
    return Actor.for_user(user, session_id=session_id)


_USERS = cast(Table, User.__table__)  # type: ignore[attr-defined]
_CLIENTS = cast(Table, ServiceClient.__table__)  # type: ignore[attr-defined]
_SESSIONS = cast(Table, AuthSession.__table__)  # type: ignore[attr-defined]
# The token's account (or service client) and its session, in one statement each.
_USER_SESSION = (
    sa_select(_USERS.c.role, _USERS.c.active, _USERS.c.line_manager_id, _USERS.c.staff_type, _SESSIONS.c.revoked_at)
    .join(_SESSIONS, _SESSIONS.c.user_id == _USERS.c.id)
    .where(_USERS.c.id == bindparam("sub"), _SESSIONS.c.id == bindparam("sid"))
)
_CLIENT_SESSION = (
    sa_select(_CLIENTS.c.active, _CLIENTS.c.scopes, _SESSIONS.c.revoked_at)
    .join(_SESSIONS, _SESSIONS.c.client_id == _CLIENTS.c.id)
    .where(_CLIENTS.c.id == bindparam("sub"), _SESSIONS.c.id == bindparam("sid"))
)


async def load_actor(rows: RowSource, claims: TokenClaims) -> Actor:
    """Check the token's account (or service client) and session: one autocommit query on
    the hot path's connections, so no transaction is held for the request's own work."""
    sub = uuid.UUID(claims.sub)
    params = {"sub": sub, "sid": claims.sid}
    async with rows.connection() as conn:
        row = await conn.first(_CLIENT_SESSION if claims.kind == "client" else _USER_SESSION, params)
    if claims.kind == "client":
        check_session(found=row is not None, revoked_at=row.revoked_at if row else None,
                      active=bool(row and row.active))
        assert row is not None
        return Actor(id=sub, kind="client", role=None, scopes=frozenset(row.scopes), session_id=claims.sid)
    return row_actor(row, claims)


def row_actor(row: Any | None, claims: TokenClaims) -> Actor:
    """The account actor of a token, from a row holding its account's role, active,
    line_manager_id and staff_type and its session's revoked_at (None: no such pair)."""
    check_session(found=row is not None, revoked_at=row.revoked_at if row else None,
                  active=bool(row and row.active))
    assert row is not None
    return Actor(id=uuid.UUID(claims.sub), kind="user", role=row.role, active=True,
                 line_manager_id=row.line_manager_id, staff_type=row.staff_type, session_id=claims.sid)


def _bad_grant(detail: str = "incorrect email or password") -> Problem:
    return Problem(401, detail, type="invalid-grant", headers={"WWW-Authenticate": "Bearer"})


async def locked_until(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime, state: AppState
) -> datetime | None:
    """When the account's lock ends, if it is locked now.

    Five failures within the window (none since a success) lock the account for the
    lockout period from the fifth. Counted in the database, so every process agrees.
    """
    s = state.settings
    window = timedelta(minutes=s.lockout_window_minutes)
    horizon = now - window - timedelta(minutes=s.lockout_minutes)
    rows = (
        await session.execute(
            select(LoginAttempt.at, LoginAttempt.success)
            .where(LoginAttempt.user_id == user_id, LoginAttempt.at > horizon)
            .order_by(col(LoginAttempt.at).desc(), col(LoginAttempt.id).desc())
            .limit(s.lockout_threshold)
        )
    ).all()
    failures = []
    for at, success in rows:
        if success:
            break
        failures.append(at)
    if len(failures) < s.lockout_threshold:
        return None
    newest, oldest = failures[0], failures[-1]
    if newest - oldest > window:
        return None
    until: datetime = newest + timedelta(minutes=s.lockout_minutes)
    return until if until > now else None


async def _start_session(
    session: AsyncSession, *, state: AppState, now: datetime, user: User | None = None,
    client: ServiceClient | None = None,
) -> TokenPair:
    auth = AuthSession(user_id=user.id if user else None, client_id=client.id if client else None,
                       created_at=now)
    session.add(auth)
    await session.flush()
    return await _issue(session, state=state, now=now, auth=auth, with_refresh=user is not None)


async def _issue(
    session: AsyncSession, *, state: AppState, now: datetime, auth: AuthSession, with_refresh: bool
) -> TokenPair:
    s = state.settings
    kind = "user" if auth.user_id else "client"
    sub = str(auth.user_id or auth.client_id)
    access = state.tokens.issue(sub=sub, sid=auth.id, typ="access", kind=kind, now=now,
                                expires_at=now + s.access_token_ttl)
    refresh = None
    if with_refresh:
        rt = RefreshToken(session_id=auth.id, issued_at=now, expires_at=now + s.refresh_token_ttl)
        session.add(rt)
        refresh = state.tokens.issue(sub=sub, sid=auth.id, typ="refresh", kind=kind, now=now,
                                     expires_at=rt.expires_at, jti=rt.id)
    return TokenPair(access_token=access, refresh_token=refresh,
                     expires_in=int(s.access_token_ttl.total_seconds()))


async def login_with_password(
    session: AsyncSession, *, state: AppState, email: str, password: str, now: datetime
) -> TokenPair:
    """The password grant, in two short transactions around the (slow) hash check.

    The first locks the account row (Postgres; SQLite's write lock does the same), checks
    the lockout and records the attempt as a failure *before* the password is checked, so
    concurrent guesses all count and no more than the threshold are ever tried. The hash
    check runs in a worker thread with no transaction open; the second transaction turns
    the attempt into a success, or audits the failure and a lockout it causes.
    """
    user = (
        await session.execute(
            select(User).where(User.email == email.strip().lower()).with_for_update()
        )
    ).scalar_one_or_none()
    attempt: LoginAttempt | None = None
    if user is not None:
        until = await locked_until(session, user_id=user.id, now=now, state=state)
        if until is not None:
            add_event(session, now=now, actor=Actor.for_user(user), action="auth.login_locked",
                      resource_type="user", resource_id=user.id, decision="deny",
                      rule="lockout", clause="§6.6")
            await session.commit()
            retry = max(1, math.ceil((until - now).total_seconds()))
            raise Problem(429, "too many failed logins; the account is locked for a while",
                          type="account-locked", headers={"Retry-After": str(retry)},
                          rule="lockout", clause="§6.6")
        attempt = LoginAttempt(user_id=user.id, at=now, success=False)
        session.add(attempt)
    await session.commit()

    ok = await asyncio.to_thread(state.passwords.verify, password, user.password_hash if user else None)

    if user is None or attempt is None or not ok or not user.active:
        former = user is not None and not user.active
        add_event(session, now=now, actor=Actor.for_user(user) if user else None, action="auth.login_failed",
                  resource_type="user", resource_id=user.id if user else None, decision="deny",
                  rule="former" if former else "credentials", clause="§7.2" if former else "§6.6")
        if user is not None and user.active:
            until = await locked_until(session, user_id=user.id, now=now, state=state)
            if until is not None:
                add_event(session, now=now, actor=Actor.for_user(user), action="auth.lockout",
                          resource_type="user", resource_id=user.id, decision="deny",
                          rule="lockout", clause="§6.6")
        await session.commit()
        raise _bad_grant()
    await session.execute(
        update(LoginAttempt).where(col(LoginAttempt.id) == attempt.id).values(success=True)
    )
    pair = await _start_session(session, state=state, now=now, user=user)
    add_event(session, now=now, actor=Actor.for_user(user), action="auth.login", resource_type="user",
              resource_id=user.id, decision="allow", rule="credentials", clause="§6.6")
    await session.commit()
    return pair


async def login_client(
    session: AsyncSession, *, state: AppState, client_id: str, client_secret: str, now: datetime
) -> TokenPair:
    client = (
        await session.execute(select(ServiceClient).where(ServiceClient.client_id == client_id))
    ).scalar_one_or_none()
    expected = client.secret_hash if client else hash_secret("no-such-client")
    ok = secrets_equal(hash_secret(client_secret), expected)
    if client is None or not ok or not client.active:
        add_event(session, now=now, action="auth.client_login_failed", resource_type="service_client",
                  resource_id=client.id if client else None, decision="deny", rule="credentials",
                  clause="§6.6")
        await session.commit()
        raise _bad_grant("invalid client credentials")
    pair = await _start_session(session, state=state, now=now, client=client)
    add_event(session, now=now, actor=Actor(id=client.id, kind="client", role=None),
              action="auth.client_login", resource_type="service_client", resource_id=client.id,
              decision="allow", rule="credentials", clause="§6.6")
    await session.commit()
    return pair


async def refresh(
    session: AsyncSession, *, state: AppState, token: str, now: datetime
) -> TokenPair:
    try:
        claims = state.tokens.decode(token, expected="refresh", now=now)
    except InvalidToken as exc:
        raise unauthorized(str(exc)) from exc
    row = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, col(AuthSession.id) == RefreshToken.session_id)
            .join(User, col(User.id) == AuthSession.user_id)
            .where(RefreshToken.id == claims.jti, AuthSession.id == claims.sid)
        )
    ).first()
    if row is None:
        raise unauthorized("unknown refresh token")
    rt, auth, user = row
    if auth.revoked_at is not None or not user.active:
        raise unauthorized("the session has ended")
    if rt.used_at is not None:
        # A rotated token came back: someone holds a copy. End the whole family.
        await session.execute(
            update(AuthSession).where(AuthSession.id == auth.id)  # type: ignore[arg-type]
            .values(revoked_at=now, revoked_reason="refresh_reuse")
        )
        add_event(session, now=now, actor=Actor.for_user(user), action="auth.refresh_reuse",
                  resource_type="session", resource_id=auth.id, decision="deny",
                  rule="refresh-rotation", clause="§6.6")
        await session.commit()
        raise unauthorized("refresh token already used; the session has been ended")
    # Mark used only if nobody else did in the meantime (two concurrent refreshes).
    marked = await session.execute(
        update(RefreshToken).where(RefreshToken.id == rt.id, RefreshToken.used_at.is_(None))  # type: ignore[arg-type,union-attr]
        .values(used_at=now)
    )
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise unauthorized("refresh token already used")
    pair = await _issue(session, state=state, now=now, auth=auth, with_refresh=True)
    add_event(session, now=now, actor=Actor.for_user(user), action="auth.refresh", resource_type="session",
              resource_id=auth.id, decision="allow", rule="refresh-rotation", clause="§6.6")
    await session.commit()
    return pair


async def logout(session: AsyncSession, *, actor: Actor, now: datetime) -> None:
    await session.execute(
        update(AuthSession).where(AuthSession.id == actor.session_id)  # type: ignore[arg-type]
        .values(revoked_at=now, revoked_reason="logout")
    )
    add_event(session, now=now, actor=actor, action="auth.logout", resource_type="session",
              resource_id=actor.session_id, decision="allow", rule="credentials", clause="§6.6")
    await session.commit()
