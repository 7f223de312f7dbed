"""The lab as data: which boxes and cables a PoP inventory needs to run on one machine.

Pure: from the validated PoP model to a `LabTopology` (nodes, point-to-point links, what the lab's
own stand-ins for the internet announce). `edgepop.lab.runtime` turns it into podman containers and
veth pairs. The PoP's own devices come from the inventory; the transit providers and the client
behind one of them are the lab's "internet" and exist only here.

The lab's internet is carved from the documentation ranges only: each provider announces one IPv4
/26 of 198.51.100.128/25 plus host routes inside it, and 256 IPv6 /48s of its own /40 of
2001:db8::/32, plus a block both providers announce (a multihomed destination).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from edgepop.derive import ROUTER_SYSCTL, SERVER_SYSCTL
from edgepop.model.pop import PopModel

ROUTER_SYSCTLS = tuple(f"{k}={v}" for k, v in ROUTER_SYSCTL.items())
SERVER_SYSCTLS = tuple(f"{k}={v}" for k, v in SERVER_SYSCTL.items())

INTERNET_V4 = ipaddress.IPv4Network("198.51.100.128/25")
SHARED_V6 = ipaddress.IPv6Network("2001:db8:3000::/44")


class LabError(Exception):
    """The inventory cannot be run as a lab (e.g. more providers than the lab's internet has room for)."""


@dataclass(frozen=True)
class Node:
    """One container."""

    name: str  # inventory hostname, or the provider/client name
    role: str  # router | switch | server | control | provider | client
    mgmt_ip: str | None  # address on the management network (the PoP's own devices only)
    mgmt_mac: str | None = None
    sysctls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    node: str
    ifname: str
    mac: str | None = None


@dataclass(frozen=True)
class Link:
    """A point-to-point cable: a veth pair between two containers."""

    a: Endpoint
    b: Endpoint


@dataclass(frozen=True)
class Provider:
    """A lab transit provider: BIRD announcing an internet slice to the PoP router it is cabled to."""

    name: str
    asn: int
    router: str
    ifname: str  # its side of the link to the router
    address_v4: str | None  # its address on the link, with the router's prefix length
    address_v6: str | None
    router_v4: str | None
    router_v6: str | None
    password_ref: str | None  # the inventory's secret, decrypted by the runtime
    prefixes_v4: tuple[str, ...]
    prefixes_v6: tuple[str, ...]
    client_link_v4: str | None = None  # its address toward the client, if the client hangs off it
    client_link_v6: str | None = None


@dataclass(frozen=True)
class Client:
    """A host on the internet behind one provider: where the demo's requests come from."""

    name: str
    provider: str
    address_v4: str
    address_v6: str
    gateway_v4: str
    gateway_v6: str


@dataclass
class LabTopology:
    pop: str
    mgmt_subnet: str
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    client: Client | None = None

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def _provider_slices(index: int) -> tuple[list[str], list[str], str, str]:
    """The internet of provider number `index`: prefixes, plus the client link inside them."""
    v4_blocks: list[ipaddress.IPv4Network] = list(INTERNET_V4.subnets(new_prefix=26))
    if index >= len(v4_blocks):
        raise LabError(f"the lab's internet has room for {len(v4_blocks)} providers")
    block = v4_blocks[index]
    v4 = [str(block)] + [f"{ip}/32" for ip in list(block.hosts())[31:63]]
    v6_block = ipaddress.IPv6Network(f"2001:db8:{index + 1}000::/40")
    v6 = [str(n) for n in v6_block.subnets(new_prefix=48)]
    v6 += [str(n) for n in SHARED_V6.subnets(new_prefix=48)]
    client_v4 = str(next(block.subnets(new_prefix=30)))
    client_v6 = str(next(ipaddress.IPv6Network(v6[0]).subnets(new_prefix=64)))
    return v4, v6, client_v4, client_v6


def build_topology(model: PopModel) -> LabTopology:
    """Nodes and cables for every device of the inventory, plus the providers and a client."""
    topo = LabTopology(pop=model.pop.name, mgmt_subnet=model.pop.ranges.management_v4)
    for host, rt in model.routers.items():
        topo.nodes.append(Node(host, "router", model.ansible_hosts.get(host, rt.mgmt_address), None, ROUTER_SYSCTLS))
    for host, sw in model.switches.items():
        topo.nodes.append(Node(host, "switch", model.ansible_hosts.get(host, sw.mgmt_address)))
    for host, srv in model.servers.items():
        mgmt = next((n for n in srv.nics if n.group == "management"), None)
        ip = model.ansible_hosts.get(host)
        if ip is None and mgmt is not None and mgmt.address_v4:
            ip = str(ipaddress.ip_interface(mgmt.address_v4).ip)
        if ip is None:
            raise LabError(f"server {host} has no ansible_host or management address to reach it on")
        topo.nodes.append(Node(host, "server", ip, mgmt.mac if mgmt else None, SERVER_SYSCTLS))
        for nic in srv.nics:
            if nic.switch and nic.switch_port:
                topo.links.append(Link(Endpoint(host, nic.name, nic.mac), Endpoint(nic.switch, nic.switch_port)))
    for host, ctl in model.controls.items():
        topo.nodes.append(Node(host, "control", model.ansible_hosts.get(host, ctl.mgmt_address)))
    for sw_name, sw in model.switches.items():
        for up in sw.uplinks:
            topo.links.append(Link(Endpoint(sw_name, up.port), Endpoint(up.router, up.router_port)))

    # the container lab cables providers to routers; providers on an arprelay switch are left out
    routed = [p for p in model.providers if p.router is not None and p.port is not None]
    transits = [p for p in routed if p.kind == "transit"] + [p for p in routed if p.kind == "peer"]
    for index, prov in enumerate(transits):
        assert prov.router is not None and prov.port is not None
        rt = model.routers[prov.router]
        itf = next(i for i in rt.interfaces if i.name == prov.port)
        v4, v6, client_v4, client_v6 = _provider_slices(index)
        with_client = index == 0
        link_v4 = (
            f"{prov.address_v4}/{ipaddress.ip_interface(itf.address_v4).network.prefixlen}"
            if (prov.address_v4 and itf.address_v4)
            else None
        )
        link_v6 = (
            f"{prov.address_v6}/{ipaddress.ip_interface(itf.address_v6).network.prefixlen}"
            if (prov.address_v6 and itf.address_v6)
            else None
        )
        cnet4 = ipaddress.ip_network(client_v4)
        cnet6 = ipaddress.ip_network(client_v6)
        topo.providers.append(
            Provider(
                name=prov.name,
                asn=prov.asn,
                router=prov.router,
                ifname="eth-pop",
                address_v4=link_v4,
                address_v6=link_v6,
                router_v4=str(ipaddress.ip_interface(itf.address_v4).ip) if itf.address_v4 else None,
                router_v6=str(ipaddress.ip_interface(itf.address_v6).ip) if itf.address_v6 else None,
                password_ref=prov.password,
                prefixes_v4=tuple(v4),
                prefixes_v6=tuple(v6),
                client_link_v4=f"{cnet4[1]}/{cnet4.prefixlen}" if with_client else None,
                client_link_v6=f"{cnet6[1]}/{cnet6.prefixlen}" if with_client else None,
            )
        )
        topo.nodes.append(Node(prov.name, "provider", None, None, ROUTER_SYSCTLS))
        topo.links.append(Link(Endpoint(prov.name, "eth-pop"), Endpoint(prov.router, prov.port)))
        if with_client:
            topo.client = Client(
                name="client",
                provider=prov.name,
                address_v4=f"{cnet4[2]}/{cnet4.prefixlen}",
                address_v6=f"{cnet6[2]}/{cnet6.prefixlen}",
                gateway_v4=str(cnet4[1]),
                gateway_v6=str(cnet6[1]),
            )
            topo.nodes.append(Node("client", "client", None))
            topo.links.append(Link(Endpoint("client", "eth0"), Endpoint(prov.name, "eth-client")))
    return topo
