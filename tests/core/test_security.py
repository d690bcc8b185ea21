"""Passwords (argon2 via passlib), tokens (one algorithm, every claim required, the
service clock decides expiry) and signed cursors, without HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt

from app.core.config import Settings
from app.core.errors import Problem
from app.core.pagination import CursorCodec
from app.core.security import InvalidToken, Passwords, Tokens, hash_secret, secrets_equal

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cheap(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(env="test", secrets_file=tmp_path / "s.json", argon2_time_cost=1, argon2_memory_kib=1024)


def test_passwords_hash_with_argon2_and_verify(cheap):
    pw = Passwords(cheap)
    hashed = pw.hash("correct horse battery staple")
    assert hashed.startswith("$argon2id$") and "m=1024,t=1,p=1" in hashed
    assert pw.hash("correct horse battery staple") != hashed  # salted
    assert pw.verify("correct horse battery staple", hashed)
    assert not pw.verify("correct horse battery stapl", hashed)
    assert not pw.verify("anything", None)  # no account: still spends the time, never true
    assert not pw.verify("anything", "not a hash")


def test_production_argon2_settings_are_the_defaults():
    s = Settings()
    assert (s.argon2_time_cost, s.argon2_memory_kib) == (3, 65536)


def test_client_secrets_are_hashed_and_compared_in_constant_time():
    assert hash_secret("abc") == hash_secret("abc") != hash_secret("abd")
    assert len(hash_secret("abc")) == 64 and "abc" not in hash_secret("abc")
    assert secrets_equal("x", "x") and not secrets_equal("x", "y")


def _issue(tokens: Tokens, typ: str = "access", *, ttl: timedelta = timedelta(minutes=15)) -> str:
    return tokens.issue(sub=str(uuid.uuid4()), sid=uuid.uuid4(), typ=typ, kind="user",  # type: ignore[arg-type]
                        now=NOW, expires_at=NOW + ttl)


def test_tokens_round_trip(cheap):
    tokens = Tokens(cheap)
    claims = tokens.decode(_issue(tokens), expected="access", now=NOW)
    assert claims.typ == "access" and claims.kind == "user"
    assert claims.exp == int((NOW + timedelta(minutes=15)).timestamp())


def test_expiry_follows_the_given_clock(cheap):
    tokens = Tokens(cheap)
    token = _issue(tokens)
    tokens.decode(token, expected="access", now=NOW + timedelta(minutes=14, seconds=59))
    with pytest.raises(InvalidToken, match="expired"):
        tokens.decode(token, expected="access", now=NOW + timedelta(minutes=15))


def test_types_are_not_interchangeable(cheap):
    tokens = Tokens(cheap)
    with pytest.raises(InvalidToken):
        tokens.decode(_issue(tokens, "refresh"), expected="access", now=NOW)
    with pytest.raises(InvalidToken):
        tokens.decode(_issue(tokens, "access"), expected="refresh", now=NOW)


def test_a_token_from_another_deployment_is_refused(cheap, tmp_path):
    other = Tokens(Settings(env="test", secrets_file=tmp_path / "other.json"))
    with pytest.raises(InvalidToken):
        Tokens(cheap).decode(_issue(other), expected="access", now=NOW)


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti", "typ", "sid", "iss"])
def test_every_claim_is_required(cheap, claim):
    tokens = Tokens(cheap)
    claims = jwt.get_unverified_claims(_issue(tokens))
    del claims[claim]
    forged = jwt.encode(claims, cheap.signing_key, algorithm="HS256")
    with pytest.raises(InvalidToken):
        tokens.decode(forged, expected="access", now=NOW)


def test_a_non_integer_expiry_is_refused(cheap):
    tokens = Tokens(cheap)
    claims = jwt.get_unverified_claims(_issue(tokens))
    forged = jwt.encode(dict(claims, exp=str(claims["exp"])), cheap.signing_key, algorithm="HS256")
    with pytest.raises(InvalidToken):
        tokens.decode(forged, expected="access", now=NOW)


def test_cursors_round_trip_and_refuse_forgery(cheap):
    codec = CursorCodec(cheap.signing_key)
    cursor = codec.encode("users", ["b@x.org", 3])
    assert codec.decode("users", cursor) == ["b@x.org", 3]
    body, mac = cursor.split(".")
    forged_body = CursorCodec("another key").encode("users", ["a@x.org"]).split(".")[0]
    for bad in (f"{forged_body}.{mac}", f"{body}.", "x", "", "a.b.c", cursor + "x"):
        with pytest.raises(Problem) as err:
            codec.decode("users", bad)
        assert err.value.status == 400
    with pytest.raises(Problem):
        codec.decode("service-clients", cursor)  # a cursor is only good for its own list
