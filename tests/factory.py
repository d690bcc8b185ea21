"""Builders for test data, one of each: accounts (straight into the database, fast) and
logins; subjects, records, shares, named access and emergency grants through the API.

A new account is logged in by the service's own session code (``auth.start_login``:
the session, its tokens and its ``auth.login`` event), skipping the password grant's
throttle and hash check; ``login`` is the password grant itself, through POST /auth/token.

Every builder but ``user`` takes keywords only: ``by`` is the person acting, the other
keywords are the request's fields (defaults below, any of them overridable). A builder
asserts the API said yes (201) and returns the response body."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from app.core.state import AppState
from app.models.users import User, UserCreate
from app.workflows import auth, users

PASSWORD = "correct horse battery staple"

# The purpose a record of each classification gets unless a test names one.
DEFAULT_PURPOSE = {"personnel": "personnel_administration"}


@dataclass
class Person:
    user: User
    headers: dict[str, str]
    refresh_token: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email


def _id(thing: Any) -> str:
    """An id from a Person, a response body (``{"id": ...}``), a UUID or a string."""
    if isinstance(thing, Person):
        return str(thing.id)
    if isinstance(thing, dict):
        return str(thing["id"])
    return str(thing)


def _unique() -> str:
    return uuid.uuid4().hex[:6]


def _hold(person: Person, access_token: str, refresh_token: str | None) -> None:
    person.headers = {"Authorization": f"Bearer {access_token}"}
    person.refresh_token = refresh_token


@dataclass
class Factory:
    client: httpx.AsyncClient
    state: AppState
    _n: int = field(default=0)

    # -- accounts ----------------------------------------------------------------------

    async def user(
        self,
        role: str = "colleague",
        *,
        manager: Person | User | None = None,
        staff_type: str | None = "employee",
        name: str | None = None,
        login: bool = True,
    ) -> Person:
        self._n += 1
        email = f"{role}{self._n}-{_unique()}@test.kmm"
        manager_id = manager.id if manager is not None else None
        async with self.state.sessionmaker() as session:
            user = await users.create_user(
                session,
                data=UserCreate(email=email, full_name=name or f"{role.title()} {self._n}",
                                role=role, staff_type=staff_type if role != "trustee" else None,
                                line_manager_id=manager_id, password=PASSWORD),
                passwords=self.state.passwords,
                now=self.state.clock.now(),
                actor=None,
            )
            person = Person(user=user, headers={})
            if login:
                pair = await auth.start_login(session, state=self.state, user=user, now=self.state.clock.now())
                _hold(person, pair.access_token, pair.refresh_token)
        return person

    async def login(self, person: Person, password: str = PASSWORD) -> httpx.Response:
        """The password grant: POST /auth/token; on 200 ``person`` holds the new tokens."""
        r = await self.client.post("/auth/token", data={"username": person.email, "password": password})
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            _hold(person, body["access_token"], body.get("refresh_token"))
        return r

    async def service_client(self, *, by: Person, scopes: list[str], name: str | None = None) -> dict[str, str]:
        """POST /service-clients, then a client-credentials login: the new client's auth headers."""
        made = await self._created("/service-clients", by, {"name": name or f"system-{_unique()}", "scopes": scopes})
        r = await self.client.post("/auth/token", data={"grant_type": "client_credentials",
                                                        "client_id": made["client_id"],
                                                        "client_secret": made["client_secret"]})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    # -- subjects and records ----------------------------------------------------------

    async def _created(self, path: str, by: Person, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(path, json=body, headers=by.headers)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def subject(self, *, by: Person, **fields: Any) -> dict[str, Any]:
        """POST /subjects: an individual service user unless ``fields`` say otherwise."""
        body = {"kind": "individual", "name": f"Subject {_unique()}", "category": "service_user", **fields}
        return await self._created("/subjects", by, body)

    async def employee_subject(self, *, by: Person, employee: Person, **fields: Any) -> dict[str, Any]:
        """POST /subjects: the subject of ``employee``'s personnel file."""
        body = {"name": employee.user.full_name, "category": "employee", "user_id": str(employee.id), **fields}
        return await self.subject(by=by, **body)

    async def record(self, *, by: Person, subject: Any, classification: str = "confidential",
                     **fields: Any) -> dict[str, Any]:
        """POST /records about ``subject`` (a body or an id). A sensitive record names its
        subject as the one who may request it, and a personnel record's purpose is personnel
        administration, unless ``fields`` say otherwise."""
        subject_id = _id(subject)
        body: dict[str, Any] = {
            "subject_id": subject_id, "title": f"Title {_unique()}", "content": "content",
            "classification": classification,
            "purpose": DEFAULT_PURPOSE.get(classification, "service_delivery"), **fields,
        }
        if classification == "sensitive":
            body.setdefault("access_requester_id", subject_id)
        return await self._created("/records", by, body)

    # -- access to a record -------------------------------------------------------------

    async def share(self, *, by: Person, record: Any, to: Any, reason: str = "cover") -> dict[str, Any]:
        """POST /records/{id}/shares (§3.1)."""
        return await self._created(f"/records/{_id(record)}/shares", by, {"user_id": _id(to), "reason": reason})

    async def named(self, *, by: Person, record: Any, to: Any, consent_reference: str = "form 7") -> dict[str, Any]:
        """POST /records/{id}/named-access (§3.2)."""
        return await self._created(f"/records/{_id(record)}/named-access", by,
                                   {"user_id": _id(to), "consent_reference": consent_reference})

    async def breach_org(self) -> dict[str, Person]:
        """For breach-report tests: boss and other, directors (boss made first, so routing to a
        director picks him); carol, a colleague, manages bob; alice reports."""
        boss = await self.user("director")
        self.state.clock.advance(seconds=1)
        other = await self.user("director")
        carol = await self.user("colleague", manager=other)
        bob = await self.user("colleague", manager=carol)
        alice = await self.user("colleague", manager=other)
        return {"boss": boss, "other": other, "carol": carol, "bob": bob, "alice": alice}

    async def breach_report(self, *, by: Person, about: Person, description: str, evidence: str | None = None,
                            kind: str = "colleague_conduct") -> str:
        """POST /breach-reports about ``about``: the new report's id."""
        body = {"kind": kind, "concerned_user_id": str(about.id), "description": description}
        if evidence is not None:
            body["evidence"] = evidence
        return str((await self._created("/breach-reports", by, body))["id"])

    async def grant(self, *, by: Person, to: Any, record: Any = None, subject: Any = None,
                    expires_in: timedelta = timedelta(hours=2), reason: str = "crisis call") -> dict[str, Any]:
        """POST /emergency-grants (§4.5) over one record or every record of a subject."""
        body: dict[str, Any] = {"grantee_id": _id(to), "reason": reason,
                                "expires_at": (self.state.clock.now() + expires_in).isoformat()}
        if record is not None:
            body["record_id"] = _id(record)
        if subject is not None:
            body["subject_id"] = _id(subject)
        return await self._created("/emergency-grants", by, body)
