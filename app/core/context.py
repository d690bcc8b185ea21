"""Per-request context (request id, client address, the caller once known) for logs and audit events."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.policy.actor import Actor

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
# The account or service client the request's token names, once its session is checked: an
# error raised later in the request (an integrity failure, §6.6) is audited as theirs.
actor_var: ContextVar[Actor | None] = ContextVar("actor", default=None)
