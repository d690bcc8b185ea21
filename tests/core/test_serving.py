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
        assert (config.app, config.workers, config.loop) == ("app.asgi:app", 2, "uvloop")
        assert config.http is serving.BoundedHttpToolsProtocol  # httptools, its head bounded
        assert (config.access_log, config.server_header) == (False, False)
        assert (config.proxy_headers, config.forwarded_allow_ips) == (False, [])  # no proxy trusted by default
    finally:
        sock.close()


# -- the size of a request's head, and whose forwarded headers count -------------------------


def _served_config(monkeypatch, **kwargs):  # type: ignore[no-untyped-def]
    """The uvicorn Config `kmm serve` builds, for one worker, captured instead of run."""
    seen: dict = {}  # type: ignore[type-arg]

    class FakeServer:
        def __init__(self, config) -> None:  # type: ignore[no-untyped-def]
            seen["config"] = config

        def run(self) -> None:
            pass

    monkeypatch.setattr(serving.uvicorn, "Server", FakeServer)
    serving.serve(host="127.0.0.1", port=0, workers=1, **kwargs)
    return seen["config"]


async def _echo_app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = str(scope["client"][0]).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _LiveServer:
    """The captured config's protocol and limits, serving a tiny app on a loopback port."""

    def __init__(self, served) -> None:  # type: ignore[no-untyped-def]
        import threading

        import uvicorn
        from uvicorn.server import Server  # uvicorn.Server itself is patched by _served_config

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(_echo_app, http=served.http, loop="asyncio", lifespan="off", log_config=None,
                                h11_max_incomplete_event_size=served.h11_max_incomplete_event_size)
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def request(self, head_lines: list[bytes], body: bytes = b"") -> bytes:
        if body:
            head_lines = [*head_lines, b"content-length: %d" % len(body)]
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as c:
            c.sendall(b"POST /x HTTP/1.1\r\nhost: test\r\n" + b"".join(line + b"\r\n" for line in head_lines)
                      + b"\r\n" + body)
            got = b""
            while chunk := c.recv(65536):
                got += chunk
                if b"\r\n\r\n" in got and (got.startswith(b"HTTP/1.1 431") or got.endswith((b"127.0.0.1",))):
                    break
            return got


@pytest.mark.slow  # a live server on a real socket
def test_kmm_serve_refuses_an_oversized_request_head_with_431(monkeypatch):
    served = _served_config(monkeypatch)
    assert served.h11_max_incomplete_event_size == serving.MAX_HEAD_BYTES
    with _LiveServer(served) as live:
        assert live.request([b"authorization: Bearer " + b"A" * 8000]).startswith(b"HTTP/1.1 200")
        for head in ([b"authorization: Bearer " + b"A" * (serving.MAX_HEAD_BYTES + 1)],
                     [b"x-pad-%d: %s" % (i, b"B" * 1000) for i in range(serving.MAX_HEAD_BYTES // 1000 + 1)],
                     [b"x-huge: " + b"C" * (4 * 1024 * 1024)]):
            answer = live.request(head)
            assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
            assert b"connection: close" in answer.lower()
        # the server still answers afterwards, and a large body in the same reads as its head is no head
        assert live.request([]).startswith(b"HTTP/1.1 200")
        assert live.request([b"content-type: application/json"], body=b"x" * 900_000).startswith(b"HTTP/1.1 200")


def test_kmm_serve_reads_forwarded_headers_only_from_trusted_proxies(monkeypatch):
    served = _served_config(monkeypatch, trusted_proxies=["10.0.0.5", "10.1.0.0/16"])
    assert served.proxy_headers is True
    assert served.forwarded_allow_ips == ["10.0.0.5", "10.1.0.0/16"]
    none = _served_config(monkeypatch)
    assert (none.proxy_headers, none.forwarded_allow_ips) == (False, [])
