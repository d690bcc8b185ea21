"""Which methods a path supports, where Starlette's first-match routing is not the contract's.

- A literal path is its own resource: ``/users/me`` is never a value of ``/users/{user_id}``,
  whatever the method (so ``PATCH /users/me`` is a 405, not a 422 about a malformed id).
- A 405 lists in ``Allow`` every method the path supports, not only those of the first route
  that matched it (RFC 9110 §15.5.6).

``RouteTable`` is built once from the application's routes; ``LiteralPaths`` answers a
literal path's unsupported method before routing, at the cost of one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass
class RouteTable:
    literal: dict[str, frozenset[str]] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], frozenset[str]]] = field(default_factory=list)

    @classmethod
    def of(cls, routes: Sequence[BaseRoute]) -> RouteTable:
        literal: dict[str, set[str]] = {}
        patterns: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for route in iter_route_contexts(routes):
            regex: re.Pattern[str] | None = getattr(route, "path_regex", None)
            methods = route.methods
            if regex is None or not methods or route.path is None:
                continue
            if getattr(route, "param_convertors", None):
                patterns.append((regex, frozenset(methods)))
            else:
                literal.setdefault(route.path, set()).update(methods)
        return cls({path: frozenset(m) for path, m in literal.items()}, patterns)

    def allowed(self, path: str) -> frozenset[str]:
        """Every method served at ``path``: a literal path's own, else every pattern's that matches."""
        own = self.literal.get(path)
        if own is not None:
            return own
        methods: set[str] = set()
        for regex, served in self.patterns:
            if regex.match(path):
                methods |= served
        return frozenset(methods)


def allow_header(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods))


class LiteralPaths:
    """A method a literal path does not serve is a 405 there, before a pattern can claim the path."""

    def __init__(self, app: ASGIApp, table: RouteTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            own = self.table.literal.get(scope["path"])
            if own is not None and scope["method"] not in own:
                from app.core.errors import problem_response  # local: errors imports this module

                response = problem_response(405, "Method Not Allowed", type="method-not-allowed",
                                            headers={"Allow": allow_header(own)})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
