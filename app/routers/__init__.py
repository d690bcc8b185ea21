"""One module per resource; ROUTERS is the order they are mounted in."""

from app.routers import access_requests, auth, emergency_grants, health, records, service_clients, subjects, users

ROUTERS = [
    health.router,
    auth.router,
    users.router,
    service_clients.router,
    subjects.router,
    records.router,
    emergency_grants.router,
    access_requests.router,
]
