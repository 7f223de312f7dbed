"""An Arista EOS SSH shell (paramiko server) in front of `eos_model.EosDevice`, for netmiko.

What it models: password login for one user table; the EOS prompt `HOST>` / `HOST#` /
`HOST(config)#` / `HOST(config-s-SESSION)#` (with the sub-mode appended, e.g. `-if`), which
netmiko's `arista_eos` driver keys on; `terminal width`/`terminal length` answers as netmiko expects
them; `enable`; `configure [terminal]` editing the running config directly and
`configure session NAME` editing a session; `end`/`exit`; `show` commands in any mode; the
` | json` pipe (the same JSON the eAPI simulator returns); `show version` as text in the layout
ntc-templates' TextFSM template parses; `show management api http-commands`. A refused line prints
EOS's "% Invalid input" and the CLI carries on with the next one: the shell never raises, which is
exactly why a client must read what it answered.

What it does not model: anything `eos_model` leaves out (notably EOS syntax), keys and keyboard-
interactive login, command abbreviation and completion, paging, line editing, banners and
multi-line input, and more than one command per line.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import paramiko

from sims.eos_model import Block, CliError, EosDevice, Session


class _Auth(paramiko.ServerInterface):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.username = ""
        self.shell = threading.Event()

    def check_auth_password(self, username: str, password: str) -> int:
        ok = self.users.get(username) == password
        if ok:
            self.username = username
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.shell.set()
        return True


class Shell:
    """One CLI session's state: privilege, mode, the config session being edited."""

    def __init__(self, dev: EosDevice) -> None:
        self.dev = dev
        self.privileged = False
        self.config = False
        self.sess: Session | None = None
        self.block: Block | None = None

    def prompt(self) -> str:
        host = self.dev.hostname()
        if not self.config:
            return f"{host}{'#' if self.privileged else '>'}"
        mode = "config"
        if self.sess is not None:
            mode += f"-s-{self.sess.name[:14]}"
        if self.block is not None:
            mode += "-" + self.block.line.split()[0][:2]
        return f"{host}({mode})#"

    def show_version_text(self) -> str:
        v = self.dev.exec_command("show version")
        assert isinstance(v, dict)
        minutes = int(v["uptime"] // 60)
        return (
            f"Arista {v['modelName']}\nHardware version:\nSerial number: {v['serialNumber']}\n"
            "Hardware MAC address: 001c.7300.0001\nSystem MAC address: 001c.7300.0001\n\n"
            f"Software image version: {v['version']}\nArchitecture: {v['architecture']}\n"
            f"Internal build version: {v['internalVersion']}\nImage format version: 1.0\n"
            "Image optimization: None\n\nKernel version: 5.10.0\n\n"
            f"Uptime: 0 weeks, 0 days, 0 hours and {minutes} minutes\n"
            "Total memory: 2014088 kB\nFree memory: 1040484 kB\n"
        )

    def show(self, cmd: str) -> str:
        as_json = cmd.endswith(" | json")
        cmd = cmd.removesuffix(" | json")
        if cmd == "show management api http-commands":
            on = self.dev.running.has("management api http-commands", "no shutdown")
            data: Any = {"enabled": on, "httpsServer": {"configured": True, "running": on, "port": 443}}
            if not as_json:
                return (
                    f"Enabled:            {'Yes' if on else 'No'}\n"
                    f"HTTPS server:       {'running' if on else 'shutdown'}, set to use port 443\n"
                )
        elif cmd == "show version" and not as_json:
            return self.show_version_text()
        else:
            data = self.dev.exec_command(cmd)
        if isinstance(data, str):
            return data
        return json.dumps(data, indent=2) + "\n" if as_json else json.dumps(data) + "\n"

    def run(self, line: str) -> str | None:
        """Output of one line (None: close the session)."""
        cmd = line.strip()
        dev = self.dev
        with dev.lock:
            if cmd:
                dev.log.append(cmd)
            try:
                if not cmd:
                    return ""
                if cmd.startswith("terminal width"):
                    return f"Width set to {cmd.split()[-1]} columns.\n"
                if cmd == "terminal length 0":
                    return "Pagination disabled.\n"
                if cmd.startswith("do "):
                    cmd = cmd[3:]
                if cmd.startswith("show "):
                    return self.show(cmd)
                if not self.config:
                    return self._exec(cmd)
                return self._configure(cmd)
            except CliError as exc:
                return f"{exc}\n"

    def _exec(self, cmd: str) -> str | None:
        if cmd == "enable":
            self.privileged = True
            return ""
        if cmd in ("exit", "logout", "quit"):
            return None
        if not self.privileged:
            raise CliError("% Invalid input (privileged mode required)")
        if cmd in ("configure", "configure terminal"):
            self.config = True
            return ""
        parts = cmd.split()
        if len(parts) == 3 and parts[:2] == ["configure", "session"]:
            self.sess, self.block, self.config = self.dev.open_session(parts[2]), None, True
            return ""
        out = self.dev.exec_command(cmd)
        return out if isinstance(out, str) else ""

    def _configure(self, cmd: str) -> str:
        parts = cmd.split()
        if cmd == "end":
            self.config, self.sess, self.block = False, None, None
            return ""
        if cmd == "exit":
            if self.block is not None:
                self.block = None
            else:
                self.config, self.sess = False, None
            return ""
        if len(parts) == 3 and parts[:2] == ["configure", "session"]:
            self.sess, self.block = self.dev.open_session(parts[2]), None
            return ""
        if len(parts) > 3 and parts[:2] == ["configure", "session"]:  # commit/abort from config mode
            if self.sess is not None and self.sess.name == parts[2]:
                self.config, self.sess, self.block = False, None, None
            out = self.dev.exec_command(cmd)
            return out if isinstance(out, str) else ""
        if self.sess is not None and cmd in ("commit", "abort"):
            self.dev.exec_command(f"configure session {self.sess.name} {cmd}")
            self.config, self.sess, self.block = False, None, None
            return ""
        self.block = self.dev.config_line(self.sess, self.block, cmd)
        return ""


class SshServer:
    """Start with `start()`, stop with `stop()`; `port` is the ephemeral port on 127.0.0.1.

    One `make_shell(username)` per session; a subclass serves another CLI over the same loop."""

    def __init__(self, device: Any, users: dict[str, str] | None = None) -> None:
        self.device = device
        self.users = users or {"admin": "admin"}
        self.host_key = paramiko.ECDSAKey.generate()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)  # so the accept loop notices stop()
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._accept, name=f"sim-{type(self).__name__}", daemon=True)

    def make_shell(self, username: str) -> Any:
        """The CLI state of one session: `prompt()` and `run(line)` (None ends the session)."""
        return Shell(self.device)

    def start(self) -> SshServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for transport in self._transports:
            transport.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        transport.add_server_key(self.host_key)
        auth = _Auth(self.users)
        try:
            transport.start_server(server=auth)
        except (paramiko.SSHException, EOFError, OSError):
            return
        chan = transport.accept(20)
        if chan is None or not auth.shell.wait(10):
            transport.close()
            return
        shell = self.make_shell(auth.username)
        try:
            chan.sendall(f"\r\n{shell.prompt()}".encode())
            buf = b""
            while not self._stop.is_set():
                data = chan.recv(4096)
                if not data:
                    break
                buf += data
                while True:
                    cut = min((i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0), default=-1)
                    if cut < 0:
                        break
                    line, buf = buf[:cut].decode(errors="replace"), buf[cut + 1 :]
                    if buf.startswith(b"\n"):
                        buf = buf[1:]
                    out = shell.run(line)
                    if out is None:
                        chan.sendall(f"{line}\r\n".encode())
                        chan.close()
                        return
                    text = out.replace("\n", "\r\n")
                    chan.sendall(f"{line}\r\n{text}{shell.prompt()}".encode())
                    time.sleep(0)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            transport.close()
