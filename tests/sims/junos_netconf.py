"""A Junos NETCONF-over-SSH server (paramiko) in front of `junos_model.JunosDevice`.

What it models: password login for one user table; the `netconf` SSH subsystem; the hello
exchange with `]]>]]>` framing, switching to base:1.1 chunked framing when both sides offer it
(as ncclient does); `<rpc-reply>` in the NETCONF namespace with the request's message-id; the
Junos RPCs that NAPALM's `junos` driver and PyEZ send for the push engine:

- facts: `<command>show version …</command>` and `get-software-information` (host name from
  the committed config, model, version), `get-chassis-inventory` (serial number),
  `get-system-uptime-information`,
  `get-interface-information` (the interfaces the config has, all up),
  `get-configuration` with an XML filter for `system domain-name`;
- config: `lock-configuration`/`unlock-configuration`, `load-configuration` (format text,
  action merge/replace/override, or `rollback N`), `get-configuration` (format text, database
  committed or candidate; `compare="rollback" rollback="N"` gives the compare text),
  `commit-configuration` (plain, `check`, `confirmed` with `confirm-timeout` in minutes, `log`),
  `get-commit-revision-information` (NAPALM's pending-commit check);
- BGP: `get-instance-information`, `get-bgp-neighbor-information` and
  `get-bgp-summary-information` per instance;
- `close-session`.

Errors come back as Junos sends them: `<rpc-error>` with type, tag, severity, message and
`error-info/bad-element` (a refused statement inside `<load-configuration-results>`, with
`error-path`; `lock-denied` naming the holder). Any other RPC is answered with a "syntax error"
rpc-error and logged, so a client that needs more shows up in `device.log`.

Reachability follows the committed config (see `junos_model`): while the management statement
is missing, connections are accepted and closed at once (a connection refused, for the client)
and every open session is dropped before it gets another answer; while
`system services netconf ssh` is missing, the `netconf` subsystem is refused.

What it does not model: anything `junos_model` leaves out (notably Junos syntax), keys and
keyboard-interactive login, the Junos CLI and `xml-mode netconf` over exec, NETCONF on port
830 versus 22 (one port), `<get>`/`<edit-config>`/`<get-config>` of RFC 6241, notifications,
and error severities other than error.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paramiko
from lxml import etree

from sims.junos_model import JunosDevice, LoadError, Node, render

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
JUNOS_NS = "http://xml.juniper.net/junos/23.4R1/junos"
EOM = b"]]>]]>"
VERSION = "23.4R1.9"
MODEL = "mx204"
_HOST_KEY = paramiko.ECDSAKey.generate()


class RpcFail(Exception):
    """Answer with these rpc-error elements (inside `wrapper`, when given)."""

    def __init__(self, *errors: etree._Element, wrapper: str | None = None) -> None:
        super().__init__(errors)
        self.errors = errors
        self.wrapper = wrapper


def rpc_error(message: str, *, tag: str = "operation-failed", bad: str | None = None, path: str | None = None) -> Any:
    err = etree.Element("rpc-error")
    etree.SubElement(err, "error-type").text = "protocol"
    etree.SubElement(err, "error-tag").text = tag
    etree.SubElement(err, "error-severity").text = "error"
    if path is not None:
        etree.SubElement(err, "error-path").text = path
    etree.SubElement(err, "error-message").text = message
    if bad is not None:
        info = etree.SubElement(err, "error-info")
        etree.SubElement(info, "bad-element").text = bad
    return err


def _el(tag: str, text: str | None = None, **attrs: str) -> Any:
    el = etree.Element(tag, **attrs)
    if text is not None:
        el.text = text
    return el


def _sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    el = etree.SubElement(parent, tag, **attrs)
    if text is not None:
        el.text = text
    return el


def _local(el: Any) -> str:
    return str(etree.QName(el).localname)


def options(op: Any) -> dict[str, str]:
    """An RPC's arguments: its attributes and its child elements (flags as "")."""
    out = {k: str(v) for k, v in op.attrib.items()}
    for child in op:
        if isinstance(child.tag, str):
            out[_local(child)] = (child.text or "").strip()
    return out


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Session:
    """The RPC handlers of one NETCONF session."""

    def __init__(self, dev: JunosDevice, sid: int, user: str) -> None:
        self.dev = dev
        self.sid = sid
        self.user = user
        self.closing = False

    def handle(self, op: Any) -> list[Any]:
        name = _local(op)
        opts = options(op)
        if name != "configuration-text":
            args = " ".join(f"{k}={v}" if v else k for k, v in opts.items() if k != "configuration-text")
            self.dev.log.append(f"{self.sid} {name} {args}".rstrip())
        handler = getattr(self, "rpc_" + name.replace("-", "_"), None)
        if handler is None:
            raise RpcFail(rpc_error("syntax error, expecting <command>", bad=name))
        with self.dev.lock:
            result: list[Any] = handler(op, opts)
            return result

    # --- facts -------------------------------------------------------------------------------
    def rpc_command(self, op: Any, opts: dict[str, str]) -> list[Any]:
        cmd = " ".join((op.text or "").split())
        if cmd.startswith("show version"):
            return [self._software()]
        raise RpcFail(rpc_error("syntax error", bad=cmd))

    def rpc_get_software_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        return [self._software()]

    def _software(self) -> Any:
        info = _el("software-information")
        _sub(info, "host-name", self.dev.hostname())
        _sub(info, "product-model", MODEL)
        _sub(info, "product-name", MODEL)
        _sub(info, "junos-version", VERSION)
        return info

    def rpc_get_system_uptime_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        now = time.time()
        info = _el("system-uptime-information")
        cur = _sub(info, "current-time")
        _sub(cur, "date-time", _stamp(now), seconds=str(int(now)))
        booted = _sub(info, "system-booted-time")
        _sub(booted, "date-time", _stamp(self.dev.booted), seconds=str(int(self.dev.booted)))
        up = int(now - self.dev.booted)
        _sub(booted, "time-length", f"{up // 60}:{up % 60:02d}", seconds=str(up))
        return [info]

    def rpc_get_chassis_inventory(self, op: Any, opts: dict[str, str]) -> list[Any]:
        inventory = _el("chassis-inventory")
        chassis = _sub(inventory, "chassis")
        _sub(chassis, "name", "Chassis")
        _sub(chassis, "serial-number", self.dev.serial)
        _sub(chassis, "description", MODEL.upper())
        return [inventory]

    def rpc_get_interface_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        info = _el("interface-information")
        wanted = opts.get("interface-name")
        if "routing-instance" in opts:
            return [info]  # no internal routing instances here
        for name in self.dev.interfaces():
            if wanted and name != wanted:
                continue
            ifd = _sub(info, "physical-interface")
            _sub(ifd, "name", name)
            _sub(ifd, "admin-status", "up")
            _sub(ifd, "oper-status", "up")
        return [info]

    # --- configuration -------------------------------------------------------------------------
    def _locked_by_other(self) -> bool:
        return self.dev.holder is not None and self.dev.holder != self.sid

    def _lock_error(self) -> Any:
        return rpc_error(
            f"configuration database locked by:\n  admin terminal p0 (pid {self.dev.holder}) on since "
            f"{_stamp(self.dev.booted)}\n  exclusive [edit]",
            tag="lock-denied",
        )

    def rpc_lock_configuration(self, op: Any, opts: dict[str, str]) -> list[Any]:
        if self._locked_by_other():
            raise RpcFail(self._lock_error())
        if self.dev.holder is None and self.dev.candidate_modified():
            raise RpcFail(rpc_error("configuration database modified", tag="lock-denied"))
        self.dev.holder = self.sid
        return [_el("ok")]

    def rpc_unlock_configuration(self, op: Any, opts: dict[str, str]) -> list[Any]:
        if self._locked_by_other():
            raise RpcFail(self._lock_error())
        self.dev.holder = None
        return [_el("ok")]

    def rpc_load_configuration(self, op: Any, opts: dict[str, str]) -> list[Any]:
        if self._locked_by_other():
            raise RpcFail(self._lock_error(), wrapper="load-configuration-results")
        if "rollback" in opts:
            try:
                self.dev.load_rollback(int(opts["rollback"]))
            except (IndexError, ValueError):
                raise RpcFail(rpc_error("rollback file not found", bad=opts["rollback"])) from None
            return [_wrap("load-configuration-results", _el("ok"))]
        if opts.get("format", "xml") != "text" or opts.get("action") == "set":
            raise RpcFail(rpc_error("the simulator loads curly-brace text only", bad=opts.get("format", "xml")))
        text = next((c.text or "" for c in op if isinstance(c.tag, str) and _local(c) == "configuration-text"), "")
        try:
            refused = self.dev.load(text, opts.get("action", "merge"))
        except ValueError as exc:
            raise RpcFail(rpc_error(f"syntax error: {exc}"), wrapper="load-configuration-results") from None
        if refused:
            raise RpcFail(*[_refusal(e) for e in refused], wrapper="load-configuration-results")
        return [_wrap("load-configuration-results", _el("ok"))]

    def rpc_get_configuration(self, op: Any, opts: dict[str, str]) -> list[Any]:
        if opts.get("compare") == "rollback":
            n = int(opts.get("rollback", "0"))
            if n >= len(self.dev.history):
                raise RpcFail(rpc_error("rollback file not found", bad=str(n)))
            info = _el("configuration-information")
            _sub(info, "configuration-output", self.dev.compare(n) or "\n")
            return [info]
        committed = opts.get("database", "candidate") == "committed"
        tree = self.dev.running if committed else self.dev.candidate
        if opts.get("format") == "text":
            head = self.dev.history[0]
            text = f"## Last commit: {_stamp(head.when)} by {head.user}\n" + render(tree)
            return [_el("configuration-text", text)]
        filt = next((c for c in op if isinstance(c.tag, str) and _local(c) == "configuration"), None)
        if filt is None:
            raise RpcFail(rpc_error("the simulator answers XML configuration requests only for a filter"))
        return [_xml_filter(filt, tree)]

    def rpc_commit_configuration(self, op: Any, opts: dict[str, str]) -> list[Any]:
        if self._locked_by_other():
            raise RpcFail(self._lock_error())
        results = _el("commit-results")
        engine = _sub(results, "routing-engine", **{f"{{{JUNOS_NS}}}style": "normal"})
        _sub(engine, "name", "re0")
        if "check" in opts:
            _sub(engine, "commit-check-success")
            return [results]
        minutes = None
        if "confirmed" in opts:
            minutes = int(opts.get("confirm-timeout") or 10)
        self.dev.commit(minutes, opts.get("log", ""))
        _sub(engine, "commit-success")
        _sub(engine, "commit-revision", f"re0-{int(time.time())}-{len(self.dev.history)}")
        return [results]

    def rpc_get_commit_revision_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        head = self.dev.history[0]
        info = _el("commit-revision-information")
        _sub(info, "date-time", _stamp(head.when), seconds=str(int(head.when)))
        _sub(info, "revision", f"re0-{int(head.when)}-{len(self.dev.history)}")
        _sub(info, "user", head.user)
        _sub(info, "client", "netconf")
        if head.comment:
            _sub(info, "comment", head.comment)
        return [info]

    # --- BGP ---------------------------------------------------------------------------------
    def rpc_get_instance_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        info = _el("instance-information")
        for name in self.dev.instances():
            core = _sub(info, "instance-core")
            _sub(core, "instance-name", name)
            _sub(core, "instance-type", "forwarding" if name == "master" else "vrf")
        return [info]

    def _peers(self, opts: dict[str, str]) -> list[Any]:
        instance = opts.get("instance") or "master"
        return [p for p in self.dev.bgp_peers() if p.instance == instance]

    def rpc_get_bgp_neighbor_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        info = _el("bgp-information")
        for peer in self._peers(opts):
            up = self.dev.established(peer)
            el = _sub(info, "bgp-peer")
            _sub(el, "peer-address", peer.address + ("+179" if up else ""))
            _sub(el, "peer-as", str(peer.peer_as))
            _sub(el, "local-as", str(peer.local_as))
            _sub(el, "peer-group", peer.group)
            if peer.description:
                _sub(el, "description", peer.description)
            _sub(el, "peer-state", "Established" if up else "Active")
            _sub(el, "local-id", self.dev.router_id)
            if up:
                _sub(el, "peer-id", peer.address if "." in peer.address else self.dev.router_id)
                family = "inet6.0" if ":" in peer.address else "inet.0"
                rib = _sub(el, "bgp-rib")
                _sub(rib, "name", family if peer.instance == "master" else f"{peer.instance}.{family}")
                _sub(rib, "send-state", "in sync")
                for counter in ("received-prefix-count", "accepted-prefix-count", "advertised-prefix-count"):
                    _sub(rib, counter, "0")
        return [info]

    def rpc_get_bgp_summary_information(self, op: Any, opts: dict[str, str]) -> list[Any]:
        info = _el("bgp-information")
        for peer in self._peers(opts):
            el = _sub(info, "bgp-peer")
            _sub(el, "peer-address", peer.address)
            _sub(el, "elapsed-time", "1:00", seconds="60")
        return [info]

    def rpc_close_session(self, op: Any, opts: dict[str, str]) -> list[Any]:
        self.closing = True
        return [_el("ok")]

    def end(self) -> None:
        """The session ends: an exclusive lock goes, and with it the changes nobody committed."""
        with self.dev.lock:
            if self.dev.holder == self.sid:
                self.dev.holder = None
                self.dev.load_rollback(0)


