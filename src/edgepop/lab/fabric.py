"""An anycast PoP in network namespaces: the PoP router, its servers and a client, with the BIRD and
healthd configurations edgepop renders for them, running for real.

What it models: the router LAN and the server-to-server network (one Linux bridge each, in a
namespace of their own), the router's kernel FIB with ECMP hashing on L4 ports, eBGP with BFD
between every server and the router, each server's anycast addresses on `lo`, an HTTP service per
server (busybox httpd answering "http served by <server>" and /healthz), healthd with its status
endpoint and peers, and a client on the router's first provider link that requests the anycast
address with a new flow per request. The BIRD configurations are the rendered ones, with two local
changes: logs go to a file, and the control socket is per namespace.

What it does not model: switches and LACP (the bridges stand in for the switch), the providers (the
router's provider sessions stay idle; the client only borrows the first provider's link addresses),
systemd (the service is restarted by a command, not a unit), management and IPMI networks.

It is for the tests and benchmarks that need real routing but not containers: it comes up in a few
seconds and `down()` removes every namespace and process it made, also after a failed `up()`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from edgepop.bird.control import BirdControl, Protocol
from edgepop.derive import derive_all
from edgepop.render import render_device, render_template
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[3]
ROLE_DEFAULTS = ROOT / "roles" / "healthd" / "defaults" / "main.yml"

Log = Callable[[str], None]


class FabricError(Exception):
    """A step of bringing the fabric up failed; the message names the step."""


def _run(argv: list[str], *, check: bool = True, timeout: float = 30) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise FabricError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass
class Node:
    """One namespace and the processes the fabric started in it."""

    name: str
    ns: str
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return _run(self.argv(*argv), check=check, timeout=timeout)

    def stop(self, what: str) -> None:
        """End the process this node started as `what` (resumed first if a test stopped it):
        SIGTERM, then SIGKILL after 5 s; always reaped."""
        proc = self.procs.pop(what, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def bird_socket(self) -> str:
        return str(self.workdir / "bird.ctl")

    def protocols(self) -> dict[str, Protocol]:
        """BIRD's protocols in this namespace, over its control socket."""
        with BirdControl(self.bird_socket, timeout=2.0) as bird:
            return bird.show_protocols()

    def birdc(self, *command: str) -> str:
        return _run(["birdc", "-s", self.bird_socket, *command])

    def pids(self) -> list[int]:
        out = _run(["ip", "netns", "pids", self.ns], check=False)
        return [int(p) for p in out.split()]

    def pids_of(self, program: str) -> list[int]:
        """Processes in this namespace whose command line starts with `program` (a basename)."""
        found = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                words = [Path(a.decode(errors="replace")).name for a in argv[:2] if a]
                if program in words:
                    found.append(pid)
        return found


@dataclass
class Server(Node):
    lan_v4: str = ""
    internal_v4: str = ""
    weight: int = 0


