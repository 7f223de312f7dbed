"""An Arista eAPI server (JSON-RPC over HTTPS) in front of `eos_model.EosDevice`.

What it models: `POST /command-api` with `runCmds` (version, cmds as strings or {cmd, input},
format json|text) as pyeapi and NAPALM's `eos` driver send it; HTTP Basic authentication against
one user table (401 on a wrong password, as EOS answers); each request is a fresh CLI session that
starts in exec mode, enters a session with `configure session NAME` and leaves it with `end`;
the first failing command stops the request with EOS's error shape (code 1002, per-command `data`
with `errors` on the failing one); the API goes away (connection closed without an answer) while
the running config lacks `management api http-commands` / `no shutdown`. It listens on
127.0.0.1 only, on an ephemeral port, with a self-signed certificate made at start.

What it does not model: anything `eos_model` leaves out (notably EOS syntax), eAPI over HTTP or
Unix sockets, `/login` session cookies, `autoComplete`/`expandAliases`, streaming, and TLS
details beyond a working handshake.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sims.eos_model import Block, CliError, EosDevice, Session


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (cryptography is a NAPALM dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sim-eos")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def run_cmds(dev: EosDevice, cmds: list[Any], fmt: str) -> tuple[list[Any], dict[str, Any] | None]:
    """Run one eAPI request's commands; return (results, error or None)."""
    results: list[Any] = []
    sess: Session | None = None
    mode: Block | None = None
    with dev.lock:
        for i, item in enumerate(cmds):
            cmd = (item["cmd"] if isinstance(item, dict) else str(item)).strip()
            dev.log.append(cmd)
            try:
                if sess is not None:
                    if cmd == "end":
                        sess, mode, out = None, None, {}
                    else:
                        mode = dev.config_line(sess, mode, cmd)
                        out = {}
                elif cmd.startswith("configure session ") and len(cmd.split()) == 3:
                    sess, mode, out = dev.open_session(cmd.split()[2]), None, {}
                else:
                    out = dev.exec_command(cmd)
            except CliError as exc:
                text = str(exc).lstrip("% ")
                data = [*results, {"errors": [text]}]
                message = f"CLI command {i + 1} of {len(cmds)} '{cmd}' failed: invalid command"
                return results, {"code": 1002, "message": message, "data": data}
            if fmt == "text":
                out = {"output": out if isinstance(out, str) else (json.dumps(out) if out else "")}
            elif isinstance(out, str):
                out = {"output": out} if cmd.startswith("show") else {"messages": [out]}
            results.append(out)
    return results, None


class EapiServer:
    """Start with `start()`, stop with `stop()`; `port` is the ephemeral port on 127.0.0.1."""

    def __init__(self, device: EosDevice, users: dict[str, str] | None = None) -> None:
        self.device = device
        self.users = users or {"admin": "admin"}
        self._tmp = tempfile.TemporaryDirectory(prefix="sim-eos-")
        cert, key = self_signed(Path(self._tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                if not server.device.eapi_enabled():
                    self.close_connection = True
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not server.authorised(self.headers.get("Authorization", "")):
                    self._send(401, b'{"error": "Unauthorized"}', "Unauthorized")
                    return
                if self.path != "/command-api":
                    self._send(404, b"{}", "Not Found")
                    return
                req = json.loads(body)
                params = req.get("params", {})
                results, error = run_cmds(server.device, params.get("cmds", []), params.get("format", "json"))
                reply: dict[str, Any] = {"jsonrpc": "2.0", "id": req.get("id")}
                if error is None:
                    reply["result"] = results
                else:
                    reply["error"] = error
                self._send(200, json.dumps(reply).encode())

            def _send(self, status: int, payload: bytes, reason: str | None = None) -> None:
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sim-eapi", daemon=True)

    def authorised(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password

    def start(self) -> EapiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
        self._tmp.cleanup()
