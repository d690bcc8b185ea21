"""Who is asking: an account or a service client, as the policy sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.models.users import User


@dataclass(frozen=True, slots=True)
class Actor:
    id: uuid.UUID
    kind: Literal["user", "client"]
    role: str | None  # colleague / director / trustee; None for a service client
    active: bool = True
    line_manager_id: uuid.UUID | None = None
    staff_type: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: uuid.UUID | None = None

    @classmethod
    def for_user(cls, user: User, *, session_id: uuid.UUID | None = None) -> Actor:
        return cls(id=user.id, kind="user", role=user.role, active=user.active,
                   line_manager_id=user.line_manager_id, staff_type=user.staff_type, session_id=session_id)

    @property
    def is_director(self) -> bool:
        return self.kind == "user" and self.role == "director"

    @property
    def is_staff(self) -> bool:
        """Colleagues and directors; trustees and service clients are not staff."""
        return self.kind == "user" and self.role in ("colleague", "director")

    @property
    def audit_role(self) -> str:
        return self.role if self.kind == "user" and self.role else "service_client"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
