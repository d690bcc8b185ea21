"""One module per resource; ROUTERS is the order they are mounted in."""

from app.routers import audit, auth, health, service_clients, users

ROUTERS = [
    health.router,
    auth.router,
    users.router,
    service_clients.router,
    audit.router,
]
