"""provisiond's HTTP side: iPXE scripts, the image (with Range, for resumed pulls), the PoP's
call-home settings as a small initrd, and the call-home API. One JSON log line per request.

    GET  /ipxe/<aa-bb-cc-dd-ee-ff>.ipxe   the MAC's script, or the default one for unknown MACs
    GET  /image/<version|current>/<file> the verified release only (HEAD and Range too)
    GET  /callhome.cpio                  /etc/edgepop/callhome.json for the booting image
    POST /callhome                       {"macs": [...]} with `Authorization: Bearer <token>`
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from edgepop.agents.provisiond import pending
from edgepop.agents.provisiond.callhome import BadRequest, RateLimiter, decide, parse_request, token_ok
from edgepop.agents.provisiond.config import Plan
from edgepop.agents.provisiond.store import ImageStore
from edgepop.image.boot import OverlayEntry, directory, file, newc_archive

_IPXE = re.compile(r"^/ipxe/([0-9a-f]{2}(?:-[0-9a-f]{2}){5})\.ipxe$")
_IMAGE = re.compile(r"^/image/([0-9A-Za-z._-]+)/([0-9A-Za-z._-]+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
MAX_BODY = 16384
CALLHOME_JSON = "/etc/edgepop/callhome.json"
BOOT_NETWORK_FILE = "/etc/systemd/network/zz-edgepop-boot.network"

# Until call-home has answered, every PCI Ethernet port asks for DHCP (the boot NIC gets its lease
# from the control server's dnsmasq). It travels with the call-home settings, not in the image, so
# only a netbooted box gets it (a box booted otherwise, or a lab container, keeps the image's own
# network files). The name sorts after every file edgepop or a test writes, so any of those wins for
# its NIC. The client id is the MAC, as iPXE's was, so dnsmasq sees one client.
BOOT_NETWORK = """[Match]
Type=ether
Path=pci-*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=mac
"""


def callhome_entries(plan: Plan) -> list[OverlayEntry]:
    """/etc/edgepop/callhome.json (where the booted image calls home, with the PoP's token) and the
    catch-all DHCP network file that gets it there."""
    doc = {"url": plan.callhome_url, "token": plan.callhome_token.get_secret_value(), "pop": plan.pop}
    return [
        directory("/etc/edgepop"),
        file(CALLHOME_JSON, json.dumps(doc) + "\n", 0o600),
        file(BOOT_NETWORK_FILE, BOOT_NETWORK, 0o644),
    ]


def callhome_overlay(plan: Plan) -> bytes:
    """The PoP's call-home settings as a newc archive the kernel unpacks over the image."""
    return newc_archive(callhome_entries(plan))


@dataclass
class Context:
    plan: Plan
    store: ImageStore
    ipxe_dir: Path
    pending_file: Path
    log_file: Path
    limiter: RateLimiter
    overlay: bytes
    lock: threading.Lock

    def log(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, sort_keys=True) + "\n"
        with self.lock, self.log_file.open("a") as out:
            out.write(text)


class Handler(BaseHTTPRequestHandler):
    server_version = "provisiond"
    protocol_version = "HTTP/1.1"
    ctx: Context  # set on the subclass made by `make_server`

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged once, as JSON, by _done

    def _done(self, status: int, sent: int, **extra: Any) -> None:
        self.ctx.log(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "client": self.client_address[0],
                "method": self.command,
                "path": self.path,
                "status": status,
                "bytes": sent,
                "ms": round((time.monotonic() - self._started) * 1000, 1),
                **extra,
            }
        )

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        # logged before the body goes out, so the line is there once the client has its answer
        self._done(status, 0 if self.command == "HEAD" else len(body), **extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None, **extra: Any) -> None:
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json", headers, **extra)

    def _error(self, status: HTTPStatus, why: str, **extra: Any) -> None:
        self._json(status, {"error": why}, **extra)

    # --- GET / HEAD ---------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._started = time.monotonic()
        path = self.path.split("?", 1)[0]
        if m := _IPXE.match(path):
            own = self.ctx.ipxe_dir / f"{m.group(1)}.ipxe"
            script = own if own.is_file() else self.ctx.ipxe_dir / "default.ipxe"
            known = own.is_file()
            if not script.is_file():
                return self._error(HTTPStatus.NOT_FOUND, "no iPXE script", mac=m.group(1))
            return self._send(HTTPStatus.OK, script.read_bytes(), "text/plain", mac=m.group(1), known=known)
        if path == "/callhome.cpio":
            return self._send(HTTPStatus.OK, self.ctx.overlay, "application/octet-stream")
        if m := _IMAGE.match(path):
            target = self.ctx.store.path_of(m.group(1), m.group(2))
            if target is None or not target.is_file():
                return self._error(HTTPStatus.NOT_FOUND, "no such file in the served release")
            return self._file(target)
        return self._error(HTTPStatus.NOT_FOUND, "unknown path")

    def _file(self, target: Path) -> None:
        size = target.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        wanted = self.headers.get("Range")
        if wanted:
            m = _RANGE.match(wanted.strip())
            if not m or int(m.group(1)) >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self._done(416, 0)
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            with target.open("rb") as src:
                sent = self._copy(src, start, length)
        self._done(status, sent)

    def _copy(self, src: BinaryIO, start: int, length: int) -> int:
        src.seek(start)
        sent = 0
        try:
            while sent < length:
                chunk = src.read(min(1 << 20, length - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return sent

    # --- POST /callhome -------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._started = time.monotonic()
        if self.path.split("?", 1)[0] != "/callhome":
            return self._error(HTTPStatus.NOT_FOUND, "unknown path")
        client = self.client_address[0]
        allowed, retry = self.ctx.limiter.allow(client)
        if not allowed:
            self.close_connection = True
            return self._json(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"error": "too many requests"},
                {"Retry-After": str(max(1, round(retry)))},
                result="rate_limited",
            )
        auth = self.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else None
        if not token_ok(given, self.ctx.plan.callhome_token.get_secret_value()):
            self.close_connection = True
            return self._error(HTTPStatus.UNAUTHORIZED, "bad or missing token", result="bad_token")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                raise BadRequest(f"a body of 1 to {MAX_BODY} bytes is required")
            macs = parse_request(json.loads(self.rfile.read(length)))
        except (BadRequest, ValueError) as exc:
            self.close_connection = True
            return self._error(HTTPStatus.BAD_REQUEST, str(exc), result="bad_request")
        decision = decide(self.ctx.plan, macs)
        if decision.status == "known":
            return self._json(
                HTTPStatus.OK,
                {"status": "known", "identity": decision.identity, "unlisted": decision.unlisted},
                result="known",
                host=decision.host,
                macs=macs,
            )
        if decision.status == "conflict":
            return self._json(
                HTTPStatus.CONFLICT,
                {"status": "conflict", "error": "these MACs belong to more than one inventory server"},
                result="conflict",
                hosts=decision.hosts,
                macs=macs,
            )
        pending.record(self.ctx.pending_file, macs, client)
        return self._json(HTTPStatus.ACCEPTED, {"status": "pending"}, result="pending", macs=macs)


def make_server(ctx: Context, address: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"ctx": ctx})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    return server