def _wrap(tag: str, *children: Any) -> Any:
    el = _el(tag)
    for child in children:
        el.append(child)
    return el


def _refusal(err: LoadError) -> Any:
    path = "[edit" + "".join(" " + p for p in err.path) + "]"
    return rpc_error("syntax error", bad=err.statement, path=path)


def _xml_filter(filt: Any, tree: Node) -> Any:
    """The leaves a `<configuration>` filter asks for, as XML (enough for `system domain-name`)."""
    out = _el("configuration")

    def walk(f: Any, node: Node, into: Any) -> None:
        for want in f:
            if not isinstance(want.tag, str):
                continue
            tag = _local(want)
            match = next((c for c in (node.children or {}).values() if c.words.split()[0] == tag), None)
            if match is None:
                continue
            if match.children is None:
                _sub(into, tag, match.words.partition(" ")[2].strip('"'))
            else:
                walk(want, match, _sub(into, tag))

    walk(filt, tree, out)
    return out


class _Auth(paramiko.ServerInterface):
    def __init__(self, server: NetconfServer) -> None:
        self.server = server
        self.user = ""
        self.subsystem = threading.Event()
        self.channel: paramiko.Channel | None = None

    def check_auth_password(self, username: str, password: str) -> int:
        if self.server.users.get(username) == password:
            self.user = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != "netconf" or not self.server.device.netconf_enabled():
            return False
        self.channel = channel
        self.subsystem.set()
        return True


