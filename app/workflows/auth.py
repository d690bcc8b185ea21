"""Logging in and out: password and client-credential grants, refresh rotation,
reuse detection, an absolute session lifetime, and login throttling by client address
and by email. Every outcome is an audit event."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.context import actor_var
from app.core.db import RowSource
from app.core.errors import Busy, Invalid, Locked, Unauthenticated
from app.core.security import InvalidToken, TokenClaims, hash_secret, secrets_equal
from app.core.state import AppState
from app.models.auth import AuthSession, LoginAttempt, RefreshToken, TokenPair
from app.models.service_clients import ServiceClient
from app.models.users import User
from app.policy.actor import Actor
from app.policy.scopes import requested_scopes
from app.workflows.audit.trail import add_event


def unauthorized(detail: str) -> Unauthenticated:
    return Unauthenticated(detail)


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
    return _caller(Actor.for_user(user, session_id=session_id))


def _caller(actor: Actor) -> Actor:
    """The request's checked caller, kept for the rest of the request: an error raised later
    (an integrity failure, §6.6) is audited as theirs."""
    actor_var.set(actor)
    return actor


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
        held = frozenset(row.scopes)  # a scope taken from the client since ends at once
        granted = held if claims.scopes is None else held & claims.scopes
        return _caller(Actor(id=sub, kind="client", role=None, scopes=granted, session_id=claims.sid))
    return row_actor(row, claims)


def row_actor(row: Any | None, claims: TokenClaims) -> Actor:
    """The account actor of a token, from a row holding its account's role, active,
    line_manager_id and staff_type and its session's revoked_at (None: no such pair)."""
    check_session(found=row is not None, revoked_at=row.revoked_at if row else None,
                  active=bool(row and row.active))
    assert row is not None
    return _caller(Actor(id=uuid.UUID(claims.sub), kind="user", role=row.role, active=True,
                         line_manager_id=row.line_manager_id, staff_type=row.staff_type, session_id=claims.sid))


def _bad_grant(detail: str = "incorrect email or password") -> Unauthenticated:
    return Unauthenticated(detail, type="invalid-grant")


def _bad_client() -> Unauthenticated:
    return Unauthenticated("invalid client credentials", type="invalid-client")


def _bad_scope(detail: str) -> Invalid:
    return Invalid(detail, type="invalid-scope", rule="scopes", clause="§6.6")


# -- throttling (§6.6) -----------------------------------------------------------------------
#
# Every password check is a row in login_attempts, written before the (slow) hash check as
# ``pending`` and turned into its outcome after it. Two limits are counted from those rows,
# in the database so that every worker and replica agrees:
#
# - per client address: ``login_address_threshold`` wrong passwords from one address (any
#   emails, known or not) within the window throttle that address for ``lockout_minutes``;
# - per email: ``lockout_threshold`` wrong passwords on one email (from anywhere; none since
#   a success or a director's unlock) within the window lock it for ``lockout_minutes``.
#
# The address limit is checked first and is the lower, so no single address can lock an
# account out. An email is keyed the same way whether or not an account has it, so a locked
# account and an unknown email get the same answer after the same work. Only ``failed``
# (a wrong password) counts: correct logins never lock, and a check cut off by a database
# fault stays ``pending``, which counts as in flight for IN_FLIGHT_SECONDS and then not at all.

IN_FLIGHT_SECONDS = 30
_WAIT_SECONDS = 0.05
_WAIT_ROUNDS = 60  # about three seconds of waiting for checks in flight, then 503


def email_key(state: AppState, email: str) -> str:
    """The keyed hash under which attempts on ``email`` are counted (the email is not kept)."""
    key = hashlib.sha256(b"kmm-login-throttle:" + state.settings.signing_key.encode()).digest()
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class _Count:
    until: datetime | None  # locked (or throttled) until then
    busy: bool  # so many checks in flight that one more could pass the limit


async def _count(
    session: AsyncSession, *, where: Any, threshold: int, now: datetime, state: AppState, resets: bool
) -> _Count:
    s = state.settings
    window = timedelta(minutes=s.lockout_window_minutes)
    horizon = now - s.lockout_horizon  # housekeeping keeps every attempt this reads (§6.5)
    failed = select(LoginAttempt.at).where(where, LoginAttempt.outcome == "failed", LoginAttempt.at > horizon)
    if resets:
        last_reset = (
            select(func.coalesce(func.max(LoginAttempt.id), 0))
            .where(where, col(LoginAttempt.outcome).in_(("success", "unlocked")), LoginAttempt.at > horizon)
            .scalar_subquery()
        )
        failed = failed.where(col(LoginAttempt.id) > last_reset)
    failures = list((await session.execute(
        failed.order_by(col(LoginAttempt.id).desc()).limit(threshold))).scalars())
    in_flight = (await session.execute(
        select(func.count()).select_from(LoginAttempt).where(
            where, LoginAttempt.outcome == "pending", LoginAttempt.at > now - timedelta(seconds=IN_FLIGHT_SECONDS))
    )).scalar_one()
    recent = sum(1 for at in failures if at > now - window)
    until = None
    if len(failures) >= threshold and failures[0] - failures[-1] <= window:
        end = failures[0] + timedelta(minutes=s.lockout_minutes)
        until = end if end > now else None
    return _Count(until=until, busy=recent + in_flight >= threshold)


