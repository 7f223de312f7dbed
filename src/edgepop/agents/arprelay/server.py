"""The relay's HTTP endpoint.

`GET /v1/mapping[?epoch=E&version=V&wait=S]` with `Authorization: Bearer TOKEN` (when the relay has
a token). Without epoch/version, or when they differ from the relay's, the current mapping is
answered at once (200, JSON). Otherwise the request is held until the mapping changes (200) or
`wait` seconds pass (304, no body): a long poll, so a change reaches every waiting host in the time
one HTTP answer takes. `GET /v1/health` answers the relay's state, without a token.
"""

from __future__ import annotations

import hmac
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgepop.agents.arprelay.core import RelayState


class RelayServer:
    def __init__(self, state: RelayState, listen: str, port: int, token: str | None, max_wait_s: int) -> None:
        self.state = state
        self.token = token
        self.max_wait_s = max_wait_s
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/v1/health":
                    now = relay.state.mapping
                    self._json(200, {"epoch": now.epoch, "version": now.version, "complete": now.complete,
                                     "nexthops": len(now.nexthops)})  # fmt: skip
                    return
                if url.path != "/v1/mapping":
                    self._json(404, {"error": f"no such resource {url.path}"})
                    return
                if not relay.authorised(self.headers.get("Authorization", "")):
                    self._json(401, {"error": "missing or wrong bearer token"})
                    return
                query = urllib.parse.parse_qs(url.query)
                try:
                    epoch = query.get("epoch", [None])[0]
                    version = int(query["version"][0]) if "version" in query else None
                    wait = min(float(query.get("wait", ["0"])[0]), relay.max_wait_s)
                except ValueError:
                    self._json(400, {"error": "version and wait must be numbers"})
                    return
                m = relay.state.wait_newer(epoch, version, max(wait, 0.0))
                if m is None:
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._json(200, m.to_json())

            def _json(self, status: int, doc: dict[str, Any]) -> None:
                payload = json.dumps(doc, sort_keys=True).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        family_server = ThreadingHTTPServer
        if ":" in listen:
            import socket

            class V6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            family_server = V6Server
        self.httpd = family_server((listen, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="arprelay-http", daemon=True)

    def authorised(self, header: str) -> bool:
        if self.token is None:
            return True
        given = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def start(self) -> RelayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
