"""One module per resource; ROUTERS is the order they are mounted in."""

from app.routers import access_requests as access_requests
from app.routers import audit as audit
from app.routers import auth as auth
from app.routers import breach_reports as breach_reports
from app.routers import compliance as compliance
from app.routers import disclosures as disclosures
from app.routers import emergency_grants as emergency_grants
from app.routers import health as health
from app.routers import records as records
from app.routers import reports as reports
from app.routers import retention as retention
from app.routers import service_clients as service_clients
from app.routers import subjects as subjects
from app.routers import users as users
from app.routers import webhooks as webhooks

# The most used first: a request is matched against the routes in this order, so the
# record routes come before the rest (the order of paths in the OpenAPI document follows;
# the docs explorer lists the tags in TAGS order below). Nothing else lives under /records.
ROUTERS = [
    records.router,
    health.router,
    auth.router,
    users.router,
    service_clients.router,
    subjects.router,
    emergency_grants.router,
    access_requests.router,
    disclosures.router,
    breach_reports.router,
    retention.router,
    compliance.router,
    reports.router,
    audit.router,
    webhooks.router,
]

# How the docs explorer orders the resources.
TAGS = ["operations", "auth", "users", "service clients", "subjects", "records", "emergency grants",
        "access requests", "disclosures", "breach reports", "data protection", "audit", "webhooks"]
