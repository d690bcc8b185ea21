"""Builders for test data: accounts (straight into the database, fast) and logins."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.core.state import AppState
from app.models.accounts import User, UserCreate
from app.workflows import accounts

PASSWORD = "correct horse battery staple"


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


@dataclass
class Factory:
    client: httpx.AsyncClient
    state: AppState
    _n: int = field(default=0)

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
        email = f"{role}{self._n}-{uuid.uuid4().hex[:6]}@test.kmm"
        manager_id = manager.id if manager is not None else None
        async with self.state.sessionmaker() as session:
            user = await accounts.create_user(
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
            await self.login(person)
        return person

    async def login(self, person: Person, password: str = PASSWORD) -> httpx.Response:
        r = await self.client.post("/auth/token", data={"username": person.email, "password": password})
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            person.headers = {"Authorization": f"Bearer {body['access_token']}"}
            person.refresh_token = body.get("refresh_token")
        return r
