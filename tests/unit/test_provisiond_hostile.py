"""provisiond's HTTP server against hostile and broken clients, over raw sockets on loopback.

Every bad request gets a 4xx with a JSON reason (never a traceback, never a file outside the served
release), a slow or partial request is cut off at the deadline without holding up anyone else, and
the server answers a good request after each of them. Timeouts are shortened so all of it runs in
seconds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgepop.agents.provisiond.callhome import RateLimiter, box_secret
from edgepop.agents.provisiond.config import Plan
from edgepop.agents.provisiond.server import Context, make_server
from edgepop.agents.provisiond.store import ImageStore
from edgepop.derive import derive_provisioning
from edgepop.render import ipxe_scripts
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "lab-callhome-token-0123456789"
UNKNOWN = "02:99:00:00:00:01"
GOOD = b"GET /ipxe/02-99-00-00-00-01.ipxe HTTP/1.1\r\nHost: t\r\n\r\n"
OUTSIDE = "NOT-TO-BE-SERVED-7d1c"


@dataclass
class Served:
    port: int
    ctx: Context
    state: Path

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def raw(self, data: bytes, *, half_close: bool = True) -> tuple[int, bytes]:
        """Send `data`, read until the server closes (or 5 s): (status, body)."""
        with self.connect() as sock:
            try:
                sock.sendall(data)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # refused at once: the answer is already there to read
            return parse(read_all(sock))

    def good(self) -> None:
        status, body = self.raw(GOOD)
        assert status == 200 and body.startswith(b"#!ipxe\n"), (status, body[:200])

    def log(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (self.state / "requests.log").read_text().splitlines()]

    def logged(self, **fields: Any) -> dict[str, Any]:
        """The log line with these fields; the server writes it after it hangs up, so poll for it."""
        deadline = time.monotonic() + 10
        while True:
            for line in self.log():
                if all(line.get(k) == v for k, v in fields.items()):
                    return line
            assert time.monotonic() < deadline, f"no log line with {fields}: {self.log()[-3:]}"
            time.sleep(0.05)


def read_all(sock: socket.socket, limit: float = 5.0) -> bytes:
    sock.settimeout(limit)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def parse(response: bytes) -> tuple[int, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


def post(body: bytes, headers: str = "", secret: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {secret}\r\n" if secret else ""
    head = f"POST /callhome HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


def serve(tmp_path: Path, **options: Any) -> Iterator[Served]:
    doc = derive_provisioning(load_valid(ROOT / "inventory" / "lab"), "ctl1")
    plan = Plan.model_validate({**doc, "callhome_token": TOKEN})
    state = tmp_path / "state"
    (tmp_path / "ipxe").mkdir()
    for rel, text in ipxe_scripts({"hostname": "ctl1", "provisioning": plan.model_dump(mode="json")}).items():
        (tmp_path / rel).write_text(text)
    (tmp_path / "secret.txt").write_text(OUTSIDE)  # beside the served directories: never served
    (tmp_path / "provisiond.json").write_text(OUTSIDE)
    settings: dict[str, Any] = {
        "limiter": RateLimiter(1000, 60000),
        "http_limiter": RateLimiter(1000, 60000),
        "timeout_s": 1.0,
        "deadline_s": 2.0,
        "boot_networks": [],
        **options,
    }
    ctx = Context(
        plan=plan,
        store=ImageStore(state / "images", plan.image),
        ipxe_dir=tmp_path / "ipxe",
        pending_file=state / "pending.json",
        log_file=state / "requests.log",
        **settings,
    )
    server = make_server(ctx, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(int(server.server_address[1]), ctx, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from serve(tmp_path)


MALFORMED: list[tuple[str, bytes, int]] = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("four words", b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    ("bad version", b"GET / HTTP/x.y\r\n\r\n", 400),
    ("HTTP/2 over plain", b"GET / HTTP/2.0\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /ipxe/02-99-00-00-00-01.ipxe\r\n\r\n", 400),
    ("unknown method", b"FOO /ipxe/02-99-00-00-00-01.ipxe HTTP/1.1\r\nHost: t\r\n\r\n", 405),
    ("PUT", b"PUT /callhome HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 405),
    ("DELETE", b"DELETE /image/current/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n", 405),
    ("request line too long", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    ("header line too long", b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ("too many headers", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", 431),
    ("non-ASCII header bytes", b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n", 404),
    ("POST without a length", b"POST /callhome HTTP/1.1\r\nHost: t\r\n\r\n", 411),
    ("POST with a negative length", b"POST /callhome HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 411),
    ("POST with two lengths", b"POST /callhome HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 411),
    ("POST chunked", b"POST /callhome HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
    ("POST too large", b"POST /callhome HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n{", 413),
    ("POST empty", post(b""), 400),
    ("POST elsewhere", b"POST /image/current/vmlinuz HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 404),
]


@pytest.mark.parametrize(("name", "request_bytes", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_4xx_and_the_server_goes_on(
    served: Served, name: str, request_bytes: bytes, status: int
) -> None:
    got, body = served.raw(request_bytes)
    assert got == status, (name, got, body[:300])
    assert "error" in json.loads(body)
    served.good()


BODIES: list[tuple[str, bytes, str]] = [
    ("not JSON", b"macs=02:99:00:00:00:01", "the body is not JSON"),
    ("not UTF-8", b'{"mac": "\xff\xfe"}', "the body is not UTF-8"),
    ("deep nesting", b"[" * 8000 + b"]" * 8000, "JSON nested deeper than 8 levels"),
    ("deep object", b'{"a":' * 2000 + b"1" + b"}" * 2000, "JSON nested deeper than 8 levels"),
    ("a list", b"[1, 2]", "expected a JSON object"),
    ("macs not a list", b'{"mac": "02:99:00:00:00:01", "macs": "02:99:00:00:00:01"}', "expected a JSON object"),
    ("mac a number", b'{"mac": 5, "macs": ["02:99:00:00:00:01"]}', "'int' is not a MAC address"),
    ("macs of numbers", b'{"mac": "02:99:00:00:00:01", "macs": [1, 2]}', "'int' is not a MAC address"),
    ("no macs", b'{"mac": "02:99:00:00:00:01", "macs": []}', "expected 1 to 64 MACs, got 0"),
    (
        "huge MAC list",
        json.dumps(
            {"mac": UNKNOWN, "macs": [f"02:99:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(700)]}
        ).encode(),
        "expected 1 to 64 MACs, got 700",
    ),
    ("a huge string", json.dumps({"mac": "x" * 15000, "macs": [UNKNOWN]}).encode(), "is not a MAC address"),
    ("NaN", b'{"mac": NaN, "macs": ["02:99:00:00:00:01"]}', "'float' is not a MAC address"),
]


@pytest.mark.parametrize(("name", "body", "why"), BODIES, ids=[b[0] for b in BODIES])
def test_bad_bodies_are_400_with_a_reason(served: Served, name: str, body: bytes, why: str) -> None:
    status, answer = served.raw(post(body, secret=box_secret(TOKEN, UNKNOWN)))
    assert status == 400, (name, answer[:300])
    assert why in json.loads(answer)["error"]
    assert served.log()[-1]["result"] == "bad_request"
    served.good()


TRAVERSAL = [
    "/image/../../etc/passwd",
    "/image/current/../../../etc/passwd",
    "/image/current/..%2f..%2f..%2fetc%2fpasswd",
    "/image/%2e%2e/%2e%2e/secret.txt",
    "/image/current/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/image/..",
    "/image/current/..",
    "/image/current/.",
    "/image//etc/passwd",
    "//etc/passwd",
    "/etc/passwd",
    "http://127.0.0.1/../../etc/passwd",
    "/image/current/vmlinuz%00.txt",
    "/image/current/secret.txt",
    "/ipxe/../provisiond.json",
    "/ipxe/%2e%2e%2fprovisiond.json",
    "/ipxe/..%2Fprovisiond.json",
    "/ipxe/02-99-00-00-00-01.ipxe/../../provisiond.json",
    "/callhome/../secret.txt",
    "/callhome/02-99-00-00-00-01.cpio%00",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_nothing_outside_the_served_directories(served: Served, path: str) -> None:
    status, body = served.raw(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert 400 <= status < 500 and OUTSIDE.encode() not in body and b"root:" not in body, (status, body[:200])
    served.good()


def test_raw_nul_and_control_bytes_in_the_path(served: Served) -> None:
    for path in (b"/image/current/vm\x00linuz", b"/ipxe/\x00/../../secret.txt", b"/\x1b[2J"):
        status, body = served.raw(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert 400 <= status < 500 and OUTSIDE.encode() not in body
    served.good()


def test_every_endpoint_is_rate_limited(tmp_path: Path) -> None:
    for run in serve(tmp_path, http_limiter=RateLimiter(3, 1)):
        paths = ["/ipxe/02-99-00-00-00-01.ipxe", "/image/current/vmlinuz", "/nothing-here"]
        codes = [run.raw(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode())[0] for p in paths]
        assert codes == [200, 404, 404]
        for path in (*paths, "/callhome/02-99-00-00-00-01.cpio"):
            with run.connect() as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                response = read_all(sock)
            assert parse(response) == (429, b'{"error": "too many requests"}\n'), response
            assert b"\r\nRetry-After: " in response
        # call-home has its own bucket: booting boxes' downloads do not use up their call-home
        status, _ = run.raw(
            post(json.dumps({"mac": UNKNOWN, "macs": [UNKNOWN]}).encode(), secret=box_secret(TOKEN, UNKNOWN))
        )
        assert status == 202


def test_a_slow_client_does_not_block_another(served: Served) -> None:
    """Slowloris: headers trickled one byte at a time. Another client is answered meanwhile, and the
    trickler is cut off at the deadline (2 s here), whatever it does."""
    slow = served.connect()
    stop = threading.Event()

    def trickle() -> None:
        slow.sendall(b"GET /ipxe/02-99-00-00-00-01.ipxe HTTP/1.1\r\n")
        for byte in b"X-Slow: " + b"a" * 100:
            if stop.wait(0.2):
                return
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=trickle, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        time.sleep(0.3)  # the trickle is under way
        served.good()
        answered = time.monotonic()
        assert read_all(slow, 30.0) == b""  # cut, no answer
        assert time.monotonic() - started < 15.0  # by the server, not read_all's own limit
        cut = time.monotonic()
        # the other client did not wait for the trickler to be cut (a serial server answers it only then)
        assert cut - answered > 0.5
        assert cut - started > 1.5  # and the trickler kept its connection until the deadline
    finally:
        stop.set()
        slow.close()
        thread.join(5)
    served.logged(method="GET", status=408, result="timeout")


def test_a_body_shorter_than_its_length_is_cut_off(served: Served) -> None:
    started = time.monotonic()
    with served.connect() as sock:
        sock.sendall(b"POST /callhome HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n" + b'{"mac":')
        served.good()  # meanwhile
        assert read_all(sock, 30.0) == b""
    assert time.monotonic() - started < 15.0  # cut by the server (2 s deadline), not read_all's own limit
    served.logged(method="POST", status=408, result="timeout")


def test_a_silent_connection_is_dropped(served: Served) -> None:
    started = time.monotonic()
    with served.connect() as sock:
        assert read_all(sock, 30.0) == b""
    assert time.monotonic() - started < 15.0  # dropped by the server, not read_all's own limit


def test_connections_are_bounded_per_client(tmp_path: Path) -> None:
    for run in serve(tmp_path, max_per_client=3, deadline_s=5.0, timeout_s=5.0):
        idle = [run.connect() for _ in range(3)]
        try:
            time.sleep(0.2)
            status, body = run.raw(GOOD)
            assert status == 429 and json.loads(body) == {"error": "too many connections"}
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while run.raw(GOOD)[0] != 200:
            assert time.monotonic() < deadline, "the closed connections were never released"
            time.sleep(0.05)


def test_keep_alive_serves_several_requests(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(GOOD + GOOD)
        time.sleep(0.3)
        sock.shutdown(socket.SHUT_WR)
        data = read_all(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_request_log_rotates(tmp_path: Path) -> None:
    for run in serve(tmp_path, log_max_bytes=2000, log_backups=2):
        for _ in range(60):
            run.good()
        log = run.state / "requests.log"
        assert log.stat().st_size <= 2000
        assert sorted(p.name for p in run.state.glob("requests.log*")) == [
            "requests.log",
            "requests.log.1",
            "requests.log.2",
        ]
        for name in ("requests.log", "requests.log.1", "requests.log.2"):
            lines = (run.state / name).read_text().splitlines()
            assert lines and all(json.loads(x)["status"] == 200 for x in lines)


def test_no_traceback_anywhere(served: Served, capfd: pytest.CaptureFixture[str]) -> None:
    for _, request_bytes, _ in MALFORMED:
        served.raw(request_bytes)
    for _, body, _ in BODIES:
        served.raw(post(body, secret=box_secret(TOKEN, UNKNOWN)))
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Traceback" not in (served.state / "requests.log").read_text()


def test_the_pop_token_is_in_no_answer(served: Served) -> None:
    bodies = [served.raw(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode())[1] for p in (
        "/ipxe/02-99-00-00-00-01.ipxe", "/ipxe/02-00-00-00-01-00.ipxe", "/callhome/02-99-00-00-00-01.cpio",
        "/callhome/02-00-00-00-01-00.cpio", "/callhome.cpio",
    )]  # fmt: skip
    macs = ["02:00:00:00:01:00", "02:00:00:00:01:01", "02:00:00:00:01:02"]
    doc = json.dumps({"mac": macs[0], "macs": macs}).encode()
    bodies.append(served.raw(post(doc, secret=box_secret(TOKEN, macs[0])))[1])
    assert b'"status": "known"' in bodies[-1]
    assert not [b for b in bodies if TOKEN.encode() in b]