def _too_many(until: datetime, now: datetime, *, rule: str, type: str) -> Locked:
    retry = max(1, math.ceil((until - now).total_seconds()))
    return Locked("too many failed logins; try again later", retry_after=retry, type=type, rule=rule, clause="§6.6")


async def _serialise(session: AsyncSession, state: AppState, *names: str) -> None:
    """Postgres: one check-and-count at a time per address and per email (SQLite's
    BEGIN IMMEDIATE already runs one writing transaction at a time)."""
    if state.settings.is_sqlite:
        return
    for name in names:  # always address first, then email: no two requests wait on each other
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name})


async def begin_password_check(
    session: AsyncSession, *, state: AppState, email: str, address: str | None, now: datetime,
) -> tuple[User | None, LoginAttempt]:
    """Check the throttles, then record a pending attempt (committed) for ``email``.

    A throttled address or a locked email is 429 (audited, counted nowhere); with too many
    checks in flight this waits for them, so concurrent guesses never pass the limits.
    """
    s = state.settings
    email = email.strip().lower()
    key = email_key(state, email)
    address = (address or "unknown")[:64]
    for _ in range(_WAIT_ROUNDS):
        await _serialise(session, state, "kmm-login-address:" + address, "kmm-login-email:" + key)
        user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
        actor = Actor.for_user(user) if user else None
        by_address = await _count(session, where=LoginAttempt.client_address == address,
                                  threshold=s.login_address_threshold, now=now, state=state, resets=False)
        if by_address.until is not None:
            add_event(session, now=now, actor=actor, action="auth.login_throttled", resource_type="user",
                      resource_id=user.id if user else None, decision="deny", rule="login-throttle", clause="§6.6")
            await session.commit()
            raise _too_many(by_address.until, now, rule="login-throttle", type="login-throttled")
        by_email = await _count(session, where=LoginAttempt.email_key == key, threshold=s.lockout_threshold,
                                now=now, state=state, resets=True)
        if by_email.until is not None:
            add_event(session, now=now, actor=actor, action="auth.login_locked", resource_type="user",
                      resource_id=user.id if user else None, decision="deny", rule="lockout", clause="§6.6")
            await session.commit()
            raise _too_many(by_email.until, now, rule="lockout", type="account-locked")
        if by_address.busy or by_email.busy:
            await session.rollback()
            await asyncio.sleep(_WAIT_SECONDS)
            continue
        attempt = LoginAttempt(user_id=user.id if user else None, email_key=key, client_address=address,
                               at=now, outcome="pending")
        session.add(attempt)
        await session.commit()
        return user, attempt
    raise Busy("too many logins in progress; try again shortly", type="login-busy")


async def finish_password_check(
    session: AsyncSession, *, state: AppState, attempt: LoginAttempt, user: User | None, outcome: str,
    now: datetime,
) -> None:
    """Record the attempt's outcome (in the caller's transaction); a wrong password that
    locks the email is audited as the lockout."""
    await session.execute(
        update(LoginAttempt).where(col(LoginAttempt.id) == attempt.id).values(outcome=outcome)
    )
    if outcome != "failed":
        return
    locked = await _count(session, where=LoginAttempt.email_key == attempt.email_key,
                          threshold=state.settings.lockout_threshold, now=now, state=state, resets=True)
    if locked.until is not None:
        add_event(session, now=now, actor=Actor.for_user(user) if user else None, action="auth.lockout",
                  resource_type="user", resource_id=user.id if user else None, decision="deny",
                  rule="lockout", clause="§6.6")


async def _start_session(
    session: AsyncSession, *, state: AppState, now: datetime, user: User | None = None,
    client: ServiceClient | None = None, scopes: frozenset[str] | None = None,
) -> TokenPair:
    auth = AuthSession(user_id=user.id if user else None, client_id=client.id if client else None,
                       created_at=now)
    session.add(auth)
    await session.flush()
    return await _issue(session, state=state, now=now, auth=auth, with_refresh=user is not None,
                        restricted=bool(user and user.must_change_password), scopes=scopes)


async def _issue(
    session: AsyncSession, *, state: AppState, now: datetime, auth: AuthSession, with_refresh: bool,
    restricted: bool = False, scopes: frozenset[str] | None = None,
) -> TokenPair:
    """Tokens for the session; none outlives the session's absolute lifetime. A
    ``restricted`` session (its password must be changed) says so in its tokens; a client's
    token names the ``scopes`` granted (``scp``), which bound what it may do."""
    s = state.settings
    kind = "user" if auth.user_id else "client"
    sub = str(auth.user_id or auth.client_id)
    ends = auth.created_at + s.session_max_age
    extra: dict[str, Any] = {"pwc": True} if restricted else {}
    scope = " ".join(sorted(scopes)) if scopes is not None else ""
    if scopes is not None:
        extra["scp"] = scope
    access_expires = min(now + s.access_token_ttl, ends)
    access = state.tokens.issue(sub=sub, sid=auth.id, typ="access", kind=kind, now=now,
                                expires_at=access_expires, extra=extra or None)
    refresh = None
    if with_refresh:
        rt = RefreshToken(session_id=auth.id, issued_at=now, expires_at=min(now + s.refresh_token_ttl, ends))
        session.add(rt)
        refresh = state.tokens.issue(sub=sub, sid=auth.id, typ="refresh", kind=kind, now=now,
                                     expires_at=rt.expires_at, jti=rt.id, extra=extra or None)
    return TokenPair(access_token=access, refresh_token=refresh,
                     expires_in=max(0, int((access_expires - now).total_seconds())),
                     password_change_required=restricted, scope=scope)


