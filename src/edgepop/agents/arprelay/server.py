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
import math
import threading
import urllib.parse
from typing import Any

from edgepop.agents.arprelay.core import RelayState
from edgepop.agents.http import BoundedServer, QuietHandler


class RelayServer:
    def __init__(self, state: RelayState, listen: str, port: int, token: str | None, max_wait_s: int) -> None:
        self.state = state
        self.token = token
        self.max_wait_s = max_wait_s
        relay = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            # a long poll holds the answer up to max_wait_s: the socket may idle that long, not longer
            timeout = QuietHandler.timeout + max_wait_s

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
                    version = _decimal(query["version"][0]) if "version" in query else None
                    wait = float(query.get("wait", ["0"])[0])
                    if not math.isfinite(wait) or len(query.get("wait", ["0"])[0]) > 16:
                        raise ValueError("wait")
                    wait = min(wait, relay.max_wait_s)
                except ValueError:
                    self._json(400, {"error": "version must be a decimal integer and wait a number of seconds"})
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

        self.httpd = BoundedServer((listen, port), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="arprelay-http", daemon=True)

    def authorised(self, header: str) -> bool:
        if self.token is None:
            return True
        given = header[7:] if header.startswith("Bearer ") else ""
        # headers arrive as latin-1 text; compare bytes so a non-ASCII header is just a wrong token
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def start(self) -> RelayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _decimal(text: str) -> int:
    """A version number: ASCII digits only, at most 18 of them (int() takes '١٢', '1_0' and 4300 digits)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(text)
    return int(text)
