"""uvicorn with one listening socket per worker (app/serving.py)."""

from __future__ import annotations

import pickle
import socket

import pytest

from app import serving
from app.serving import ReusePortSocket

pytestmark = pytest.mark.skipif(not serving.HAS_REUSEPORT, reason="SO_REUSEPORT is Linux's")


def test_a_worker_gets_a_socket_of_its_own_on_the_same_address():
    parent = ReusePortSocket.bound("127.0.0.1", 0)
    port = parent.getsockname()[1]
    child = pickle.loads(pickle.dumps(parent))  # what a spawned worker receives
    other = pickle.loads(pickle.dumps(parent))
    try:
        assert isinstance(child, ReusePortSocket)
        assert child.fileno() != parent.fileno() and other.fileno() != child.fileno()
        assert child.getsockname() == other.getsockname() == ("127.0.0.1", port)
        assert child.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # Both listen at once; every connection reaches one of them, none the parent's (which never listens).
        child.listen()
        other.listen()
        child.settimeout(2)
        other.settimeout(2)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(16)]
        accepted = 0
        for listener in (child, other):
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted += 1
        for c in clients:
            c.close()
        assert accepted == 16
    finally:
        for s in (parent, child, other):
            s.close()


def test_a_taken_port_fails_at_once():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError):
            ReusePortSocket.bound("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_several_workers_share_out_the_address(monkeypatch):
    seen: dict = {}  # type: ignore[type-arg]

    class FakeSupervisor:
        def __init__(self, config, sockets):  # type: ignore[no-untyped-def]
            seen.update(config=config, sockets=sockets)

        def run(self) -> None:
            seen["ran"] = True

    monkeypatch.setattr(serving, "Multiprocess", FakeSupervisor)
    serving.serve(host="127.0.0.1", port=0, workers=2)
    try:
        config, (sock,) = seen["config"], seen["sockets"]
        assert seen["ran"] and isinstance(sock, ReusePortSocket)
        assert (config.app, config.workers, config.loop, config.http) == ("app.asgi:app", 2, "uvloop", "httptools")
        assert (config.access_log, config.server_header, config.proxy_headers) == (False, False, True)
    finally:
        sock.close()
