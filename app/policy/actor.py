"""Who is asking: an account or a service client, as the policy sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal


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
