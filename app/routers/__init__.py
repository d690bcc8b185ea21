"""One module per resource; ROUTERS is the order they are mounted in."""

from app.routers import (
    auth,
    breach_reports,
    disclosures,
    emergency_grants,
    health,
    records,
    service_clients,
    subjects,
    users,
)

ROUTERS = [
    health.router,
    auth.router,
    users.router,
    service_clients.router,
    subjects.router,
    records.router,
    emergency_grants.router,
    disclosures.router, breach_reports.router,
]