class NamespaceLab:
    """A lab built from network namespaces, used as a context manager: `up()` on entry (and `down()`
    again when `up()` fails part-way, so a half-built lab leaves nothing behind), `down()` on exit."""

    def up(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


class Fabric(NamespaceLab):
    """`with Fabric(inventory, workdir) as fab:` brings the PoP up and always takes it down."""

    def __init__(
        self,
        inventory: Path,
        workdir: Path,
        *,
        servers: Iterable[str] | None = None,
        services: Iterable[str] = ("http",),
        healthd: bool = True,
        healthd_settings: dict[str, Any] | None = None,
        check_overrides: dict[str, Any] | None = None,
        tag: str | None = None,
        log: Log | None = None,
    ) -> None:
        self.inventory = inventory
        self.workdir = workdir
        self.want_servers = list(servers) if servers is not None else None
        self.services = set(services)
        self.with_healthd = healthd
        self.healthd_settings = healthd_settings or {}
        self.check_overrides = check_overrides or {}
        self.tag = tag or f"epf{os.getpid() % 100000}"
        self.log = log or (lambda msg: None)
        self.configs: dict[str, Any] = {}
        self.router: Node | None = None
        self.client: Node | None = None
        self.switch: Node | None = None
        self.servers: dict[str, Server] = {}
        self.extra: list[Node] = []  # nodes tests added (add_node): a control server, say
        self.anycast_v4: dict[str, str] = {}  # service -> its IPv4 address
        self.client_v4 = ""

    # --- up and down ---------------------------------------------------------------------------

    def _nodes(self) -> list[Node]:
        nodes: list[Node | None] = [self.client, self.router, *self.servers.values(), *self.extra, self.switch]
        return [n for n in nodes if n is not None]

    def _node(self, name: str, cls: type[Node] = Node, **extra: Any) -> Any:
        ns = f"{self.tag}-{name}"
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        node = cls(name=name, ns=ns, workdir=workdir, **extra)
        _run(["ip", "netns", "add", ns])
        node.run("ip", "link", "set", "lo", "up")
        return node

    def up(self) -> None:
        model = load_valid(self.inventory)
        self.configs = derive_all(model)
        routers = [h for h, sc in self.configs.items() if sc["kind"] == "router" and sc.get("platform") == "bird"]
        if not routers:
            raise FabricError(f"{self.inventory}: no router of platform bird")
        rtr = self.configs[routers[0]]
        names = self.want_servers or [h for h, sc in self.configs.items() if sc["kind"] == "server"]
        t0 = time.monotonic()
        self.switch = self._node("sw")
        for bridge in ("brx", "bri"):
            self.switch.run("ip", "link", "add", bridge, "type", "bridge", "forward_delay", "0")
            self.switch.run("ip", "link", "set", bridge, "up")
        self.router = self._node(routers[0])
        self.client = self._node("client")
        self._cable_router(rtr)
        for name in names:
            self._add_server(name)
        self._pin_connections(rtr)
        self._start_bird(self.router, rtr)
        for server in self.servers.values():
            self._start_service(server)
            self._start_bird(server, self.configs[server.name])
        if self.with_healthd:
            for server in self.servers.values():
                self._start_healthd(server)
        self.log(
            f"fabric {self.tag}: {routers[0]}, {', '.join(self.servers)} and a client in {time.monotonic() - t0:.1f} s"
        )

    def down(self) -> None:
        """Stop every process the fabric started (agents first, so they drain), remove its namespaces."""
        for node in self._nodes():
            for name in ("healthd", "bird"):
                node.stop(name)
        existing = set(_run(["ip", "netns", "list"], check=False).split())
        for node in self._nodes():
            if node.ns not in existing:
                continue
            for pid in node.pids():  # what ran inside our namespace: the services, their restarts
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _run(["ip", "netns", "del", node.ns], check=False)
        self.servers, self.router, self.client, self.switch, self.extra = {}, None, None, None, []

    # --- cabling -------------------------------------------------------------------------------

    def _veth(self, a: Node, a_name: str, b: Node, b_name: str) -> None:
        _run(["ip", "link", "add", a_name, "netns", a.ns, "type", "veth", "peer", "name", b_name, "netns", b.ns])
        a.run("ip", "link", "set", a_name, "up")
        b.run("ip", "link", "set", b_name, "up")

    def _to_bridge(self, node: Node, ifname: str, bridge: str, port: str) -> None:
        assert self.switch is not None
        self._veth(node, ifname, self.switch, port)
        self.switch.run("ip", "link", "set", port, "master", bridge)

    @staticmethod
    def _address(node: Node, ifname: str, cidr: str | None) -> None:
        if cidr:
            extra = ["nodad"] if ":" in cidr else []
            node.run("ip", "addr", "add", cidr, "dev", ifname, *extra)

    def _cable_router(self, rtr: dict[str, Any]) -> None:
        assert self.router is not None and self.client is not None
        for key, value in rtr.get("sysctl", {}).items():
            self.router.run("sysctl", "-qw", f"{key}={value}")
        lan = next(i for i in rtr["interfaces"] if i["lan"])
        self._to_bridge(self.router, lan["name"], "brx", "r-lan")
        self._address(self.router, lan["name"], lan["address_v4"])
        self._address(self.router, lan["name"], lan["address_v6"])
        # the client sits where the first provider's router would: its addresses, the router's link
        provider = rtr["bgp"]["providers"][0]
        link = next(i for i in rtr["interfaces"] if i["name"] == provider["port"])
        self._veth(self.router, link["name"], self.client, "up0")
        self._address(self.router, link["name"], link["address_v4"])
        self._address(self.router, link["name"], link["address_v6"])
        plen4 = ipaddress.ip_interface(link["address_v4"]).network.prefixlen
        plen6 = ipaddress.ip_interface(link["address_v6"]).network.prefixlen
        self._address(self.client, "up0", f"{provider['peer_v4']}/{plen4}")
        self._address(self.client, "up0", f"{provider['peer_v6']}/{plen6}")
        self.client.run("ip", "route", "add", "default", "via", provider["local_v4"])
        self.client.run("ip", "-6", "route", "add", "default", "via", provider["local_v6"])
        self.client_v4 = provider["peer_v4"]

    def _add_server(self, name: str) -> None:
        sc = self.configs.get(name)
        if sc is None or sc["kind"] != "server":
            raise FabricError(f"{self.inventory}: no server {name}")
        carriers = sc["interfaces"]["bonds"] + sc["interfaces"]["nics"]
        ext = next(c for c in carriers if c["group"] == "external" and c.get("address_v4"))
        internal = next((c for c in carriers if c["group"] == "internal" and c.get("address_v4")), None)
        server: Server = self._node(
            name,
            Server,
            lan_v4=str(ipaddress.ip_interface(ext["address_v4"]).ip),
            internal_v4=str(ipaddress.ip_interface(internal["address_v4"]).ip) if internal else "",
            weight=int(sc["bgp"]["med"]),
        )
        self.servers[name] = server
        for key, value in sc.get("sysctl", {}).items():
            server.run("sysctl", "-qw", f"{key}={value}")
        self._to_bridge(server, "ext0", "brx", f"x-{name}")
        self._address(server, "ext0", ext["address_v4"])
        self._address(server, "ext0", ext.get("address_v6"))
        if internal is not None:
            self._to_bridge(server, "int0", "bri", f"i-{name}")
            self._address(server, "int0", internal["address_v4"])
            self._address(server, "int0", internal.get("address_v6"))
        for cidr in sc["interfaces"]["loopback"]:
            self._address(server, "lo", cidr)
        server.run("ip", "route", "add", "default", "via", sc["interfaces"]["gateways_v4"][0])
        if sc["interfaces"]["gateways_v6"]:
            server.run("ip", "-6", "route", "add", "default", "via", sc["interfaces"]["gateways_v6"][0])
        for svc in sc["services"]:
            if svc["prefixes_v4"]:
                self.anycast_v4[svc["name"]] = str(ipaddress.ip_interface(svc["prefixes_v4"][0]).ip)

    def _pin_connections(self, rtr: dict[str, Any]) -> None:
        """The router's connection pinning: the rendered nftables file, and the policy rules and
        per-server tables systemd-networkd would make from the rendered network files."""
        assert self.router is not None
        if not rtr.get("pinning"):
            return
        path = self.router.workdir / "pinning.nft"
        path.write_text(render_device(rtr)["pinning.nft"])
        self.router.run("nft", "-f", str(path))
        lan = rtr["lan"]["interface"]
        for pin in rtr["pinning"]["servers"]:
            for family, gateway in (("-4", pin["gateway_v4"]), ("-6", pin["gateway_v6"])):
                if gateway:
                    table = str(pin["table"])
                    self.router.run(
                        "ip", family, "rule", "add", "fwmark", str(pin["mark"]), "table", table, "priority", "100"
                    )
                    self.router.run("ip", family, "route", "add", "default", "via", gateway, "dev", lan, "table", table)

    # --- daemons -------------------------------------------------------------------------------

    def bird_config(self, node: Node, sc: dict[str, Any]) -> str:
        """The rendered bird.conf of a device, logging to a file of the fabric's."""
        text = render_device(sc)["bird.conf"]
        return text.replace("log syslog all;", f'log "{node.workdir / "bird.log"}" all;', 1)

    def _start_bird(self, node: Node, sc: dict[str, Any]) -> None:
        conf = node.workdir / "bird.conf"
        conf.write_text(self.bird_config(node, sc))
        _run(["bird", "-p", "-c", str(conf)])
        log = open(node.workdir / "bird.out", "wb")  # noqa: SIM115 (the child keeps it)
        node.procs["bird"] = subprocess.Popen(
            node.argv("bird", "-f", "-c", str(conf), "-s", node.bird_socket, "-P", str(node.workdir / "bird.pid")),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._wait(f"BIRD on {node.name}", lambda: bool(node.protocols()), 10)

    def reconfigure_bird(self, name: str, sc: dict[str, Any]) -> str:
        """Install a new rendered config for `name` and `configure` it."""
        return self.install_bird_config(name, self.bird_config(self.node(name), sc))

    def install_bird_config(self, name: str, text: str) -> str:
        """Install `text` as the BIRD config of `name` (checked with `bird -p`) and `configure` it."""
        node = self.node(name)
        conf = node.workdir / "bird.conf"
        conf.write_text(text)
        _run(["bird", "-p", "-c", str(conf)])
        return node.birdc("configure")

    def start_service(self, name: str) -> None:
        """Start the HTTP service of a server again (after `kill_service`)."""
        server = self.servers[name]
        server.run(*self.httpd_argv(server))

    def httpd_argv(self, server: Server) -> list[str]:
        return ["busybox", "httpd", "-p", "80", "-h", str(server.workdir / "www")]

    def _start_service(self, server: Server) -> None:
        www = server.workdir / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(f"http served by {server.name}\n")
        shared = self.workdir / "shared"
        shared.mkdir(exist_ok=True)
        (shared / "healthz").write_text("ok\n")
        health = www / "healthz"
        if not health.is_symlink():
            health.symlink_to(shared / "healthz")  # one file for all: a shared dependency to break
        server.run(*self.httpd_argv(server))  # daemonizes; found again through its namespace

    def healthd_config(self, server: Server) -> dict[str, Any]:
        """The configuration the healthd role renders for this server, with the fabric's paths."""
        defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
        hd = {key.removeprefix("healthd__"): value for key, value in defaults.items()}
        hd.update(self.healthd_settings)
        hd["peers"] = [self.configs[name] for name in self.servers if name != server.name]
        sc = dict(self.configs[server.name])
        sc["services"] = [
            {**s, "check": {**s["check"], **self.check_overrides}} for s in sc["services"] if s["name"] in self.services
        ]
        data: dict[str, Any] = yaml.safe_load(render_template("healthd/healthd.yml.j2", sc={**sc, "healthd": hd}))
        data["bird"]["socket"] = server.bird_socket
        data["state_file"] = str(server.workdir / "healthd-state.json")
        for svc in data["services"]:
            if svc["name"] == "http":
                svc["restart"]["command"] = self.httpd_argv(server)
        if data["load_shedding"].get("enabled"):
            data["load_shedding"].setdefault("load_file", str(server.workdir / "load"))
        return data

    def _start_healthd(self, server: Server) -> None:
        conf = server.workdir / "healthd.yml"
        conf.write_text(yaml.safe_dump(self.healthd_config(server), sort_keys=False))
        self.start_healthd(server.name)

    def start_healthd(self, name: str) -> None:
        server = self.servers[name]
        conf = server.workdir / "healthd.yml"
        log = open(server.workdir / "healthd.log", "ab")  # noqa: SIM115 (the child keeps it)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server.procs["healthd"] = subprocess.Popen(
            server.argv(sys.executable, "-m", "edgepop.agents.healthd", "--config", str(conf)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    # --- what tests do with it -----------------------------------------------------------------

    def add_node(self, name: str, lan_cidr: str | None = None, internal_cidr: str | None = None) -> Node:
        """A namespace of its own on the server LAN and/or the internal network (e.g. the PoP's
        control server), removed by `down()` with the rest."""
        node: Node = self._node(name)
        self.extra.append(node)
        for ifname, bridge, cidr in (("lan0", "brx", lan_cidr), ("int0", "bri", internal_cidr)):
            if cidr:
                self._to_bridge(node, ifname, bridge, f"{bridge[-1]}-{name}"[:15])
                self._address(node, ifname, cidr)
        return node

    def power_off(self, name: str) -> None:
        """The server loses power: every process in its namespace dies at once (BIRD, healthd, the
        service) and its ports go silent (an nftables table drops all traffic), so nothing answers."""
        server = self.servers[name]
        if not self.is_powered(name):
            return
        server.run(
            "nft",
            "add table inet poweroff; "
            "add chain inet poweroff in { type filter hook input priority -300; policy drop; }; "
            "add chain inet poweroff out { type filter hook output priority -300; policy drop; }",
        )
        for proc in server.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for pid in server.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in server.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def is_powered(self, name: str) -> bool:
        return "poweroff" not in self.servers[name].run("nft", "list tables", check=False)

    def power_on(self, name: str) -> None:
        """The server boots: its ports answer again and it starts the service, BIRD and healthd."""
        server = self.servers[name]
        if self.is_powered(name) and all(p.poll() is None for p in server.procs.values()):
            return
        server.run("nft", "delete table inet poweroff", check=False)
        self._start_service(server)
        self._start_bird(server, self.configs[name])
        if self.with_healthd:
            self._start_healthd(server)

    def node(self, name: str) -> Node:
        for node in self._nodes():
            if node.name == name:
                return node
        raise KeyError(name)

    @staticmethod
    def _wait(what: str, predicate: Callable[[], bool], timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            with contextlib.suppress(Exception):
                if predicate():
                    return time.monotonic() - start
            time.sleep(0.02)
        raise FabricError(f"timed out after {timeout:.0f} s waiting for {what}")

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 15) -> float:
        """Poll `predicate` until it holds; how long it took (FabricError after `timeout`)."""
        return self._wait(what, predicate, timeout)

    def nexthops(self, address: str) -> set[str]:
        """The router's FIB for an anycast host route: the servers' LAN addresses it forwards to."""
        assert self.router is not None
        family = "-6" if ":" in address else "-4"
        plen = 128 if ":" in address else 32
        out = self.router.run("ip", "-j", family, "route", "show", "exact", f"{address}/{plen}")
        hops: set[str] = set()
        for route in json.loads(out or "[]"):
            if "gateway" in route:
                hops.add(route["gateway"])
            for hop in route.get("nexthops", []):
                hops.add(hop["gateway"])
        return hops

    def servers_at(self, address: str) -> set[str]:
        """`nexthops`, as server names."""
        by_address = {s.lan_v4: s.name for s in self.servers.values()}
        return {by_address.get(hop, hop) for hop in self.nexthops(address)}

    def established(self) -> dict[str, str]:
        """The router's BGP sessions to the servers: protocol -> `since` (changes on a session reset)."""
        assert self.router is not None
        out = {}
        for name, proto in self.router.protocols().items():
            if name.startswith("server_") and proto.info.startswith("Established"):
                out[name] = proto.since
        return out

    def requests(self, count: int, service: str = "http", timeout_s: float = 1.0) -> dict[str, int]:
        """`count` requests from the client, each a new flow; answers counted by server
        ("failed" for a request without an answer)."""
        assert self.client is not None
        address = self.anycast_v4[service]
        script = f"for i in $(seq 1 {count}); do curl -s -m {timeout_s} http://{address}/ || echo failed; done"
        counts: dict[str, int] = {}
        for line in self.client.run("sh", "-c", script, timeout=count * (timeout_s + 1) + 10).splitlines():
            key = line.strip().removeprefix("http served by ")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def poller(self, interval_s: float = 0.05, service: str = "http") -> Poller:
        """A client that requests the service every `interval_s` until stopped."""
        assert self.client is not None
        return Poller(self.client, self.anycast_v4[service], interval_s)

    def kill_service(self, name: str) -> list[int]:
        """SIGKILL the HTTP service of one server; the PIDs killed."""
        pids = self.servers[name].pids_of("httpd")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def set_load(self, name: str, load: float) -> None:
        path = self.servers[name].workdir / "load"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{load}\n")
        tmp.replace(path)

    def break_shared_dependency(self, broken: bool = True) -> None:
        """Every server's /healthz at once (they share one file): a cause outside the servers."""
        health = self.workdir / "shared" / "healthz"
        if broken:
            health.unlink(missing_ok=True)
        else:
            health.write_text("ok\n")

    def healthd_log(self, name: str) -> str:
        return (self.servers[name].workdir / "healthd.log").read_text(errors="replace")

    def status(self, name: str) -> dict[str, Any]:
        """The server's healthd /status, fetched from inside its namespace."""
        server = self.servers[name]
        out = server.run("curl", "-s", "-m", "2", f"http://{server.internal_v4}:9180/status")
        data: dict[str, Any] = json.loads(out)
        return data


class Poller:
    """Requests an address from the client namespace at a fixed pace, a new connection each time,
    and counts answers per server and failures (a Python child, so the pace does not depend on
    process start-up)."""

    SCRIPT = """
import socket, sys, time
addr, interval = sys.argv[1], float(sys.argv[2])
while True:
    t = time.monotonic()
    try:
        with socket.create_connection((addr, 80), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        body = data.split(b"\\r\\n\\r\\n", 1)[-1].decode().strip()
        print(body.removeprefix("http served by ") or "failed: empty", flush=True)
    except OSError as exc:
        print(f"failed: {exc}", flush=True)
    time.sleep(max(0.0, interval - (time.monotonic() - t)))
"""

    def __init__(self, client: Node, address: str, interval_s: float) -> None:
        self.out = client.workdir / f"poller-{time.monotonic_ns()}.log"
        self._file = open(self.out, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            client.argv(sys.executable, "-c", self.SCRIPT, address, str(interval_s)),
            stdout=self._file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def lines(self) -> list[str]:
        return self.out.read_text(errors="replace").splitlines()

    def stop(self) -> dict[str, int]:
        """Stop polling; answers per server, failures under keys starting with "failed"."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        counts: dict[str, int] = {}
        for line in self.lines():
            if line.startswith("Traceback") or not line.strip():
                continue
            counts[line.strip()] = counts.get(line.strip(), 0) + 1
        return counts
