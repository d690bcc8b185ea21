"""One pure-ASGI middleware for what every request needs.

It sets the request id (and echoes it as ``X-Request-ID``; one that is not 1-64 of
``[A-Za-z0-9._-]`` is replaced by a generated one) and the client address (the peer's,
or the one a trusted proxy forwarded, see app/serving.py; kept only when it parses as
an IP address, in its normal form), enforces the body-size
limit (413 problem+json), adds the security headers and, unless a response says
otherwise, ``Cache-Control: no-store`` with ``Pragma: no-cache`` (tokens, RFC 6749 §5.1,
and anything about people: only what holds nothing personal opts out), counts metrics, writes one access
log line, and turns any exception that escaped the routers into a 500 problem+json
with no internals. Pure ASGI keeps it cheap on the hot path.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import time
import uuid

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.context import actor_var, client_ip_var, request_id_var
from app.core.errors import PROBLEM_JSON, problem_body

log = logging.getLogger("kmm.access")

REQUESTS = Counter("kmm_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("kmm_http_request_seconds", "HTTP request latency", ["method", "route"])

_VALID_RID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_CSP_API = "default-src 'none'; frame-ancestors 'none'"
# The docs explorer (app/routers/docs.py) is served from this origin alone: its scripts are
# files, never inline. Swagger UI sets style attributes, and shows data: images.
_CSP_DOCS = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@functools.lru_cache(maxsize=1024)
def _parse_ip(host: str) -> str | None:
    try:
        parsed = str(ipaddress.ip_address(host))
    except ValueError:
        return None
    return parsed if len(parsed) <= 64 else None


def client_address(scope: Scope) -> str | None:
    """The client's IP address in normal form, or None when what the scope holds is not one."""
    client = scope.get("client")
    host = client[0] if client else None
    if not isinstance(host, str) or not host or len(host) > 64:
        return None
    return _parse_ip(host)


class BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit.

    An HTTPException, so FastAPI passes it through its body parsing unchanged (any other
    exception there becomes a 400) and the error handlers answer 413 problem+json.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds {limit} bytes")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        rid = None
        content_length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_RID.match(candidate):
                    rid = candidate
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
        rid = rid or uuid.uuid4().hex
        request_id_var.set(rid)
        client_ip_var.set(client_address(scope))
        actor_var.set(None)
        path: str = scope["path"]
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        csp = _CSP_DOCS if path == "/docs" or path.startswith("/docs/") else _CSP_API
        extra_headers = [
            (b"x-request-id", rid.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", csp.encode()),
        ]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers, cache_control, pragma = [], None, False
                for k, v in message.get("headers", []):
                    name = k.lower()
                    if name == b"server":
                        continue
                    if name == b"cache-control":
                        cache_control = v
                    elif name == b"pragma":
                        pragma = True
                    headers.append((k, v))
                if cache_control is None:
                    headers += _NO_STORE
                elif not pragma and b"no-store" in cache_control:
                    headers.append(_NO_STORE[1])
                message["headers"] = headers + extra_headers
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            if content_length is not None and content_length > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if not status_holder["started"]:
                await self._problem(send_wrapper, 413, f"the body exceeds {self.max_body_bytes} bytes",
                                    "payload-too-large")
        except Exception as exc:  # the last line of defence: never leak internals
            log.error("unhandled error", extra={"error": type(exc).__name__}, exc_info=exc)
            if not status_holder["started"]:
                await self._problem(send_wrapper, 500, "an unexpected error occurred", "internal-error")
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], route_path, str(status_holder["status"])).inc()
            LATENCY.labels(scope["method"], route_path).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route_path,
                    "status": status_holder["status"],
                    "ms": round(elapsed * 1000, 2),
                },
            )

    @staticmethod
    async def _problem(send: Send, status: int, detail: str, type_: str) -> None:
        raw = json.dumps(problem_body(status, detail, type=type_)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
