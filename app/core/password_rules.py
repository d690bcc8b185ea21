"""Which passwords may be set (§6.6 "kept secure", following NIST SP 800-63B §3.1.1.2).

A password needs at least ``MIN_PASSWORD`` characters (12; counted after Unicode NFKC
normalisation, spaces included) and is refused when it is only whitespace, one of the
10,000 most common passwords (``app/common_passwords.txt``), such a password with digits or
symbols added, a repeated pattern, the name of this service, or the account's email address
or name. There are no composition rules (no "one digit, one capital"), as NIST advises.
Every message names the rule, never the password.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib import resources

from app.core.errors import field_error
from app.models.users import MIN_PASSWORD

SERVICE_WORDS = frozenset({
    "kmm", "kmmrecords", "kmmservices", "kmmservicescoltd", "confidential", "confidentiality",
    "confidentialrecords", "kmmconfidential", "records", "recordsservice",
})


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("app").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _letters(text: str) -> str:
    return "".join(ch for ch in text if ch.isalpha())


def _is_repeated(text: str) -> bool:
    """One unit repeated ("abcabcabc…"), or hardly any distinct characters ("aaaabbbb…")."""
    return (text + text).find(text, 1) != len(text) or len(set(text)) < 4


def password_problem(password: str, *, email: str | None = None, full_name: str | None = None) -> str | None:
    """Why ``password`` may not be set, or None when it may."""
    normal = unicodedata.normalize("NFKC", password)
    if len(normal) < MIN_PASSWORD:
        return f"must be at least {MIN_PASSWORD} characters"
    if not normal.strip():
        return "must not be only spaces"
    folded = normal.casefold()
    common = common_passwords()
    if folded in common or folded.strip() in common:
        return "is one of the most common passwords"
    letters = _letters(folded)
    if letters in SERVICE_WORDS:
        return "names this service"
    context = set()
    if email:
        context |= {email.casefold(), _letters(email.casefold()), _letters(email.casefold().partition("@")[0])}
    if full_name:
        context |= {full_name.casefold(), _letters(full_name.casefold())}
    if folded in context or (len(letters) >= 4 and letters in context):
        return "must not be the account's email address or name"
    if letters and letters in common:
        return "is a common password with digits or symbols added"
    if _is_repeated(folded):
        return "is a repeated pattern"
    return None


def check_new_password(
    password: str, *, field: str = "password", email: str | None = None, full_name: str | None = None,
    current: str | None = None,
) -> None:
    """Raise a 422 naming ``field`` when ``password`` may not be set."""
    if current is not None and password == current:
        raise field_error(field, "must differ from the current password")
    problem = password_problem(password, email=email, full_name=full_name)
    if problem is not None:
        raise field_error(field, problem)
