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
    from app.workflows import breach_reports, disclosures

    found: dict[str, Check] = {}
    found["access_requests_overdue"] = access_requests.overdue_ids
    found["disclosures_subject_not_informed"] = disclosures.subject_not_informed
    found["complaints_without_procedure_advised"] = breach_reports.complaints_without_procedure_advised
    found["breach_reports_open_too_long"] = breach_reports.open_too_long
    return found
