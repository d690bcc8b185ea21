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
from app.core.security import MAX_TOKEN_LENGTH, InvalidToken, Passwords, Tokens, hash_secret, secrets_equal

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


# -- refused tokens cost nothing lasting ---------------------------------------------------


def _refusal(tokens: Tokens, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as err:
        tokens.decode(token, expected="access", now=NOW)
    return err.value


def _depth(exc: BaseException) -> int:
    tb, n = exc.__traceback__, 0
    while tb is not None:
        tb, n = tb.tb_next, n + 1
    return n


def test_each_refusal_is_a_fresh_error_with_a_traceback_that_does_not_grow(cheap, tmp_path):
    tokens = Tokens(cheap)
    forged = _issue(Tokens(Settings(env="test", secrets_file=tmp_path / "other.json")))
    first, second = _refusal(tokens, forged), _refusal(tokens, forged)
    for _ in range(20):
        last = _refusal(tokens, forged)
    assert first is not second and second is not last
    assert _depth(last) == _depth(first) <= 3
    assert str(last) == "invalid token"


def test_only_verified_tokens_are_cached(cheap, tmp_path):
    tokens = Tokens(cheap)
    forged = _issue(Tokens(Settings(env="test", secrets_file=tmp_path / "other.json")))
    for bad in (forged, "not-a-token", "a.b.c", forged + "x"):
        _refusal(tokens, bad)
    assert tokens.cached() == 0
    good = _issue(tokens)
    tokens.decode(good, expected="access", now=NOW)
    tokens.decode(good, expected="access", now=NOW)
    assert tokens.cached() == 1


def test_a_token_longer_than_the_limit_is_refused_before_decoding(cheap, monkeypatch):
    tokens = Tokens(cheap)
    good = _issue(tokens)
    assert len(good) < MAX_TOKEN_LENGTH
    # a genuine signature with padding claims past the limit is still refused, unread
    huge = tokens.issue(sub=str(uuid.uuid4()), sid=uuid.uuid4(), typ="access", kind="user", now=NOW,
                        expires_at=NOW + timedelta(minutes=15), extra={"pad": "x" * MAX_TOKEN_LENGTH})
    monkeypatch.setattr(jwt, "get_unverified_header", lambda _: pytest.fail("decoded an oversized token"))
    for bad in (huge, "A" * (1024 * 1024)):
        assert str(_refusal(tokens, bad)) == "token too long"
    assert tokens.cached() == 0
