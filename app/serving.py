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
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")


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


def serve(*, host: str, port: int, workers: int) -> None:
    """uvicorn with uvloop and httptools; no access log (the app writes its own)."""
    config = uvicorn.Config(
        "app.asgi:app", host=host, port=port, workers=workers, loop="uvloop", http="httptools",
        access_log=False, server_header=False, proxy_headers=True, log_config=None,
    )
    if workers <= 1 or not HAS_REUSEPORT:
        uvicorn.Server(config).run()
        return
    Multiprocess(config, sockets=[ReusePortSocket.bound(host, port)]).run()
