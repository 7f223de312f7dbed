"""provisiond's HTTP side: iPXE scripts, the image (with Range, for resumed pulls), each boot MAC's
call-home settings as a small initrd, and the call-home API. One JSON log line per request.

    GET  /ipxe/<aa-bb-cc-dd-ee-ff>.ipxe      the MAC's script, or the default one for unknown MACs
    GET  /image/<version|current>/<file>    the verified release only (HEAD and Range too)
    GET  /callhome/<aa-bb-cc-dd-ee-ff>.cpio  /etc/edgepop/callhome.json with that MAC's secret
    POST /callhome                          {"mac": ..., "macs": [...]}, `Authorization: Bearer <secret>`

The server faces every box of the boot network, and whatever else reaches its port, so it assumes
nothing of a client: a request has `deadline_s` to arrive whole (request line, headers and body; a
trickling client is cut off, and every socket read or write is bounded by `timeout_s`), a body is
at most MAX_BODY bytes of JSON at most MAX_JSON_DEPTH deep, a client holds at most MAX_PER_CLIENT
connections and everybody together MAX_CONNECTIONS, and every request is rate limited per client
address (call-home with its own bucket). A bad request gets a 4xx and a JSON reason, never a
traceback, and the request log rotates by size.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO

from edgepop.agents.http import BoundedServer
from edgepop.agents.provisiond import pending
from edgepop.agents.provisiond.callhome import BadRequest, RateLimiter, decide, parse_request, secret_ok
from edgepop.agents.provisiond.callhome import box_secret as box_secret
from edgepop.agents.provisiond.config import Plan
from edgepop.agents.provisiond.store import ImageStore
from edgepop.image.boot import OverlayEntry, directory, file, newc_archive

log = logging.getLogger("provisiond.http")

_MAC_PATH = r"([0-9a-f]{2}(?:-[0-9a-f]{2}){5})"
_IPXE = re.compile(rf"^/ipxe/{_MAC_PATH}\.ipxe$")
_CALLHOME_CPIO = re.compile(rf"^/callhome/{_MAC_PATH}\.cpio$")
_IMAGE = re.compile(r"^/image/([0-9A-Za-z._-]+)/([0-9A-Za-z._-]+)$")
_RANGE = re.compile(r"^bytes=(\d{1,19})-(\d{0,19})$")
METHODS = ("GET", "HEAD", "POST")
MAX_BODY = 16384
MAX_JSON_DEPTH = 8
MAX_CONNECTIONS = 128
MAX_PER_CLIENT = 16
TIMEOUT_S = 10.0
DEADLINE_S = 20.0
HTTP_BURST = 120
HTTP_PER_MINUTE = 600.0
LOG_MAX_BYTES = 16 << 20
LOG_BACKUPS = 4
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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def callhome_entries(plan: Plan, mac: str) -> list[OverlayEntry]:
    """/etc/edgepop/callhome.json (where the booted image calls home, the MAC it booted from and that
    MAC's secret; never the PoP token) and the catch-all DHCP network file that gets it there."""
    secret = box_secret(plan.callhome_token.get_secret_value(), mac)
    doc = {"url": plan.callhome_url, "pop": plan.pop, "mac": mac, "secret": secret}
    return [
        directory("/etc/edgepop"),
        file(CALLHOME_JSON, json.dumps(doc) + "\n", 0o600),
        file(BOOT_NETWORK_FILE, BOOT_NETWORK, 0o644),
    ]


def callhome_overlay(plan: Plan, mac: str) -> bytes:
    """A boot MAC's call-home settings as a newc archive the kernel unpacks over the image."""
    return newc_archive(callhome_entries(plan, mac))


def json_depth_ok(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether no array or object in `raw` nests deeper than `limit` (checked before parsing, so a
    hostile `[[[[...` is a 400 and never a RecursionError). Brackets inside strings do not count."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def client_ip(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass
class Context:
    plan: Plan
    store: ImageStore
    ipxe_dir: Path
    pending_file: Path
    log_file: Path
    limiter: RateLimiter  # call-home, per client address
    http_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(HTTP_BURST, HTTP_PER_MINUTE))
    boot_networks: list[Network] | None = None  # who may fetch a secret; None: the plan's network_v4
    lock: threading.Lock = field(default_factory=threading.Lock)
    timeout_s: float = TIMEOUT_S
    deadline_s: float = DEADLINE_S
    max_connections: int = MAX_CONNECTIONS
    max_per_client: int = MAX_PER_CLIENT
    log_max_bytes: int = LOG_MAX_BYTES
    log_backups: int = LOG_BACKUPS
    _log_broken: bool = field(default=False, repr=False)

    def log(self, line: dict[str, Any]) -> None:
        """Append one JSON line to the request log, rotating it (`.1` … `.<log_backups>`) first when
        it would grow past `log_max_bytes`. A full disk costs log lines, never a request."""
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        with self.lock:
            try:
                try:
                    size = self.log_file.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size and size + len(data) > self.log_max_bytes:
                    self._rotate()
                fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                self._log_broken = False
            except OSError as exc:
                if not self._log_broken:  # one line per outage, not one per request
                    log.error("%s: cannot write the request log: %s", self.log_file, exc.strerror)
                self._log_broken = True

    def _rotate(self) -> None:
        name = self.log_file
        if self.log_backups < 1:
            name.unlink(missing_ok=True)
            return
        for n in range(self.log_backups - 1, 0, -1):
            older = name.with_name(f"{name.name}.{n}")
            if older.exists():
                os.replace(older, name.with_name(f"{name.name}.{n + 1}"))
        os.replace(name, name.with_name(f"{name.name}.1"))

    def secret_refused(self, mac: str, client: str) -> str | None:
        """Why `client` may not have `mac`'s call-home settings, or None when it may.

        A MAC that dnsmasq leases a fixed address (a known server's boot NIC) gets them only at that
        address: the box that just took that lease. Any other MAC gets them only on the boot
        network. See docs/provisioning.md for what that leaves open.
        """
        address = client_ip(client)
        if address is None:
            return "unknown client address"
        fixed = {h.address_v4 for h in self.plan.dhcp_hosts if mac in h.macs and h.address_v4}
        if fixed:
            if str(address) in fixed:
                return None
            return "this MAC's call-home settings are served only to the address its lease gives it"
        networks = self.boot_networks
        if networks is None:
            networks = [ipaddress.ip_network(self.plan.network_v4, strict=False)]
        if any(address.version == net.version and address in net for net in networks):
            return None
        return "call-home settings are served only on the boot network"


class Handler(BaseHTTPRequestHandler):
    server_version = "provisiond"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT_S  # every socket read and write; the bound subclass takes the context's
    default_request_version = "HTTP/1.0"  # a refusal before the version is parsed still has a status line
    ctx: Context  # set on the subclass made by `make_server`
    _started = 0.0
    _logged = False
    _expired = False
    _responded = False

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged once, as JSON, by _done

    def log_error(self, format: str, *args: Any) -> None:
        pass

    # --- reading one request, whatever the client does --------------------------------------------

    def _expire(self) -> None:
        """The request did not arrive whole in time: cut the connection (a blocked read returns)."""
        self._expired = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def handle_one_request(self) -> None:
        self._started = time.monotonic()
        self._logged = self._expired = self._responded = False
        self.command, self.path, self.requestline = "", "", ""
        self.request_version = self.default_request_version
        timer = threading.Timer(self.ctx.deadline_s, self._expire)
        timer.daemon = True
        timer.start()
        self._timer = timer
        try:
            self._one_request()
        except OSError as exc:  # timeouts, resets, and the socket the deadline shut
            self.close_connection = True
            if not self._logged and (self.command or self._expired):  # not an idle keep-alive
                slow = self._expired or isinstance(exc, TimeoutError)
                self._done(HTTPStatus.REQUEST_TIMEOUT, 0, result="timeout" if slow else "broken")
        except Exception as exc:  # a bug must cost one request, not the thread or a traceback
            self.close_connection = True
            log.error("%s %s: internal error: %s", self.command, self.path[:200], type(exc).__name__)
            if not self._responded:
                with contextlib.suppress(OSError):
                    self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", result="internal_error")
        finally:
            timer.cancel()

    def _arrived(self) -> bool:
        """The request is read in full: stop the deadline (a long download is not a slow request)."""
        self._timer.cancel()
        if self._expired:
            self.close_connection = True
            if not self._logged:
                self._done(HTTPStatus.REQUEST_TIMEOUT, 0, result="timeout")
            return False
        return True

    def _one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            return
        if not self.raw_requestline:
            self.close_connection = True
            if self._expired:
                self._done(HTTPStatus.REQUEST_TIMEOUT, 0, result="timeout")
            return
        if not self.parse_request():
            return  # parse_request answered through send_error
        if len(self.requestline.split()) < 3:  # an HTTP/0.9 request line: no version
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not served")
            return
        if self.command not in METHODS:
            self.close_connection = True
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET, HEAD and POST", {"Allow": ", ".join(METHODS)})
            return
        if self.command != "POST" and not self._arrived():
            return
        callhome = self.command == "POST" and self.path.split("?", 1)[0] == "/callhome"
        limiter = self.ctx.limiter if callhome else self.ctx.http_limiter
        allowed, retry = limiter.allow(self.client_address[0])
        if not allowed:
            self.close_connection = True
            self._json(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"error": "too many requests"},
                {"Retry-After": str(max(1, round(retry)))},
                result="rate_limited",
            )
            return
        getattr(self, f"do_{self.command}")()
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server's request parser refuses (syntax, version, header lines): a JSON 4xx."""
        del explain
        self.close_connection = True
        status = HTTPStatus(code)
        if status >= 500:  # an HTTP version or method we do not speak is the client's error here
            status = HTTPStatus.BAD_REQUEST
        self._error(status, message or status.phrase, result="bad_request")

    # --- answers ----------------------------------------------------------------------------------

    def _done(self, status: int, sent: int, **extra: Any) -> None:
        self._logged = True
        self.ctx.log(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "client": self.client_address[0],
                "method": (self.command or "")[:16],
                "path": (self.path or "")[:300],
                "status": int(status),
                "bytes": sent,
                "ms": round((time.monotonic() - self._started) * 1000, 1),
                **extra,
            }
        )

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        self._responded = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        # logged before the body goes out, so the line is there once the client has its answer
        self._done(status, 0 if self.command == "HEAD" else len(body), **extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None, **extra: Any) -> None:
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json", headers, **extra)

    def _error(self, status: HTTPStatus, why: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        self._json(status, {"error": why}, headers, **extra)

    # --- GET / HEAD ---------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if m := _IPXE.match(path):
            own = self.ctx.ipxe_dir / f"{m.group(1)}.ipxe"
            script = own if own.is_file() else self.ctx.ipxe_dir / "default.ipxe"
            known = own.is_file()
            if not script.is_file():
                return self._error(HTTPStatus.NOT_FOUND, "no iPXE script", mac=m.group(1))
            return self._send(HTTPStatus.OK, script.read_bytes(), "text/plain", mac=m.group(1), known=known)
        if m := _CALLHOME_CPIO.match(path):
            mac = m.group(1).replace("-", ":")
            plan = self.ctx.plan
            why = self.ctx.secret_refused(mac, self.client_address[0])
            if why is not None:
                return self._error(HTTPStatus.FORBIDDEN, why, result="settings_refused", mac=mac)
            known = mac in plan.mac_index()
            return self._send(
                HTTPStatus.OK, callhome_overlay(plan, mac), "application/octet-stream", mac=mac, known=known
            )
        if path == "/callhome.cpio":
            return self._error(
                HTTPStatus.NOT_FOUND, "call-home settings are per boot MAC: /callhome/<aa-bb-cc-dd-ee-ff>.cpio"
            )
        if m := _IMAGE.match(path):
            target = self.ctx.store.path_of(m.group(1), m.group(2))
            if target is None or not target.is_file():
                return self._error(HTTPStatus.NOT_FOUND, "no such file in the served release")
            return self._file(target)
        return self._error(HTTPStatus.NOT_FOUND, "unknown path")

    def _file(self, target: Path) -> None:
        self._responded = True
        size = target.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        wanted = self.headers.get("Range")
        if wanted:
            m = _RANGE.match(wanted.strip())
            if not m or int(m.group(1)) >= size or (m.group(2) and int(m.group(2)) < int(m.group(1))):
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
        except OSError:  # the client went away or stalled past the socket timeout
            self.close_connection = True
        return sent

    # --- POST /callhome -------------------------------------------------------------------------

    def _body(self) -> bytes | None:
        """The request body, or None after answering why there is none to be had."""
        if self.headers.get("Transfer-Encoding"):
            self._error(
                HTTPStatus.LENGTH_REQUIRED,
                "a Content-Length body is required (no chunked bodies)",
                result="bad_request",
            )
            return None
        given = self.headers.get_all("Content-Length") or []
        if len(given) != 1 or not given[0].strip().isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "one numeric Content-Length is required", result="bad_request")
            return None
        length = int(given[0])
        if length > MAX_BODY:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is limited to {MAX_BODY} bytes", result="too_large"
            )
            return None
        if length == 0:
            self._error(HTTPStatus.BAD_REQUEST, "an empty body", result="bad_request")
            return None
        body = self.rfile.read(length)
        if len(body) < length:  # the client stopped sending, or ran out of time
            self.close_connection = True
            self._done(HTTPStatus.REQUEST_TIMEOUT, 0, result="timeout")
            return None
        return body if self._arrived() else None

    def do_POST(self) -> None:
        self.close_connection = True  # one call per connection: nothing to keep alive for
        if self.path.split("?", 1)[0] != "/callhome":
            self._arrived()
            return self._error(HTTPStatus.NOT_FOUND, "unknown path")
        raw = self._body()
        if raw is None:
            return None
        try:
            if not json_depth_ok(raw):
                raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("the body is not UTF-8") from None
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise BadRequest(f"the body is not JSON: {getattr(exc, 'msg', 'invalid')}") from None
            boot, macs = parse_request(doc)
        except BadRequest as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc), result="bad_request")
        auth = self.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else None
        if not secret_ok(given, self.ctx.plan.callhome_token.get_secret_value(), boot):
            return self._error(
                HTTPStatus.UNAUTHORIZED, "bad or missing secret for this MAC", result="bad_secret", mac=boot
            )
        client = self.client_address[0]
        decision = decide(self.ctx.plan, boot, macs)
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
        if decision.status == "unlisted_boot":
            return self._json(
                HTTPStatus.FORBIDDEN,
                {
                    "status": "refused",
                    "error": "this box booted from a MAC the inventory does not list, beside MACs of an "
                    "inventory server: fix the server's NICs in the inventory",
                },
                result="unlisted_boot",
                host=decision.host,
                mac=boot,
                macs=macs,
            )
        pending.record(self.ctx.pending_file, macs, client)
        return self._json(HTTPStatus.ACCEPTED, {"status": "pending"}, result="pending", macs=macs)


class Server(BoundedServer):
    """One thread per connection, but a bounded number of them, and no more than a few per client:
    a flood of connections gets a 503 (or 429 for one client) at once instead of a thread each."""

    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[Handler], ctx: Context) -> None:
        self.ctx = ctx
        self.max_connections = ctx.max_connections
        self.max_per_client = ctx.max_per_client
        super().__init__(address, handler)

    def refuse(self, request: socket.socket, client: str, status: HTTPStatus) -> None:
        body = json.dumps({"error": "too many connections"}).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
        )
        self.ctx.log(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "client": client,
                "method": "",
                "path": "",
                "status": status.value,
                "bytes": len(body),
                "ms": 0.0,
                "result": "too_many_connections",
            }
        )
        request.sendall(head.encode() + body)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.error("connection from %s ended in an error", client_address[0])


def make_server(ctx: Context, address: str, port: int) -> Server:
    handler = type("BoundHandler", (Handler,), {"ctx": ctx, "timeout": ctx.timeout_s})
    return Server((address, port), handler, ctx)
