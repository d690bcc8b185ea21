"""Passwords (passlib argon2) and tokens (python-jose, exactly one algorithm)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from jose import JWTError, jwt
from passlib.context import CryptContext

from app.core.config import Settings

TokenType = Literal["access", "refresh"]
REQUIRED_CLAIMS = ("exp", "iat", "sub", "jti", "typ", "sid")
# The service's own tokens are a few hundred characters; anything far longer is refused unread.
MAX_TOKEN_LENGTH = 8192


class InvalidToken(Exception):
    """A token that must not be accepted; the message is safe to return."""


@lru_cache(maxsize=4)
def _context(time_cost: int, memory_kib: int) -> CryptContext:
    return CryptContext(
        schemes=["argon2"],
        argon2__time_cost=time_cost,
        argon2__memory_cost=memory_kib,
        argon2__parallelism=1,
    )


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _context(time_cost, memory_kib).hash(secrets.token_urlsafe(16))


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._args = (settings.argon2_time_cost, settings.argon2_memory_kib)
        self._ctx = _context(*self._args)

    def hash(self, password: str) -> str:
        return self._ctx.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        """Verify; with no account (``hashed is None``) still spend the same time."""
        if hashed is None:
            self._ctx.verify(password, _dummy_hash(*self._args))
            return False
        try:
            return bool(self._ctx.verify(password, hashed))
        except (ValueError, TypeError):
            return False


def hash_secret(secret: str) -> str:
    """For high-entropy random secrets (client secrets): SHA-256 is enough and fast."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    sid: uuid.UUID
    jti: uuid.UUID
    typ: TokenType
    exp: int
    kind: str  # "user" or "client"
    # The account's password must be changed (a director reset it): the session may only
    # change it, read /users/me and log out.
    password_change_required: bool = False
    # A service client's token: the scopes granted at login (``scp``), a subset of those the
    # client holds; None for an account's token (or a client token without the claim).
    scopes: frozenset[str] | None = None


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.signing_key
        self._alg = settings.jwt_algorithm
        self._iss = settings.jwt_issuer
        # Per instance (so per key): a verified token is not verified again.
        self._verify_cached = lru_cache(maxsize=4096)(self._verify)

    def cached(self) -> int:
        """How many verified tokens the signature cache holds."""
        return self._verify_cached.cache_info().currsize

    def issue(
        self,
        *,
        sub: str,
        sid: uuid.UUID,
        typ: TokenType,
        kind: str,
        now: datetime,
        expires_at: datetime,
        jti: uuid.UUID | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self._iss,
            "sub": sub,
            "sid": str(sid),
            "jti": str(jti or uuid.uuid4()),
            "typ": typ,
            "knd": kind,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        if extra:
            claims.update(extra)
        return jwt.encode(claims, self._key, algorithm=self._alg)

    def decode(self, token: str, *, expected: TokenType, now: datetime) -> TokenClaims:
        """Verify a token and check its type and expiry against the service clock.

        A token longer than ``MAX_TOKEN_LENGTH`` is refused unread. The signature check is
        cached per token string for verified tokens only (bounded): a token presented again
        is not re-verified, but its type and expiry are checked on every call, and whether
        its session and account are still live is the caller's query. A refused token is
        never cached, and each refusal is a new error: an error kept and raised again would
        grow its traceback (and hold every request's frames) on every raise.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        claims = self._verify_cached(token)  # raises InvalidToken; lru_cache keeps no failure
        if claims.typ != expected:
            raise InvalidToken(f"not an {expected} token" if expected == "access" else "wrong token type")
        if claims.exp <= int(now.timestamp()):
            raise InvalidToken("token expired")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        """The signature and shape of a token: its claims, or InvalidToken saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != self._alg:
            raise InvalidToken("unexpected signing algorithm")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._alg],
                issuer=self._iss,
                options={
                    "verify_aud": False,
                    "require_exp": True,
                    "require_iat": True,
                    "require_sub": True,
                    "require_jti": True,
                    # expiry is checked by decode() against the service clock
                    "verify_exp": False,
                },
            )
        except JWTError:
            raise InvalidToken("invalid token") from None
        if any(c not in claims for c in REQUIRED_CLAIMS):
            raise InvalidToken("token lacks required claims")
        if claims["typ"] not in ("access", "refresh") or not isinstance(claims["exp"], int):
            raise InvalidToken("invalid token claims")
        try:
            return TokenClaims(
                sub=str(claims["sub"]),
                sid=uuid.UUID(str(claims["sid"])),
                jti=uuid.UUID(str(claims["jti"])),
                typ=claims["typ"],
                exp=claims["exp"],
                kind=str(claims.get("knd", "user")),
                password_change_required=claims.get("pwc") is True,
                scopes=frozenset(claims["scp"].split()) if isinstance(claims.get("scp"), str) else None,
            )
        except ValueError:
            raise InvalidToken("invalid token claims") from None
