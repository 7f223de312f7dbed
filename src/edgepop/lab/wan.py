"""Two PoPs behind one internet, in network namespaces: anycast failover across the WAN.

Each PoP is a `Fabric` built from the same inventory (its router, switch and servers run the
rendered BIRD configs, with healthd), in namespaces of its own, so both can use the inventory's
addresses. An `internet` namespace stands in for the transit providers: PoP A's router is cabled to
it on its first provider's port and PoP B's on its second, and one BIRD there speaks eBGP as each
provider (its AS, its address, its session password) to the router cabled to it. Both routers
announce the PoP's anycast aggregates; a client behind the internet reaches the anycast addresses
through whichever PoP the internet's best path points at. When a PoP's router is gone (its link
cut, or its BIRD killed), the internet withdraws that PoP's announcement and the client lands on
the other PoP.

What it models: BGP between the PoPs' routers and their providers, the providers' best-path choice
and withdrawal, and forwarding from the client to whichever PoP wins. What it does not: a real
transit network (one namespace is both providers, with no AS path beyond the provider's own and no
IGP, damping or propagation delay), IPv6 (the client uses IPv4 only), or provider-side prefix
filtering beyond what the PoP's own export filter sends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
from pathlib import Path
from typing import Any

from edgepop.lab.fabric import Fabric, FabricError, Log, NamespaceLab, Node, Server, _run

CLIENT_NET = ipaddress.ip_network("203.0.113.244/30")  # internet <-> client
CLIENT_V4 = str(CLIENT_NET[2])
INTERNET_V4 = str(CLIENT_NET[1])


class PopFabric(Fabric):
    """A PoP of the WAN lab: its router's provider port goes to the shared internet namespace."""

    def __init__(self, inventory: Path, workdir: Path, *, internet: Node, provider: int, label: str, **kw: Any) -> None:
        super().__init__(inventory, workdir, **kw)
        self.internet = internet
        self.provider_index = provider
        self.label = label
        self.provider: dict[str, Any] = {}

    def _cable_router(self, rtr: dict[str, Any]) -> None:
        assert self.router is not None
        for key, value in rtr.get("sysctl", {}).items():
            self.router.run("sysctl", "-qw", f"{key}={value}")
        lan = next(i for i in rtr["interfaces"] if i["lan"])
        self._to_bridge(self.router, lan["name"], "brx", "r-lan")
        self._address(self.router, lan["name"], lan["address_v4"])
        self._address(self.router, lan["name"], lan["address_v6"])
        providers = rtr["bgp"]["providers"]
        if len(providers) <= self.provider_index:
            raise FabricError(f"{self.inventory}: the router has no provider #{self.provider_index + 1}")
        self.provider = providers[self.provider_index]
        link = next(i for i in rtr["interfaces"] if i["name"] == self.provider["port"])
        outside = f"pop-{self.label}"
        self._veth(self.router, link["name"], self.internet, outside)
        self._address(self.router, link["name"], link["address_v4"])
        plen = ipaddress.ip_interface(link["address_v4"]).network.prefixlen
        self._address(self.internet, outside, f"{self.provider['peer_v4']}/{plen}")

    def _start_service(self, server: Server) -> None:
        super()._start_service(server)
        (server.workdir / "www" / "index.html").write_text(f"http served by {server.name} in PoP {self.label}\n")


