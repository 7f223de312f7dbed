"""The ARP-relay design in network namespaces: two providers, the relay switch, servers and a
destination behind each provider, with the BIRD and arprelay configurations edgepop renders.

What it models: the switch as a Linux bridge (providers and servers are ports of it) whose own
interface carries the switch's LAN address and its addresses on the provider links; BIRD on the
switch with the rendered config (eBGP to the providers, iBGP to the servers, next hop unchanged);
the relay agent on the switch reading the kernel's neighbour table; on each server the rendered
BIRD config (iBGP from the switch, routes installed in the kernel) and the host agent; each provider
as a BIRD instance announcing its own "internet" prefixes, with a MAC address of its own, sending a
gratuitous ARP when its MAC changes (`arp_notify`, as routers do), and a destination namespace
behind it. Return traffic from a provider goes back through the switch.

What it does not model: VLANs, LACP, the routers (the switch's static route toward them stays
unresolved), EOS (the eAPI path is tested against the simulator, fed from this switch's table),
systemd, and the ageing of the switch's ARP entries: a Linux bridge keeps the neighbour entry of
a provider whose port went away, where EOS flushes the ARP entries of a port that goes down, so
`remove_provider` does that flush itself.

`down()` removes every namespace and process it made, also after a failed `up()`.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from edgepop.derive import derive_all
from edgepop.lab.fabric import FabricError, NamespaceLab, Node, _run
from edgepop.render import render_device, render_template
from edgepop.validate import load_valid

Log = Callable[[str], None]
TOKEN = "lab-arprelay-token"


class ArpRelayLab(NamespaceLab):
    """`with ArpRelayLab(inventory, workdir) as lab:` brings it up and always takes it down.

    `internet` maps each provider to (its prefixes, its destination's address/prefix, its own
    address/prefix on the destination link); providers not listed get no BIRD or destination.
    """

    def __init__(
        self,
        inventory: Path,
        workdir: Path,
        *,
        internet: dict[str, dict[str, Any]],
        macs: dict[str, str],
        servers: list[str] | None = None,
        tag: str | None = None,
        log: Log | None = None,
    ) -> None:
        self.inventory = inventory
        self.workdir = workdir
        self.internet = internet
        self.macs = macs
        self.want_servers = servers
        self.tag = tag or f"eparp{os.getpid() % 100000}"
        self.log = log or (lambda msg: None)
        self.configs: dict[str, Any] = {}
        self.nodes: dict[str, Node] = {}
        self.switch_name = ""

    # --- up and down ----------------------------------------------------------------------------

    def _node(self, name: str) -> Node:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        node = Node(name=name, ns=f"{self.tag}-{name}"[:30], workdir=workdir)
        _run(["ip", "netns", "add", node.ns])
        self.nodes[name] = node
        node.run("ip", "link", "set", "lo", "up")
        return node

    def _veth(self, a: Node, a_name: str, b: Node, b_name: str) -> None:
        _run(["ip", "link", "add", a_name, "netns", a.ns, "type", "veth", "peer", "name", b_name, "netns", b.ns])

    @staticmethod
    def _addr(node: Node, ifname: str, cidr: str | None) -> None:
        if cidr:
            node.run("ip", "addr", "add", cidr, "dev", ifname, *(["nodad"] if ":" in cidr else []))

    def up(self) -> None:
        t0 = time.monotonic()
        self.configs = derive_all(load_valid(self.inventory))
        relay = next(sc["arprelay"] for sc in self.configs.values() if sc["kind"] == "switch" and sc.get("arprelay"))
        self.switch_name = relay["switch"]
        sw_sc = self.configs[self.switch_name]
        sw = self._node("sw")
        sw.run("ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        for key, value in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv4.neigh.br0.locktime", "0"),  # take a provider's new MAC at once
        ):
            sw.run("sysctl", "-qw", f"{key}={value}")
        self._addr(sw, "br0", sw_sc["lan_address_v4"])
        self._addr(sw, "br0", sw_sc["lan_address_v6"])
        sw.run("ip", "link", "set", "br0", "up")
        for prov in sw_sc["bgp"]["providers"]:
            self._add_provider(prov)
        names = self.want_servers or [h for h, sc in self.configs.items() if sc["kind"] == "server"]
        for i, name in enumerate(names):
            srv = self._node(name)
            itf = self.configs[name]["arprelay"]["interface"]
            self._veth(srv, itf, sw, f"s{i}")
            sw.run("ip", "link", "set", f"s{i}", "master", "br0", "up")
            srv.run("ip", "link", "set", itf, "up")
            ext = next(n for n in self.configs[name]["interfaces"]["nics"] if n["name"] == itf)
            self._addr(srv, itf, ext["address_v4"])
            self._addr(srv, itf, ext["address_v6"])
        self._start_bird(sw, render_device(sw_sc)["bird.conf"])
        self.start_relay()
        for name in names:
            self.start_host_agent(name)
            self._start_bird(self.nodes[name], render_device(self.configs[name])["bird.conf"])
        self.log(f"arprelay lab {self.tag}: up in {time.monotonic() - t0:.1f} s")

    def _add_provider(self, prov: dict[str, Any]) -> None:
        sw = self.nodes["sw"]
        node = self._node(prov["name"])
        port = f"p-{prov['name']}"[:15]
        self._veth(node, "eth0", sw, port)
        sw.run("ip", "link", "set", port, "master", "br0", "up")
        node.run("ip", "link", "set", "eth0", "address", self.macs[prov["name"]])
        node.run("sysctl", "-qw", "net.ipv4.conf.all.arp_notify=1", "net.ipv4.conf.eth0.arp_notify=1",
                 "net.ipv6.conf.eth0.ndisc_notify=1")  # fmt: skip
        node.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        node.run("ip", "link", "set", "eth0", "up")
        for fam in ("v4", "v6"):
            if prov[f"peer_{fam}"]:
                plen = prov[f"switch_address_{fam}"].split("/")[1]
                self._addr(node, "eth0", f"{prov[f'peer_{fam}']}/{plen}")
                self._addr(sw, "br0", prov[f"switch_address_{fam}"])
        net = self.internet.get(prov["name"])
        if net is None:
            return
        # return traffic to the server LAN goes back through the switch
        lan = self.configs[self.switch_name]["lan_address_v4"]
        lan_net = str(ipaddress.ip_interface(lan).network)
        node.run("ip", "route", "add", lan_net, "via", prov["local_v4"])
        dst = self._node(f"dst-{prov['name']}")
        self._veth(node, "eth1", dst, "eth0")
        node.run("ip", "link", "set", "eth1", "up")
        dst.run("ip", "link", "set", "eth0", "up")
        self._addr(node, "eth1", net["gateway"])
        self._addr(dst, "eth0", net["destination"])
        dst.run("ip", "route", "add", "default", "via", net["gateway"].split("/")[0])
        statics = {
            fam: "".join(f"  route {p} unreachable;\n" for p in net["prefixes"] if (":" in p) == (fam == "v6"))
            for fam in ("v4", "v6")
        }
        sessions = []
        for fam in ("v4", "v6"):
            if prov[f"peer_{fam}"] and statics[fam]:
                sessions.append(
                    f"protocol static s_{fam} {{\n  ip{fam};\n{statics[fam]}}}\n"
                    f"protocol bgp pop_{fam} {{\n  local {prov[f'peer_{fam}']} as {prov['asn']};\n"
                    f"  neighbor {prov[f'local_{fam}']} as {self.configs[self.switch_name]['bgp']['asn']};\n"
                    f'  ip{fam} {{ import none; export where proto = "s_{fam}"; }};\n}}\n'
                )
        conf = f"log syslog all;\nrouter id {prov['peer_v4']};\nprotocol device {{ scan time 10; }}\n" + "".join(
            sessions
        )
        self._start_bird(node, conf)

    def _start_bird(self, node: Node, text: str) -> None:
        conf = node.workdir / "bird.conf"
        conf.write_text(text.replace("log syslog all;", f'log "{node.workdir / "bird.log"}" all;', 1))
        _run(["bird", "-p", "-c", str(conf)])
        out = open(node.workdir / "bird.out", "wb")  # noqa: SIM115 (the child keeps it)
        node.procs["bird"] = subprocess.Popen(
            node.argv("bird", "-f", "-c", str(conf), "-s", node.bird_socket, "-P", str(node.workdir / "bird.pid")),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.wait(f"BIRD on {node.name}", lambda: os.path.exists(node.bird_socket) and bool(node.protocols()), 10)

    def _agent_config(self, name: str, sc: dict[str, Any]) -> Path:
        opts = {"state_file": str(self.nodes[name].workdir / "arprelay.json"), "log_level": "info"}
        text = render_template("arprelay/arprelay.yml.j2", sc={**sc, "arprelay_role": opts})
        data = yaml.safe_load(text)
        if "token" in data:
            data["token"] = TOKEN  # the vault placeholder, swapped as the role's action plugin would
        path = self.nodes[name].workdir / "arprelay.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _start_agent(self, node: Node, conf: Path) -> None:
        out = open(node.workdir / "arprelay.log", "ab")  # noqa: SIM115 (the child keeps it)
        node.procs["arprelay"] = subprocess.Popen(
            node.argv(sys.executable, "-m", "edgepop.agents.arprelay", "--config", str(conf)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def start_relay(self) -> None:
        sw = self.nodes["sw"]
        self._start_agent(sw, self._agent_config("sw", self.configs[self.switch_name]))
        relay = self.configs[self.switch_name]["arprelay"]
        self.wait("the relay serving", lambda: bool(sw.run("ss", "-Hltn", f"sport = :{relay['port']}").strip()), 10)

    def stop_relay(self) -> None:
        self.nodes["sw"].stop("arprelay")

    def start_host_agent(self, name: str) -> None:
        self._start_agent(self.nodes[name], self._agent_config(name, self.configs[name]))

    def down(self) -> None:
        for node in self.nodes.values():
            for what in ("arprelay", "bird"):
                node.stop(what)
        existing = set(_run(["ip", "netns", "list"], check=False).split())
        for node in self.nodes.values():
            if node.ns not in existing:
                continue
            for pid in node.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _run(["ip", "netns", "del", node.ns], check=False)
        self.nodes = {}

    # --- what tests do with it ------------------------------------------------------------------

    @staticmethod
    def wait(what: str, predicate: Callable[[], bool], timeout: float = 15, interval: float = 0.02) -> float:
        t0 = time.monotonic()
        while True:
            with contextlib.suppress(FabricError, OSError, subprocess.SubprocessError):
                if predicate():
                    return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise FabricError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def neighbours(self, name: str) -> list[dict[str, Any]]:
        """`ip -j neigh` of a namespace."""
        out = self.nodes[name].run("ip", "-j", "neigh", "show")
        return list(json.loads(out or "[]"))

    def permanent_mac(self, name: str, address: str) -> str | None:
        """The MAC of the permanent neighbour entry for `address` on a server, None without one."""
        for n in self.neighbours(name):
            if n.get("dst") == address and "PERMANENT" in n.get("state", []):
                return str(n.get("lladdr"))
        return None

    def route(self, name: str, destination: str) -> dict[str, Any]:
        """What the kernel of `name` would do with a packet to `destination` (`ip -j route get`)."""
        out = self.nodes[name].run("ip", "-j", "route", "get", destination, check=False)
        return dict(json.loads(out)[0]) if out.strip() else {}

    def set_mac(self, provider: str, mac: str) -> None:
        """The provider's router gets a new MAC (a replaced line card); it announces it with a
        gratuitous ARP, as `arp_notify` makes Linux do."""
        self.macs[provider] = mac
        self.nodes[provider].run("ip", "link", "set", "eth0", "address", mac)

    def remove_provider(self, provider: str, address: str) -> None:
        """The provider goes away: its BIRD stops (its sessions end), its cable is pulled, and the
        switch forgets its ARP entry, as EOS does for a port that goes down."""
        node = self.nodes[provider]
        node.stop("bird")
        port = f"p-{provider}"[:15]
        self.nodes["sw"].run("ip", "link", "del", port)
        self.nodes["sw"].run("ip", "neigh", "flush", "to", address, check=False)

    def count_frames(self, provider: str, macs: list[str]) -> None:
        """Count the servers' frames arriving at the provider, per destination MAC (nftables on the
        ingress of its port): one counter for each of `macs`, one for any other MAC."""
        node = self.nodes[provider]
        lan = str(ipaddress.ip_interface(self.configs[self.switch_name]["lan_address_v4"]).network)
        rules = "add table netdev eparp\n"
        rules += "add chain netdev eparp in { type filter hook ingress device eth0 priority 0; }\n"
        for mac in macs:
            rules += f"add rule netdev eparp in ip saddr {lan} udp dport 9 ether daddr {mac} counter\n"
        rules += f"add rule netdev eparp in ip saddr {lan} udp dport 9 ether daddr != {{ {', '.join(macs)} }} counter\n"
        path = node.workdir / "count.nft"
        path.write_text(rules)
        node.run("nft", "-f", str(path))

    def frames(self, provider: str) -> dict[str, int]:
        """ether daddr -> packets counted so far."""
        out = self.nodes[provider].run("nft", "-j", "list", "table", "netdev", "eparp")
        counts: dict[str, int] = {}
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            mac, packets = "other", 0
            for expr in rule["expr"]:
                match = expr.get("match")
                left = match["left"].get("payload", {}) if match else {}
                if match and left.get("protocol") == "ether" and left.get("field") == "daddr" and match["op"] == "==":
                    mac = str(match["right"])
                if "counter" in expr:
                    packets = int(expr["counter"]["packets"])
            counts[mac] = counts.get(mac, 0) + packets
        return counts

    def send(self, server: str, destination: str, count: int = 3) -> None:
        """`count` UDP datagrams from `server` to `destination` (no ping here; nothing must answer)."""
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)\n"
            "[s.sendto(b'eparp', (sys.argv[1], 9)) for _ in range(int(sys.argv[2]))]\n"
        )
        self.nodes[server].run(sys.executable, "-c", code, destination, str(count))
