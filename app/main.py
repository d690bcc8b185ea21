"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.core.clock import Clock
from app.core.config import Settings, get_settings
from app.core.context import actor_var
from app.core.encrypted import IntegrityFailure
from app.core.errors import install_error_handlers, problem_of
from app.core.logging import configure_logging
from app.core.middleware import RequestMiddleware
from app.core.routing import LiteralPaths, RouteTable
from app.core.state import AppState
from app.routers import ROUTERS, TAGS, docs, operations
from app.routers.responses import document_common_problems
from app.workflows.audit.trail import integrity_event

log = logging.getLogger("kmm.audit")

DESCRIPTION = """
KMM's confidentiality policy as a service. Every decision about a record names the
rule and the clause of the policy that made it. Log in with **Authorize** (a demo
login is printed by `make run`).
"""


def create_app(settings: Settings | None = None, *, clock: Clock | None = None,
               configure_logs: bool = True) -> FastAPI:
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings.log_level, json_lines=settings.logs_as_json)
    state = AppState.build(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app.workflows import background
        from app.workflows.key_rotation import verify_master_keys

        await verify_master_keys(state)  # wrong master keys: refuse to start (§6.6)
        tasks = background.start(state)
        try:
            yield
        finally:
            await background.stop(tasks)
            await state.rows.close()
            await state.engine.dispose()

    app = FastAPI(
        title="KMM Confidential Records Service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # No persistAuthorization: it would keep the docs explorer's username, password, client
        # secret and refresh token in the browser's localStorage. A login lasts as long as the page.
        openapi_tags=[{"name": tag} for tag in TAGS],
        # Stable dotted operationIds (records.read) for generated clients: app/routers/operations.py.
        generate_unique_id_function=operations.unique_id,
        # The docs explorer is served from local files (app/routers/docs.py), never a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.kmm = state

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = operations.annotate(document_common_problems(FastAPI.openapi(app)))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_exception_handler(IntegrityFailure, _audit_integrity_failure)  # type: ignore[arg-type]
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(docs.router)
    if settings.bench_endpoints:
        import importlib

        app.include_router(importlib.import_module("app.routers.bench").router)
    app.state.routes = routes = RouteTable.of(app.router.routes)
    app.add_middleware(LiteralPaths, table=routes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "X-Reason", "X-Request-ID"],
            expose_headers=["ETag", "X-Request-ID", "X-Confidentiality"],
        )
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


async def _audit_integrity_failure(request: Request, exc: IntegrityFailure) -> JSONResponse:
    """A stored value that fails its integrity check is refused (409) and audited (§6.6), as
    the caller's if the request got that far; the request's own transaction has rolled back,
    so the event goes by the group-commit writer."""
    state: AppState = request.app.state.kmm
    try:
        await state.audit.write(integrity_event(exc, now=state.clock.now(), actor=actor_var.get()))
    except Exception as err:  # the refusal stands; the failure to record it is logged
        log.error("an integrity failure could not be audited", extra={"error": type(err).__name__})
    return problem_of(exc)
