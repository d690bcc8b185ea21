"""One module per resource; ROUTERS is the order they are mounted in."""

from app.routers import (
    auth,
    data_protection,
    emergency_grants,
    health,
    record_lifecycle,
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
    record_lifecycle.router,
    data_protection.router,
]
