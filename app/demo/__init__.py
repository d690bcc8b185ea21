"""`kmm seed-demo`: a small demo organisation to try the rules from the docs explorer.

The accounts are made here; records (records.py), access requests (access_requests.py)
and cases (cases.py) follow, each step through the service's own workflows.

Idempotent: a second run changes nothing and prints the same logins. Demo passwords
are random, kept in a git-ignored local file beside the secrets, never in the repo.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from app.core import progress
from app.core.files import read_private, write_private
from app.core.state import AppState
from app.models.users import Role, StaffType, User, UserCreate
from app.workflows.users import create_user

DEMO_DOMAIN = "demo.kmm.org.uk"


@dataclass(frozen=True)
class DemoLogin:
    key: str
    email: str
    role: str
    password: str
    note: str


# key, name, role, staff_type, line manager key, note
_C, _D, _T = Role.colleague, Role.director, Role.trustee
_E, _V, _I = StaffType.employee, StaffType.volunteer, StaffType.intern
PEOPLE: list[tuple[str, str, Role, StaffType | None, str | None, str]] = [
    ("director", "Dana Director", _D, _E, None, "the Director (§3.4, §4.5)"),
    ("manager.a", "Amir Manager", _C, _E, "director", "line manager of Alice and Ben"),
    ("manager.b", "Bea Manager", _C, _E, "director", "line manager of Cai and Dev"),
    ("alice", "Alice Employee", _C, _E, "manager.a", "employee under Amir"),
    ("ben", "Ben Volunteer", _C, _V, "manager.a", "volunteer under Amir"),
    ("cai", "Cai Intern", _C, _I, "manager.b", "intern under Bea"),
    ("dev", "Dev Employee", _C, _E, "manager.b", "employee under Bea"),
    ("trustee", "Tess Trustee", _T, None, None, "a trustee: reads what is passed to her"),
]


def _logins_file(state: AppState) -> Path:
    return state.settings.secrets_file.with_name(".kmm-demo-logins.json")


def email_for(key: str) -> str:
    return f"{key}@{DEMO_DOMAIN}"


async def seed_accounts(state: AppState) -> dict[str, User]:
    path = _logins_file(state)
    passwords: dict[str, str] = json.loads(read_private(path) or "{}")
    users: dict[str, User] = {}
    now = state.clock.now()
    async with state.sessionmaker() as session:
        for key, name, role, staff_type, manager, _ in PEOPLE:
            existing = (
                await session.execute(select(User).where(User.email == email_for(key)))
            ).scalar_one_or_none()
            if existing is not None:
                users[key] = existing
                continue
            passwords[key] = passwords.get(key) or secrets.token_urlsafe(12)
            users[key] = await create_user(
                session,
                data=UserCreate(email=email_for(key), full_name=name, role=role,
                                staff_type=staff_type,
                                line_manager_id=users[manager].id if manager else None,
                                password=passwords[key]),
                passwords=state.passwords, now=now, actor=None,
            )
    write_private(path, json.dumps(passwords, indent=2))
    return users


def _steps() -> list:  # type: ignore[type-arg]
    """Seed steps after the accounts, in order; each takes (state, users) and is idempotent."""
    from app.demo.access_requests import seed_access_requests
    from app.demo.cases import seed_cases
    from app.demo.records import seed_records

    return [seed_records, seed_access_requests, seed_cases]


async def seed_demo(state: AppState) -> list[DemoLogin]:
    steps = _steps()
    progress.set_total(1 + len(steps))
    users = await seed_accounts(state)
    progress.advance()
    for step in steps:
        await step(state, users)
        progress.advance()
    passwords = json.loads(_logins_file(state).read_text())
    return [
        DemoLogin(key, email_for(key), role, passwords.get(key, "(set before; see your notes)"), note)
        for key, _, role, _, _, note in PEOPLE
    ]


def describe_logins(logins: list[DemoLogin]) -> str:
    lines = ["Demo logins (use Authorize in /docs: username = email):"]
    for login in logins:
        lines.append(f"  {login.role:<10} {login.email:<32} {login.password:<20} {login.note}")
    return "\n".join(lines)