class NetconfServer:
    """Start with `start()`, stop with `stop()`; `port` is the ephemeral port on 127.0.0.1."""

    def __init__(self, device: JunosDevice, users: dict[str, str] | None = None, *, base11: bool = True) -> None:
        self.device = device
        self.users = users or {"admin": "admin"}
        self.base11 = base11
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []
        self._next_sid = 4100
        self._accept = threading.Thread(target=self._accept_loop, name="sim-junos-accept", daemon=True)

    def start(self) -> NetconfServer:
        self._accept.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.device.stop()
        self._accept.join(timeout=5)
        self._sock.close()
        for transport in list(self._transports):
            transport.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            if not self.device.reachable():
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), name="sim-junos-session", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        auth = _Auth(self)
        transport.add_server_key(_HOST_KEY)
        try:
            transport.start_server(server=auth)
            chan = None
            deadline = time.monotonic() + 10
            while chan is None and transport.is_active() and not self._stopping.is_set():
                if time.monotonic() > deadline:
                    return
                chan = transport.accept(timeout=0.1)
            if chan is None or not auth.subsystem.wait(timeout=10):
                return
            with self.device.lock:
                self._next_sid += 1
                sid = self._next_sid
            session = Session(self.device, sid, auth.user)
            try:
                _Framing(chan, self).run(session)
            finally:
                session.end()
        except (EOFError, OSError, paramiko.SSHException):
            pass
        finally:
            transport.close()
            self._transports.remove(transport)