async def login_with_password(
    session: AsyncSession, *, state: AppState, email: str, password: str, now: datetime,
    address: str | None = None, scope: str = "",
) -> TokenPair:
    """The password grant, in two short transactions around the (slow) hash check.

    An account acts under its role and holds no scopes: asking for any is ``invalid-scope``.

    The first checks the throttles and records a pending attempt; the hash check runs in a
    worker thread with no transaction open; the second records the outcome and, for the
    right password of an active account, starts the session.
    """
    if requested_scopes(scope):
        raise _bad_scope("an account holds no scopes: its role decides what it may do; "
                         "scopes are for service clients")
    user, attempt = await begin_password_check(session, state=state, email=email, address=address, now=now)

    ok = await asyncio.to_thread(state.passwords.verify, password, user.password_hash if user else None)

    if user is None or not ok or not user.active:
        former = user is not None and not user.active
        await finish_password_check(session, state=state, attempt=attempt, user=user,
                                    outcome="refused" if ok else "failed", now=now)
        add_event(session, now=now, actor=Actor.for_user(user) if user else None, action="auth.login_failed",
                  resource_type="user", resource_id=user.id if user else None, decision="deny",
                  rule="former" if former else "credentials", clause="§7.2" if former else "§6.6")
        await session.commit()
        raise _bad_grant()
    await finish_password_check(session, state=state, attempt=attempt, user=user, outcome="success", now=now)
    return await start_login(session, state=state, user=user, now=now)


async def start_login(session: AsyncSession, *, state: AppState, user: User, now: datetime) -> TokenPair:
    """The session of an account whose password was checked, with its tokens and its
    ``auth.login`` event (§6.6), committed with whatever the transaction holds."""
    pair = await _start_session(session, state=state, now=now, user=user)
    add_event(session, now=now, actor=Actor.for_user(user), action="auth.login", resource_type="user",
              resource_id=user.id, decision="allow", rule="credentials", clause="§6.6")
    await session.commit()
    return pair


async def login_client(
    session: AsyncSession, *, state: AppState, client_id: str, client_secret: str, now: datetime,
    scope: str = "",
) -> TokenPair:
    """The client-credentials grant: the token holds the scopes asked for (all the client's
    by default); asking for one the client does not hold is ``invalid-scope``."""
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
        raise _bad_client()
    held = frozenset(client.scopes)
    asked = requested_scopes(scope)
    if asked - held:
        add_event(session, now=now, actor=Actor(id=client.id, kind="client", role=None),
                  action="auth.client_login_failed", resource_type="service_client", resource_id=client.id,
                  decision="deny", rule="scopes", clause="§6.6")
        await session.commit()
        raise _bad_scope("the client does not hold every scope asked for")
    pair = await _start_session(session, state=state, now=now, client=client, scopes=asked or held)
    add_event(session, now=now, actor=Actor(id=client.id, kind="client", role=None),
              action="auth.client_login", resource_type="service_client", resource_id=client.id,
              decision="allow", rule="credentials", clause="§6.6")
    await session.commit()
    return pair


async def refresh(
    session: AsyncSession, *, state: AppState, token: str, now: datetime, scope: str = ""
) -> TokenPair:
    """The refresh_token grant: rotate the refresh token; a reused one ends the session."""
    if requested_scopes(scope):
        raise _bad_scope("an account's session holds no scopes")
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
    if now >= auth.created_at + state.settings.session_max_age:
        raise unauthorized("the session has reached its maximum age; log in again")
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
    pair = await _issue(session, state=state, now=now, auth=auth, with_refresh=True,
                        restricted=user.must_change_password)
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


async def end_sessions(
    session: AsyncSession, *, now: datetime, reason: str, user_id: uuid.UUID | None = None,
    client_id: uuid.UUID | None = None, keep: uuid.UUID | None = None,
) -> None:
    """Every live session of one account or one service client ends at once (but ``keep``):
    the tokens it holds fail on their next use (§7.2)."""
    if (user_id is None) == (client_id is None):
        raise ValueError("end_sessions takes an account or a client")
    owner = col(AuthSession.user_id) == user_id if user_id is not None else col(AuthSession.client_id) == client_id
    query = update(AuthSession).where(owner, col(AuthSession.revoked_at).is_(None))
    if keep is not None:
        query = query.where(col(AuthSession.id) != keep)
    await session.execute(query.values(revoked_at=now, revoked_reason=reason))
