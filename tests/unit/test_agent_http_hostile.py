"""Hostile requests to the agents' HTTP endpoints (edgepop.agents.http): the ARP relay's mapping API.

Each case is sent over a raw socket so that malformed bytes reach the server as a client would send
them; after each one the server must still answer a good request, and nothing may print a traceback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgepop.agents import http
from edgepop.agents.arprelay.core import RelayState
from edgepop.agents.arprelay.server import RelayServer

TOKEN = "s3cret"


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[RelayServer]:
    monkeypatch.setattr(http.QuietHandler, "timeout", 0.5)
    monkeypatch.setattr(http.BoundedServer, "max_connections", 4)
    server = RelayServer(RelayState(remove_after_s=0), "127.0.0.1", 0, TOKEN, max_wait_s=1).start()
    try:
        yield server
    finally:
        server.stop()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send `raw`, half-close, read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get(path: str, token: str = TOKEN, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n".encode() + (
        extra + b"\r\n"
    )


def healthy(port: int) -> bool:
    return status(exchange(port, get("/v1/mapping"))) == 200


HOSTILE: list[tuple[str, bytes, int]] = [
    ("wait is NaN", get("/v1/mapping?epoch=x&version=0&wait=nan"), 400),
    ("wait is infinite", get("/v1/mapping?epoch=x&version=0&wait=inf"), 400),
    ("version of 5000 digits", get("/v1/mapping?version=" + "9" * 5000), 400),
    ("version in Arabic-Indic digits", get("/v1/mapping?version=%D9%A1%D9%A2"), 400),
    ("version with an underscore", get("/v1/mapping?version=1_0"), 400),
    ("negative version", get("/v1/mapping?version=-1"), 400),
    ("token of latin-1 bytes", get("/v1/mapping").replace(TOKEN.encode(), b"\xff\xfe\xfd"), 401),
    ("no token", b"GET /v1/mapping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401),
    ("binary request line", b"\x00\x01\x02 \xff\r\n\r\n", 400),
    ("request line of 70,000 bytes", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    ("300 headers", get("/v1/health", extra=b"".join(b"X-%d: y\r\n" % i for i in range(300))), 431),
    ("POST", b"POST /v1/mapping HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 501),
    ("path traversal", get("/v1/../../etc/passwd"), 404),
    ("unknown HTTP version", b"GET /v1/health HTTP/9.9\r\n\r\n", 505),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_request_gets_a_4xx_and_the_relay_keeps_serving(
    relay: RelayServer, raw: bytes, expected: int, capfd: pytest.CaptureFixture[str]
) -> None:
    assert status(exchange(relay.port, raw)) == expected
    assert healthy(relay.port)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_a_slow_client_neither_blocks_others_nor_holds_its_thread(relay: RelayServer) -> None:
    slow = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    try:
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: ")  # ... and nothing more
        assert healthy(relay.port)  # another client is served meanwhile
        start = time.monotonic()
        assert slow.recv(1024) == b""  # the server hangs up on the slow client after its timeout
        assert time.monotonic() - start < 5
    finally:
        slow.close()


def test_connections_beyond_the_cap_get_503_and_the_slots_come_back(relay: RelayServer) -> None:
    idle: list[Any] = []
    try:
        for _ in range(4):
            idle.append(socket.create_connection(("127.0.0.1", relay.port), timeout=10))
            idle[-1].sendall(b"GET /v1/health HTTP/1.1\r\n")  # holds a slot until its timeout
        deadline = time.monotonic() + 5
        answer = b""
        while time.monotonic() < deadline:  # the four handler threads take their slots asynchronously
            answer = exchange(relay.port, get("/v1/health"))
            if status(answer) == 503:
                break
        assert status(answer) == 503
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while not healthy(relay.port):
        assert time.monotonic() < deadline, "the slots were never released"
        time.sleep(0.05)


def test_the_status_endpoint_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepop.agents.common import StatusServer

    monkeypatch.setattr(http.QuietHandler, "timeout", 0.5)
    server = StatusServer("127.0.0.1", 0, lambda: {"ok": True}, lambda snap: "up 1\n")
    server.start()
    try:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(b"GET /status HTTP/1.1\r\n")
        ok = exchange(server.port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status(ok) == 200 and ok.endswith(b'{"ok": true}')
        assert status(exchange(server.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")) == 400
        assert status(exchange(server.port, b"GET /../../etc/shadow HTTP/1.1\r\n\r\n")) == 404
        assert slow.recv(1024) == b""
        slow.close()
    finally:
        server.stop()
