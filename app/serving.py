"""Running the ASGI app under uvicorn, with one listening socket per worker.

uvicorn's supervisor binds one socket and every worker accepts from it. A worker that
wakes for a burst of new connections accepts the whole burst, so keep-alive clients end
up unevenly spread: 27 of wrk's 32 connections on one worker and 5 on the other was
typical, and that worker's queue set the latency tail while the other sat half idle.
With SO_REUSEPORT (Linux) each worker listens on a socket of its own bound to the same
address, and the kernel spreads new connections across them by hash. uvicorn's
supervisor is kept as it is (health checks, restarts, signals): the socket it hands to
each new worker is a ``ReusePortSocket``, whose pickled form is "bind a fresh one", so a
worker never listens on the parent's socket (which stays bound and never listens, so it
receives nothing).

A request's head (request line and headers) is bounded: `MAX_HEAD_BYTES`, answered
`431` and the connection closed (httptools itself sets no limit; h11 gets the same one).
Forwarded headers (`X-Forwarded-For`, `X-Forwarded-Proto`) count only from the addresses
in `KMM_TRUSTED_PROXIES`; with none set (the default) uvicorn ignores them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from app.core.errors import problem_body

HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")
# The request line and headers together. Tokens are refused past 8 KiB (app/core/security.py).
MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE = json.dumps(problem_body(431, f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
                                     type="request-header-fields-too-large")).encode()
_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\n"
    b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\nconnection: close\r\n\r\n" + _TOO_LARGE
)


class _HeadTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the bytes of a request's head.

    A complete head is measured exactly (its URL and headers, as the parser hands them
    on) before the application sees it. httptools gathers a header's name and value in
    full before handing it on, so an incomplete head is bounded too: every chunk after
    which a head is still incomplete counts (the tail of a chunk that completed one head
    and began another does not, so the buffer stays within the limit plus one read of the
    transport). Past the limit the answer is 431; what the client still sends is read and
    dropped for a moment, then the connection closes (closing at once, with unread bytes,
    would reset it before the client read the 431).
    """

    LINGER_SECONDS = 1.0
    _head_open = True  # a head has begun (or may begin) and is not complete
    _head_bytes = 0  # received while the head is incomplete
    _head_size = 0  # the URL and headers the parser has handed on
    _heads_done = 0
    _refused = False

    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open, self._head_bytes = False, 0
        self._heads_done += 1
        if self._head_size > MAX_HEAD_BYTES:
            self._refuse()
            raise _HeadTooLarge  # stops the parser: the application never sees this request
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_open = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        open_before, done_before = self._head_open, self._heads_done
        super().data_received(data)  # a chunk that completes the head (and brings body with it) is fine
        if open_before and self._head_open and self._heads_done == done_before:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # the parser stopped because the head was refused: 431 is sent
            super().send_400_response(msg)

    def _refuse(self) -> None:
        if self._refused:
            return
        self._refused = True
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(_TOO_LARGE_RESPONSE)
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(self.LINGER_SECONDS, transport.close)


class ReusePortSocket(socket.socket):
    """A TCP socket bound with SO_REUSEPORT; in another process it is bound anew, not shared."""

    @classmethod
    def bound(cls, host: str, port: int) -> ReusePortSocket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = cls(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def __reduce__(self) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (ReusePortSocket.bound, (host, port))


def serve(*, host: str, port: int, workers: int, trusted_proxies: Sequence[str] = ()) -> None:
    """uvicorn with uvloop and httptools (head size bounded); no access log (the app writes its own).

    ``trusted_proxies`` (addresses or networks) are the only peers whose forwarded headers
    count; none by default.
    """
    config = uvicorn.Config(
        "app.asgi:app", host=host, port=port, workers=workers, loop="uvloop", http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES, access_log=False, server_header=False,
        proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies), log_config=None,
    )
    if workers <= 1 or not HAS_REUSEPORT:
        uvicorn.Server(config).run()
        return
    Multiprocess(config, sockets=[ReusePortSocket.bound(host, port)]).run()


class PortInUse(Exception):
    """Another process listens on the address; the message says what to do."""


def check_port_free(host: str, port: int) -> None:
    """Bind the address once, without SO_REUSEPORT, and let it go.

    A plain bind fails both where a plain socket listens and where a server with
    SO_REUSEPORT does (a second `kmm serve --workers 2` would otherwise share its port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is already in use by another process; stop it or "
                                f"choose another port (--port, or make run PORT=...)") from None
            raise PortInUse(f"cannot bind {host}:{port}: {exc.strerror}") from None