class WanLab(NamespaceLab):
    """`with WanLab(inventory, workdir) as wan:` two PoPs, the internet and a client; always torn down."""

    def __init__(self, inventory: Path, workdir: Path, *, log: Log | None = None) -> None:
        self.inventory = inventory
        self.workdir = workdir
        self.log = log or (lambda msg: None)
        self.tag = f"epw{os.getpid() % 100000}"
        self.internet: Node | None = None
        self.client: Node | None = None
        self.pops: dict[str, PopFabric] = {}
        self.bird: subprocess.Popen[bytes] | None = None

    def _node(self, name: str) -> Node:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        node = Node(name=name, ns=f"{self.tag}-{name}", workdir=workdir)
        _run(["ip", "netns", "add", node.ns])
        node.run("ip", "link", "set", "lo", "up")
        return node

    def up(self) -> None:
        self.internet = self._node("inet")
        self.internet.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.client = self._node("client")
        _run(["ip", "link", "add", "to-client", "netns", self.internet.ns, "type", "veth",
              "peer", "name", "up0", "netns", self.client.ns])  # fmt: skip
        self.internet.run("ip", "link", "set", "to-client", "up")
        self.client.run("ip", "link", "set", "up0", "up")
        self.internet.run("ip", "addr", "add", f"{INTERNET_V4}/{CLIENT_NET.prefixlen}", "dev", "to-client")
        self.client.run("ip", "addr", "add", f"{CLIENT_V4}/{CLIENT_NET.prefixlen}", "dev", "up0")
        self.client.run("ip", "route", "add", "default", "via", INTERNET_V4)
        for index, label in enumerate(("A", "B")):
            pop = PopFabric(
                self.inventory, self.workdir / f"pop{label}", internet=self.internet, provider=index, label=label,
                tag=f"{self.tag}{label}", log=self.log,
            )  # fmt: skip
            self.pops[label] = pop
            pop.up()
        self._start_internet_bird()

    def internet_bird_config(self) -> str:
        """One BIRD as both providers: an eBGP session per PoP, as that PoP's provider."""
        assert self.internet is not None
        lines = [
            f'log "{self.internet.workdir / "bird.log"}" all;',
            f"router id {INTERNET_V4};",
            "protocol device {}",
            "protocol kernel { ipv4 { import none; export all; }; }",
            # the client's network goes to every PoP, so their servers can answer it
            f'protocol static client_net {{ ipv4; route {CLIENT_NET} via "to-client"; }}',
        ]
        for label, pop in self.pops.items():
            prov = pop.provider
            pop_asn = pop.configs[next(iter(pop.servers))]["bgp"]["peer_asn"]
            password = f'  password "{prov["password"]}";' if prov.get("password") else ""
            lines.append(
                f"protocol bgp pop_{label} {{\n"
                f"  local {prov['peer_v4']} as {prov['asn']};\n"
                f"  neighbor {prov['local_v4']} as {pop_asn};\n"
                f"{password}\n"
                '  ipv4 { import all; export where proto = "client_net"; };\n'
                "}"
            )
        return "\n".join(lines) + "\n"

    def _start_internet_bird(self) -> None:
        assert self.internet is not None
        conf = self.internet.workdir / "bird.conf"
        conf.write_text(self.internet_bird_config())
        _run(["bird", "-p", "-c", str(conf)])
        log = open(self.internet.workdir / "bird.out", "wb")  # noqa: SIM115 (the child keeps it)
        self.bird = subprocess.Popen(
            self.internet.argv("bird", "-f", "-c", str(conf), "-s", self.internet.bird_socket),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.internet.procs["bird"] = self.bird
        Fabric._wait("BIRD in the internet", lambda: bool(self.internet and self.internet.protocols()), 10)

    def down(self) -> None:
        for pop in self.pops.values():
            pop.down()
        self.pops = {}
        if self.internet is not None:
            self.internet.stop("bird")
        self.bird = None
        existing = set(_run(["ip", "netns", "list"], check=False).split())
        for node in (self.client, self.internet):
            if node is not None and node.ns in existing:
                for pid in node.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                _run(["ip", "netns", "del", node.ns], check=False)
        self.client = self.internet = None

    # --- what tests do with it -----------------------------------------------------------------

    def sessions(self) -> dict[str, str]:
        """The internet's BGP session to each PoP: label -> state (`Established`, ...)."""
        assert self.internet is not None
        protos = self.internet.protocols()
        states = {name: proto.info.split()[0] if proto.info else "" for name, proto in protos.items()}
        return {label: states.get(f"pop_{label}", "") for label in self.pops}

    def anycast_v4(self, service: str = "http") -> str:
        return next(iter(self.pops.values())).anycast_v4[service]

    def requests(self, count: int, service: str = "http", timeout_s: float = 1.0) -> dict[str, int]:
        """`count` requests from the client, each a new flow; answers counted by PoP ("failed" when
        there was none)."""
        assert self.client is not None
        address = self.anycast_v4(service)
        script = f"for i in $(seq 1 {count}); do curl -s -m {timeout_s} http://{address}/ || echo failed; done"
        counts: dict[str, int] = {}
        for line in self.client.run("sh", "-c", script, timeout=count * (timeout_s + 1) + 10).splitlines():
            key = line.strip().rsplit(" ", 1)[-1] if "in PoP" in line else line.strip()
            counts[key] = counts.get(key, 0) + 1
        return counts

    def cut(self, label: str) -> None:
        """The PoP's router is gone: its link to the internet goes down on the internet's side."""
        assert self.internet is not None
        self.internet.run("ip", "link", "set", f"pop-{label}", "down")

    def restore(self, label: str) -> None:
        assert self.internet is not None
        self.internet.run("ip", "link", "set", f"pop-{label}", "up")

    def preferred(self) -> str:
        """The PoP the internet's best route for the anycast aggregate goes to."""
        assert self.internet is not None
        address = self.anycast_v4()
        out = self.internet.run("ip", "-4", "route", "get", address)
        for label in self.pops:
            if f"dev pop-{label}" in out:
                return label
        return ""