class _Framing:
    """One channel: the hello exchange, then framed RPCs in and replies out."""

    def __init__(self, chan: paramiko.Channel, server: NetconfServer) -> None:
        self.chan = chan
        self.server = server
        self.buf = b""
        self.chunked = False
        chan.settimeout(0.2)

    def alive(self) -> bool:
        return not self.server._stopping.is_set() and self.server.device.reachable()

    def _recv(self) -> bytes:
        while True:
            if not self.alive():
                raise EOFError
            try:
                data = self.chan.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise EOFError
            return bytes(data)

    def read(self) -> bytes:
        if not self.chunked:
            while EOM not in self.buf:
                self.buf += self._recv()
            msg, _, self.buf = self.buf.partition(EOM)
            return msg
        out = b""
        while True:
            self._need(2)
            if not self.buf.startswith(b"\n#"):
                raise EOFError("chunked framing expected")
            self.buf = self.buf[2:]
            while b"\n" not in self.buf:
                self.buf += self._recv()
            header, _, self.buf = self.buf.partition(b"\n")
            if header == b"#":
                return out
            size = int(header)
            self._need(size)
            out += self.buf[:size]
            self.buf = self.buf[size:]

    def _need(self, size: int) -> None:
        while len(self.buf) < size:
            self.buf += self._recv()

    def write(self, payload: bytes) -> None:
        if self.chunked:
            self.chan.sendall(b"\n#%d\n" % len(payload) + payload + b"\n##\n")
        else:
            self.chan.sendall(payload + b"\n" + EOM)

    def run(self, session: Session) -> None:
        caps = [
            "urn:ietf:params:netconf:base:1.0",
            "urn:ietf:params:netconf:capability:candidate:1.0",
            "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
            "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
            "http://xml.juniper.net/netconf/junos/1.0",
        ]
        if self.server.base11:
            caps.insert(1, "urn:ietf:params:netconf:base:1.1")
        hello = etree.Element(f"{{{NC_NS}}}hello", nsmap={None: NC_NS})
        cap_el = etree.SubElement(hello, f"{{{NC_NS}}}capabilities")
        for cap in caps:
            etree.SubElement(cap_el, f"{{{NC_NS}}}capability").text = cap
        etree.SubElement(hello, f"{{{NC_NS}}}session-id").text = str(session.sid)
        self.write(b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(hello))
        client = etree.fromstring(self.read().strip())
        offered = {(c.text or "").strip() for c in client.iter(f"{{{NC_NS}}}capability")}
        self.chunked = self.server.base11 and "urn:ietf:params:netconf:base:1.1" in offered
        while True:
            raw = self.read().strip()
            if not raw:
                continue
            self.write(self.reply(session, raw))
            if session.closing:
                return

    def reply(self, session: Session, raw: bytes) -> bytes:
        rpc = etree.fromstring(raw)
        reply = etree.Element(f"{{{NC_NS}}}rpc-reply", nsmap={None: NC_NS, "junos": JUNOS_NS})
        if "message-id" in rpc.attrib:
            reply.set("message-id", rpc.get("message-id"))
        ops = [c for c in rpc if isinstance(c.tag, str)]
        try:
            if len(ops) != 1:
                raise RpcFail(rpc_error("syntax error, expecting one operation"))
            children = session.handle(ops[0])
        except RpcFail as fail:
            holder = _el(fail.wrapper) if fail.wrapper else None
            for err in fail.errors:
                (holder if holder is not None else reply).append(err)
            if holder is not None:
                reply.append(holder)
        else:
            for child in children:
                reply.append(child)
        # Junos answers in its own namespace-free element names under the NETCONF namespace
        return etree.tostring(_into_ns(reply))


def _into_ns(reply: Any) -> Any:
    """Elements built without a namespace take the NETCONF default namespace, as on the wire."""
    for el in reply.iter():
        if isinstance(el.tag, str) and not el.tag.startswith("{"):
            el.tag = f"{{{NC_NS}}}{el.tag}"
    return reply


__all__ = ["NetconfServer", "RpcFail", "Session"]
