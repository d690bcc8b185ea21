"""The director's compliance summary (DESIGN §5, "Data protection").

Each check is one SQL query returning the ids of what needs attention. Workflows
contribute their checks in ``checks()`` below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.workflows import access_requests

# (session, now, settings) -> ids needing attention
Check = Callable[[AsyncSession, datetime, Settings], Awaitable[list[str]]]


def checks() -> dict[str, Check]:
    """Name -> check, in the order the summary lists them."""
    found: dict[str, Check] = {}
    found["access_requests_overdue"] = access_requests.overdue_ids
    return found
