"""The HTTP server shape every agent endpoint uses: bounded in time, in connections and in noise.

The standard library's ThreadingHTTPServer starts one thread per connection and waits on a socket for
as long as the client likes: a client that opens connections and trickles its headers (or never sends
them) pins one thread each until the agent runs out. Agents sit on the PoP's server LAN, so the bounds
are set here once:

- every connection's socket has a timeout (`Handler.timeout`): a slow or partial request is dropped;
- at most `max_connections` are served at once (and `max_per_client` from one address, when set);
  the next one gets `503` (`429`) and is closed straight away;
- an exception in a handler is one log line (never a traceback on stderr, never one to the client).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("edgepop.http")

REQUEST_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux: bind before the address is configured


class BoundedServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with caps on concurrent connections (in all, and per client when
    `max_per_client` is set) and quiet error handling. Subclasses may override `refuse` to answer a
    refused connection their own way (a JSON body, a log line)."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS
    max_per_client: int | None = None
    freebind = False

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], **kwargs: Any) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self._active: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        super().__init__(addr, handler, **kwargs)

    def server_bind(self) -> None:
        if self.freebind and self.address_family == socket.AF_INET:
            self.socket.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        with self._count_lock:
            if sum(self._active.values()) >= self.max_connections:
                status: HTTPStatus | None = HTTPStatus.SERVICE_UNAVAILABLE
            elif self.max_per_client is not None and self._active[client] >= self.max_per_client:
                status = HTTPStatus.TOO_MANY_REQUESTS
            else:
                status = None
                self._active[client] += 1
        if status is not None:
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                self.refuse(request, client, status)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            client = str(client_address[0])
            with self._count_lock:
                self._active[client] -= 1
                if self._active[client] <= 0:
                    del self._active[client]

    def refuse(self, request: socket.socket, client: str, status: HTTPStatus) -> None:
        """Answer a connection over the caps (the server closes it afterwards)."""
        del client
        request.sendall(
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Length: 0\r\nRetry-After: 5\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that went away or timed out is not news; anything else is one line, no traceback
        exc = sys.exc_info()[1]
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return
        log.warning("request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)


class QuietHandler(BaseHTTPRequestHandler):
    """Base handler: socket timeout per connection; no per-request lines on stderr."""

    timeout = REQUEST_TIMEOUT_S
    # errors before the version is parsed are answered as HTTP/1.0 (with a status line), never 0.9
    default_request_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args
