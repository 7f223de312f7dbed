"""Model -> per-device intent ("structured config"): plain dicts, one function per section.

Everything a renderer needs is computed here, once, so templates stay free of logic and every
platform (Junos, EOS, BIRD) renders the same intent. The result is YAML-serialisable and written
beside the rendered configs, so an operator can see what a device is meant to be.

Secrets never appear in structured config: they are carried as `SecretRef` placeholders that the
offline renderer prints as `<vault:name>` and the Ansible action plugin swaps for the real value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from edgepop.irq_plan import offline_plan
from edgepop.model.pop import PopModel
from edgepop.model.schema import Bond, Nic, Router, Server, Switch, natural_key
from edgepop.model.secrets import vault_reference
from edgepop.templating import render_template

StructuredConfig = dict[str, Any]

# Kernel settings per kind of box; the base role installs them and the lab starts containers with
# them (a container's /proc/sys is read-only).
ROUTER_SYSCTL: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # hash flows on addresses and ports, so servers of equal weight share traffic per flow (ECMP)
    "net.ipv4.fib_multipath_hash_policy": "1",
    "net.ipv6.fib_multipath_hash_policy": "1",
}
SERVER_SYSCTL: dict[str, str] = {
    # the anycast addresses sit on lo: never answer ARP for them on the LAN ports
    "net.ipv4.conf.all.arp_ignore": "1",
    "net.ipv4.conf.all.arp_announce": "2",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # a frontline instance that stops hands the connections still queued on its listener to another
    # instance's (reuseport) instead of resetting them
    "net.ipv4.tcp_migrate_req": "1",
}


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives in the inventory: a vault variable name, or the owner's key path."""

    name: str

    def __str__(self) -> str:
        return f"<vault:{self.name}>"


def _secret(value: str | None, fallback_name: str) -> str | None:
    if value is None:
        return None
    return str(SecretRef(vault_reference(value) or fallback_name))


def _ip(iface: str | None) -> str | None:
    return None if iface is None else str(ipaddress.ip_interface(iface).ip)


def _split(prefixes: list[str]) -> tuple[list[str], list[str]]:
    v4 = [p for p in prefixes if ipaddress.ip_network(p).version == 4]
    v6 = [p for p in prefixes if ipaddress.ip_network(p).version == 6]
    return v4, v6


def _by_address(prefixes: list[str]) -> list[str]:
    return sorted(set(prefixes), key=lambda p: ipaddress.ip_network(p))


def static_protocol(service: str, family: str) -> str:
    """BIRD protocol that carries one service's routes of one family on a server.

    The template and healthd (`disable static_http_v4`) both need this name: it is made here only.
    """
    return f"static_{service.replace('-', '_')}_{family}"


# --- servers -----------------------------------------------------------------------------------


def _group_carrier(srv: Server, group: str) -> Bond | Nic | None:
    """The bond or NIC that carries the addresses of a group (external: router LAN, internal: server LAN)."""
    carriers: list[Bond | Nic] = [*srv.bonds, *srv.nics]
    for item in carriers:
        if item.group == group and (item.address_v4 or item.address_v6):
            return item
    return None


def _group_addresses(srv: Server, group: str) -> tuple[str | None, str | None]:
    item = _group_carrier(srv, group)
    return (None, None) if item is None else (_ip(item.address_v4), _ip(item.address_v6))


def server_external_addresses(srv: Server) -> tuple[str | None, str | None]:
    """The server's addresses on the router LAN (external bond, or the unbonded external NIC)."""
    return _group_addresses(srv, "external")


def server_internal_addresses(srv: Server) -> tuple[str | None, str | None]:
    """The server's addresses on the server LAN (internal bond, or the unbonded internal NIC)."""
    return _group_addresses(srv, "internal")


def _server_peers(model: PopModel) -> list[dict[str, Any]]:
    """Every server of the PoP that has an address on the server LAN, with its services: what the
    frontline's cache tier spreads objects over (each server's list is the same, so every front
    picks the same owner for a URL)."""
    peers = []
    for host, srv in sorted(model.servers.items(), key=lambda kv: natural_key(kv[0])):
        v4, v6 = server_internal_addresses(srv)
        if v4 is None and v6 is None:
            continue
        peers.append({"name": host, "address_v4": v4, "address_v6": v6, "services": list(srv.services)})
    return peers


def server_external_interface(srv: Server) -> str | None:
    """The bond or NIC that carries the server's router-LAN addresses."""
    item = _group_carrier(srv, "external")
    return None if item is None else item.name


def router_lan(rt: Router) -> tuple[str | None, str | None, str]:
    itf = next(i for i in rt.interfaces if i.lan)
    return _ip(itf.address_v4), _ip(itf.address_v6), itf.name


def _server_interfaces(model: PopModel, srv: Server) -> dict[str, Any]:
    def nic(n: Nic) -> dict[str, Any]:
        return {
            "name": n.name,
            "mac": n.mac,
            "group": n.group,
            "speed": n.speed,
            "queues": n.queues,
            "address_v4": n.address_v4,
            "address_v6": n.address_v6,
            "bond": next((b.name for b in srv.bonds if n.name in b.members), None),
        }

    def bond(b: Bond) -> dict[str, Any]:
        return {
            "name": b.name,
            "group": b.group,
            "members": list(b.members),
            "mode": "802.3ad",
            "lacp_rate": b.lacp_rate,
            "hash_policy": b.hash_policy,
            "miimon_ms": b.miimon_ms,
            "mtu": b.mtu,
            "address_v4": b.address_v4,
            "address_v6": b.address_v6,
        }

    own_v4, own_v6 = _server_prefixes(model, srv)
    lans = [router_lan(rt) for rt in model.routers.values()]
    return {
        "nics": [nic(n) for n in srv.nics],
        "bonds": [bond(b) for b in srv.bonds],
        # the anycast service addresses live on lo; BGP only announces them
        "loopback": [*own_v4, *own_v6],
        # replies leave through the PoP routers, over the external network (ECMP over all of them)
        "gateways_v4": [gw for gw, _, _ in lans if gw],
        "gateways_v6": [gw for _, gw, _ in lans if gw],
    }


def _server_prefixes(model: PopModel, srv: Server) -> tuple[list[str], list[str]]:
    """Every host route this server announces, per family, in address order."""
    own: list[str] = [p for name in srv.services for p in model.service(name).prefixes]
    v4, v6 = _split(own)
    return _by_address(v4), _by_address(v6)


def _server_bgp(model: PopModel, host: str, srv: Server) -> dict[str, Any]:
    v4, v6 = server_external_addresses(srv)
    export_v4, export_v6 = _server_prefixes(model, srv)
    neighbors = []
    for rname, rt in model.routers.items():
        r4, r6, _ = router_lan(rt)
        neighbors.append({"name": rname, "address_v4": r4, "address_v6": r6})
    bgp = model.pop.bgp
    return {
        "asn": model.pop.server_asn,
        "router_id": v4,
        "source_v4": v4,
        "source_v6": v6,
        "peer_asn": model.pop.asn,
        "password": _secret(bgp.server_password, "pop.bgp.server_password"),
        # the weight travels as MED: the routers prefer the lowest, equal MEDs share (ECMP)
        "med": srv.anycast_weight,
        "export_v4": export_v4,
        "export_v6": export_v6,
        "hold_time": bgp.hold_time,
        "keepalive": bgp.keepalive,
        "bfd": {"interval_ms": bgp.bfd_interval_ms, "multiplier": bgp.bfd_multiplier},
        "neighbors": neighbors,
    }


def _server_services(model: PopModel, srv: Server) -> list[dict[str, Any]]:
    out = []
    for name in srv.services:
        svc = model.service(name)
        v4, v6 = _split(svc.prefixes)
        out.append(
            {
                "name": svc.name,
                "prefixes_v4": v4,
                "prefixes_v6": v6,
                "protocol_v4": static_protocol(svc.name, "v4") if v4 else None,
                "protocol_v6": static_protocol(svc.name, "v6") if v6 else None,
                "weight": srv.anycast_weight,
                "unit": svc.unit,
                "check": svc.check.model_dump(),
                "restart_command": svc.restart_command or ["systemctl", "restart", svc.unit],
            }
        )
    return out


def server_irq_groups(srv: Server) -> list[dict[str, Any]]:
    """The NIC groups whose queues are pinned, each with its socket; a group without NICs is left out."""
    sockets = {"external": srv.irq.external_socket, "internal": srv.irq.internal_socket}
    groups = [
        {"name": g, "socket": sock, "nics": [n.name for n in srv.nics if n.group == g]} for g, sock in sockets.items()
    ]
    return [g for g in groups if g["nics"]]


def server_queue_plan(srv: Server) -> dict[str, list[str]]:
    """NIC -> socket/core/thread of each queue, for the sockets whose every NIC has a known queue
    count (and only with a known CPU layout): the placement the irq_affinity module makes on the box,
    computed by the same code (`edgepop.irq_plan` is the module's module_utils file)."""
    if srv.cpu == "discover":
        return {}
    queues = {n.name: n.queues for n in srv.nics}
    groups = server_irq_groups(srv)
    unknown = {g["socket"] for g in groups if any(queues[n] is None for n in g["nics"])}
    known = [g for g in groups if g["socket"] not in unknown]
    if not known:
        return {}
    counts = {n: q for g in known for n in g["nics"] if (q := queues[n]) is not None}
    return offline_plan(known, counts, srv.cpu.model_dump(), srv.irq.queues_per_core)


def _server_irq(srv: Server) -> dict[str, Any]:
    groups: dict[str, list[str]] = {"external": [], "internal": []}
    for n in srv.nics:
        if n.group in groups:
            groups[n.group].append(n.name)
    return {
        "cpu": srv.cpu if srv.cpu == "discover" else srv.cpu.model_dump(),
        "external_socket": srv.irq.external_socket,
        "internal_socket": srv.irq.internal_socket,
        "queues_per_core": srv.irq.queues_per_core,
        "external_nics": groups["external"],
        "internal_nics": groups["internal"],
        "irqbalance": "disabled",
        "groups": server_irq_groups(srv),
        "queues": server_queue_plan(srv),
    }


def _server_full_table(model: PopModel, srv: Server) -> dict[str, Any] | None:
    """iBGP sessions that bring the providers' routes to the server, next hop unchanged (the
    provider), which BIRD installs in the kernel: from the relay switch (arprelay) or from the
    routers' loopbacks (bgp.reflect_to_servers)."""
    v4, v6 = server_external_addresses(srv)
    neighbors: list[dict[str, Any]] = []
    ar = model.pop.arprelay
    if ar.enabled and ar.switch in model.switches:
        sw = model.switches[ar.switch]
        neighbors.append(
            {
                "name": ar.switch,
                "address_v4": _ip(sw.lan_address_v4),
                "address_v6": _ip(sw.lan_address_v6),
                "multihop": False,
            }
        )
    if model.pop.bgp.reflect_to_servers:
        for rname, rt in model.routers.items():
            neighbors.append(
                {"name": rname, "address_v4": rt.loopback_v4, "address_v6": rt.loopback_v6, "multihop": True}
            )
    if not neighbors or (v4 is None and v6 is None):
        return None
    return {"asn": model.pop.asn, "source_v4": v4, "source_v6": v6, "neighbors": neighbors}


def derive_arprelay(model: PopModel) -> dict[str, Any] | None:
    """The relay's PoP-wide settings: who serves the mapping where, and the providers it follows.
    One entry per provider address (family), each with the provider's routing table."""
    ar = model.pop.arprelay
    if not ar.enabled or ar.switch not in model.switches:
        return None
    sw = model.switches[ar.switch]
    relay_host = ar.relay_host or ar.switch
    carrier = model.controls[relay_host].lan_address_v4 if relay_host in model.controls else sw.lan_address_v4
    listen = _ip(carrier)
    providers = []
    for prov in model.providers:
        if prov.switch != ar.switch or prov.table is None:
            continue
        for addr in (prov.address_v4, prov.address_v6):
            if addr:
                providers.append({"name": prov.name, "address": addr, "table": prov.table})
    return {
        "switch": ar.switch,
        "relay_host": relay_host,
        "source": "eapi" if sw.platform == "eos" else "netlink",
        "eapi_address": sw.mgmt_address,
        "eapi_poll_ms": ar.eapi_poll_ms,
        "listen": listen,
        "port": ar.port,
        "url": f"http://{listen}:{ar.port}/v1/mapping",
        "token": _secret(ar.token, "pop.arprelay.token"),
        "long_poll_s": ar.long_poll_s,
        "proto": ar.proto,
        "table_min": ar.table_min,
        "table_max": ar.table_max,
        "rule_priority": ar.rule_priority,
        "providers": providers,
    }


def _server_arprelay(model: PopModel, srv: Server) -> dict[str, Any] | None:
    relay = derive_arprelay(model)
    interface = server_external_interface(srv)
    if relay is None or interface is None:
        return None
    v4, v6 = server_external_addresses(srv)
    links_v6 = sorted({p["address"] for p in relay["providers"] if ":" in p["address"]}, key=ipaddress.ip_address)
    return {**relay, "interface": interface, "local_v4": v4, "local_v6": v6, "links_v6": links_v6 if v6 else []}


def derive_server(model: PopModel, host: str) -> StructuredConfig:
    srv = model.servers[host]
    return {
        "hostname": host,
        "kind": "server",
        "pop": model.pop.name,
        "interfaces": _server_interfaces(model, srv),
        "bgp": {**_server_bgp(model, host, srv), "full_table": _server_full_table(model, srv)},
        "arprelay": _server_arprelay(model, srv),
        "services": _server_services(model, srv),
        "peers": _server_peers(model),
        "irq": _server_irq(srv),
        "ipmi": None
        if srv.ipmi is None
        else {
            "address": srv.ipmi.address,
            "username": srv.ipmi.username,
            "password": _secret(srv.ipmi.password, f"{host}.server.ipmi.password"),
        },
        "pdu": None if srv.pdu is None else srv.pdu.model_dump(),
        "sysctl": dict(SERVER_SYSCTL),
    }


# --- routers -----------------------------------------------------------------------------------


def _router_servers(model: PopModel) -> dict[str, Any]:
    accept_v4: list[str] = []
    accept_v6: list[str] = []
    for svc in model.services:
        svc_v4, svc_v6 = _split(svc.prefixes)
        accept_v4 += svc_v4
        accept_v6 += svc_v6
    neighbors = []
    for host, srv in model.servers.items():
        v4, v6 = server_external_addresses(srv)
        if v4 is None and v6 is None:
            continue
        neighbors.append(
            {
                "name": host,
                "address_v4": v4,
                "address_v6": v6,
                "weight": srv.anycast_weight,
                "services": list(srv.services),
            }
        )
    return {
        "peer_asn": model.pop.server_asn,
        "password": _secret(model.pop.bgp.server_password, "pop.bgp.server_password"),
        "accept_v4": sorted(set(accept_v4), key=lambda p: ipaddress.ip_network(p)),
        "accept_v6": sorted(set(accept_v6), key=lambda p: ipaddress.ip_network(p)),
        # a server may announce at most every service prefix, never more
        "prefix_limit_v4": max(1, len(set(accept_v4))),
        "prefix_limit_v6": max(1, len(set(accept_v6))),
        "neighbors": neighbors,
    }


def _router_reflection(model: PopModel, host: str, servers: dict[str, Any]) -> dict[str, Any] | None:
    """Provider routes toward the servers (ARP-relay design), when the PoP asks for it.

    The sessions are iBGP in the PoP's AS, sourced from the router's loopback, one per server and
    family: advertising a route learned over eBGP to an iBGP peer keeps its next hop, the
    provider's address, where the eBGP sessions to the servers would put the router's own
    (single-hop eBGP cannot carry a third-party next hop from another subnet). The export is
    limited to routes from this router's providers, by their addresses.
    """
    if not model.pop.bgp.reflect_to_servers:
        return None
    rt = model.routers[host]
    providers = model.provider_by_router(host)
    return {
        "asn": model.pop.asn,
        "local_v4": rt.loopback_v4,
        "local_v6": rt.loopback_v6,
        "password": servers["password"],
        "providers_v4": [p.address_v4 for p in providers if p.address_v4],
        "providers_v6": [p.address_v6 for p in providers if p.address_v6],
        "neighbors": [
            {"name": nb["name"], "address_v4": nb["address_v4"], "address_v6": nb["address_v6"]}
            for nb in servers["neighbors"]
        ],
    }


def _router_gtsm(model: PopModel, host: str) -> dict[str, list[str]]:
    """Provider addresses whose BGP packets must arrive with TTL (hop limit) 255, per family."""
    gtsm = [p for p in model.provider_by_router(host) if p.ttl_security]
    return {
        "v4": [p.address_v4 for p in gtsm if p.address_v4],
        "v6": [p.address_v6 for p in gtsm if p.address_v6],
    }


def _router_interfaces(model: PopModel, host: str) -> list[dict[str, Any]]:
    rt = model.routers[host]
    return [
        {
            **itf.model_dump(),
            # the largest Ethernet frame, header included: what Junos calls the interface mtu
            "l2_mtu": itf.mtu + 14,
        }
        for itf in rt.interfaces
    ]


def _router_providers(model: PopModel, host: str) -> list[dict[str, Any]]:
    rt = model.routers[host]
    out = []
    for prov in model.provider_by_router(host):
        itf = next(i for i in rt.interfaces if i.name == prov.port)
        out.append(
            {
                "name": prov.name,
                "kind": prov.kind,
                "asn": prov.asn,
                "port": prov.port,
                "peer_v4": prov.address_v4,
                "peer_v6": prov.address_v6,
                "local_v4": _ip(itf.address_v4) if prov.address_v4 else None,
                "local_v6": _ip(itf.address_v6) if prov.address_v6 else None,
                "password": _secret(prov.password, f"providers.{prov.name}.password"),
                "prefix_limit_v4": prov.prefix_limit.v4,
                "prefix_limit_v6": prov.prefix_limit.v6,
                "local_preference": prov.local_preference,
                "ttl_security": prov.ttl_security,
            }
        )
    return out


def _router_pinning(servers: dict[str, Any]) -> dict[str, Any]:
    """Connection pinning on a Linux router: a connection to an anycast address stays on the server
    its first packet went to, so moving the route (a drain, a weight change, a server coming back)
    moves only new connections. Each server gets a firewall mark and a routing table of its own,
    numbered from its LAN address: adding a server renumbers no other."""
    pins: list[dict[str, Any]] = []
    for nb in servers["neighbors"]:
        address = nb["address_v4"] or nb["address_v6"]
        number = 0x10000 + (int(ipaddress.ip_address(address)) & 0xFFFF)
        while any(pin["mark"] == number for pin in pins):  # a LAN wider than /16
            number += 0x10000
        pins.append(
            {
                "name": nb["name"],
                "mark": number,
                "table": number,
                "gateway_v4": nb["address_v4"],
                "gateway_v6": nb["address_v6"],
            }
        )
    return {"anycast_v4": servers["accept_v4"], "anycast_v6": servers["accept_v6"], "servers": pins}


def derive_router(model: PopModel, host: str) -> StructuredConfig:
    rt = model.routers[host]
    bgp = model.pop.bgp
    lan4, lan6, lan_name = router_lan(rt)
    servers = _router_servers(model)
    return {
        "hostname": host,
        "kind": "router",
        "platform": rt.platform,
        "pop": model.pop.name,
        "asn": model.pop.asn,
        "router_id": rt.router_id or rt.loopback_v4,
        "mgmt_address": rt.mgmt_address,
        "loopback": {"v4": rt.loopback_v4, "v6": rt.loopback_v6},
        "interfaces": _router_interfaces(model, host),
        "lan": {"interface": lan_name, "address_v4": lan4, "address_v6": lan6},
        "sysctl": dict(ROUTER_SYSCTL),
        "gtsm": _router_gtsm(model, host),
        "bgp": {
            "hold_time": bgp.hold_time,
            "keepalive": bgp.keepalive,
            "bfd": {"interval_ms": bgp.bfd_interval_ms, "multiplier": bgp.bfd_multiplier},
            "announce_v4": list(model.pop.ranges.anycast_v4),
            "announce_v6": list(model.pop.ranges.anycast_v6),
            "providers": _router_providers(model, host),
            "servers": servers,
            "reflection": _router_reflection(model, host, servers),
        },
        "pinning": _router_pinning(servers) if rt.platform == "bird" else None,
    }


# --- switches ----------------------------------------------------------------------------------


def _port_channel_id(sw: Switch, first_port: str) -> int:
    """Stable port-channel number: the position of the bond's first member port on the switch."""
    return [p.name for p in sw.ports].index(first_port) + 1


def _bond_ports(srv: Server, bond: Bond, switch: str) -> list[str]:
    """The switch ports of `switch` that carry members of `bond`, in natural order."""
    by_nic = {n.name: n for n in srv.nics}
    return sorted(
        (port for m in bond.members if by_nic[m].switch == switch and (port := by_nic[m].switch_port)),
        key=natural_key,
    )


def _mlag_id(model: PopModel, host: str, srv: Server, bond: Bond) -> int | None:
    """MLAG interface id of a bond: both switches of the pair must use the same number.

    It is the port-channel number on the pair's first switch (natural order) when the bond has
    members there; a bond cabled only to the second switch is numbered after every port of the
    first, so the two ranges never collide. Stable while the port lists only grow at the end.
    """
    sw = model.switches[host]
    if sw.mlag_peer is None or sw.mlag_peer not in model.switches:
        return None
    first, second = sorted((host, sw.mlag_peer), key=natural_key)
    ports = _bond_ports(srv, bond, first)
    if ports:
        return _port_channel_id(model.switches[first], ports[0])
    ports = _bond_ports(srv, bond, second)
    return len(model.switches[first].ports) + _port_channel_id(model.switches[second], ports[0])


def _mgmt_interface_address(model: PopModel, address: str) -> str:
    """The management address with the management range's prefix length, as an interface takes it."""
    return f"{address}/{ipaddress.ip_network(model.pop.ranges.management_v4).prefixlen}"


def _servers_by_switch(model: PopModel) -> dict[str, list[str]]:
    """Which servers have a NIC on each switch, so a switch looks only at its own servers."""
    index: dict[str, list[str]] = {name: [] for name in model.switches}
    for srv_name, srv in model.servers.items():
        for sw_name in dict.fromkeys(n.switch for n in srv.nics if n.switch):
            index.setdefault(sw_name, []).append(srv_name)
    return index


def _switch_mlag(model: PopModel, host: str) -> dict[str, Any] | None:
    """The MLAG domain of a switch of a pair: its own peer-link and peer VLAN address, and the
    other switch's address on that VLAN as the peer address."""
    sw = model.switches[host]
    if sw.mlag is None or sw.mlag_peer is None:
        return None
    partner = model.switches[sw.mlag_peer].mlag
    if partner is None:  # the validator refuses this; derive does not guess a peer address
        return None
    return {
        "domain_id": sw.mlag.domain_id,
        "peer": sw.mlag_peer,
        "vlan": sw.mlag.vlan,
        "local_interface": f"Vlan{sw.mlag.vlan}",
        "address": sw.mlag.address,
        "peer_address": _ip(partner.address),
        "port_channel": sw.mlag.port_channel,
        "peer_link": sorted(sw.mlag.peer_link, key=natural_key),
    }


def _switch_bgp(model: PopModel, host: str) -> dict[str, Any] | None:
    """The relay switch's BGP (arprelay): eBGP to the providers cabled to it, iBGP to every server
    with the providers' routes, next hop unchanged; the PoP's aggregates go to the providers and the
    traffic for them on to the routers (static routes via their LAN addresses)."""
    ar = model.pop.arprelay
    if not ar.enabled or ar.switch != host:
        return None
    sw = model.switches[host]
    bgp = model.pop.bgp
    providers = []
    for prov in model.providers:
        if prov.switch != host:
            continue
        providers.append(
            {
                "name": prov.name,
                "kind": prov.kind,
                "asn": prov.asn,
                "port": prov.switch_port,
                "peer_v4": prov.address_v4,
                "peer_v6": prov.address_v6,
                "local_v4": _ip(prov.switch_address_v4) if prov.address_v4 else None,
                "local_v6": _ip(prov.switch_address_v6) if prov.address_v6 else None,
                "switch_address_v4": prov.switch_address_v4,
                "switch_address_v6": prov.switch_address_v6,
                "password": _secret(prov.password, f"providers.{prov.name}.password"),
                "prefix_limit_v4": prov.prefix_limit.v4,
                "prefix_limit_v6": prov.prefix_limit.v6,
                "local_preference": prov.local_preference,
                "ttl_security": prov.ttl_security,
                "table": prov.table,
            }
        )
    servers = []
    for name, srv in model.servers.items():
        v4, v6 = server_external_addresses(srv)
        if v4 or v6:
            servers.append({"name": name, "address_v4": v4, "address_v6": v6})
    lans = [router_lan(rt) for rt in model.routers.values()]
    return {
        "asn": model.pop.asn,
        "hold_time": bgp.hold_time,
        "keepalive": bgp.keepalive,
        "local_v4": _ip(sw.lan_address_v4),
        "local_v6": _ip(sw.lan_address_v6),
        "password": _secret(bgp.server_password, "pop.bgp.server_password"),
        "announce_v4": list(model.pop.ranges.anycast_v4),
        "announce_v6": list(model.pop.ranges.anycast_v6),
        "routers_v4": [gw for gw, _, _ in lans if gw],
        "routers_v6": [gw for _, gw, _ in lans if gw],
        "providers": providers,
        "servers": servers,
    }


def derive_switch(model: PopModel, host: str, cabled: list[str] | None = None) -> StructuredConfig:
    sw = model.switches[host]
    channels = []
    access = []
    names = cabled if cabled is not None else list(model.servers)
    for srv_name in names:
        srv = model.servers[srv_name]
        for bond in srv.bonds:
            ports = _bond_ports(srv, bond, host)
            if not ports:
                continue
            channels.append(
                {
                    "id": _port_channel_id(sw, ports[0]),
                    "description": f"{srv_name}:{bond.name}",
                    "members": ports,
                    "group": bond.group,
                    "vlan": sw.vlans.get(bond.group),
                    "lacp_rate": bond.lacp_rate,
                    "mlag": sw.mlag_peer is not None,
                    "mlag_id": _mlag_id(model, host, srv, bond),
                }
            )
        for nic in srv.nics:
            if nic.switch == host and not any(nic.name in b.members for b in srv.bonds):
                access.append(
                    {
                        "port": nic.switch_port,
                        "description": f"{srv_name}:{nic.name}",
                        "group": nic.group,
                        "vlan": sw.vlans.get(nic.group),
                    }
                )
    port_by_name = {p.name: p for p in sw.ports}
    return {
        "hostname": host,
        "kind": "switch",
        "platform": sw.platform,
        "pop": model.pop.name,
        "mgmt_address": sw.mgmt_address,
        "mgmt_interface_address": _mgmt_interface_address(model, sw.mgmt_address),
        "loopback_v4": sw.loopback_v4,
        "router_id": sw.loopback_v4 or sw.mgmt_address,
        "lan_address_v4": sw.lan_address_v4,
        "lan_address_v6": sw.lan_address_v6,
        "mlag_peer": sw.mlag_peer,
        "mlag": _switch_mlag(model, host),
        "vlans": [{"id": vid, "name": name} for name, vid in sorted(sw.vlans.items(), key=lambda kv: kv[1])],
        "ports": [p.model_dump() for p in sw.ports],
        "port_channels": sorted(channels, key=lambda c: c["id"]),
        "access_ports": sorted(access, key=lambda a: natural_key(a["port"])),
        "uplinks": [
            {
                **u.model_dump(),
                "speed": port_by_name[u.port].speed if u.port in port_by_name else None,
                # a router's LAN port is an access port of the server LAN
                "vlan": sw.vlans.get("external"),
            }
            for u in sw.uplinks
        ],
        "bgp": _switch_bgp(model, host),
        "arprelay": _relay_here(model, host),
    }


def _relay_here(model: PopModel, host: str) -> dict[str, Any] | None:
    """The relay's settings on the box that runs it, None elsewhere."""
    relay = derive_arprelay(model)
    return relay if relay is not None and relay["relay_host"] == host else None


# --- provisioning (the control server's provisiond and dnsmasq) --------------------------------


def boot_network(model: PopModel) -> tuple[str, str]:
    """The NIC group servers PXE-boot and call home on, and its network: wherever the call-home URL
    points (the management network in the lab, the server LAN where servers have no management port)."""
    host = urlsplit(model.pop.provisioning.callhome_url).hostname or ""
    ranges = model.pop.ranges
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "external", ranges.lan_v4
    if address in ipaddress.ip_network(ranges.management_v4):
        return "management", ranges.management_v4
    return "external", ranges.lan_v4


def _boot_address(srv: Server, group: str) -> str | None:
    """The IPv4 address a server's boot NICs get by DHCP: that group's NIC or bond address."""
    carriers: list[Bond | Nic] = [*srv.bonds, *srv.nics]
    for item in carriers:
        if item.group == group and item.address_v4:
            return _ip(item.address_v4)
    return None


def irq_plan_inputs(srv: Server) -> dict[str, Any]:
    """The plan-inputs document the irq_affinity role writes (its `__irq_affinity_spec`) with the
    role's defaults, so a stateless box re-applies the same placement at every boot."""
    return {
        "channels": None,
        "expect_cpu": None if srv.cpu == "discover" else srv.cpu.model_dump(),
        "groups": server_irq_groups(srv),
        "queues_per_core": srv.irq.queues_per_core,
        "rps": False,
        "xps": False,
    }


def callhome_identity(model: PopModel, host: str) -> dict[str, Any]:
    """What a booted server is told when it calls home with its MACs: who it is, its bonds and
    addresses (so Ansible can reach it), the operator's SSH keys and its IRQ plan inputs."""
    srv = model.servers[host]
    interfaces = _server_interfaces(model, srv)
    bonded = {m for b in srv.bonds for m in b.members}
    return {
        "hostname": host,
        "pop": model.pop.name,
        "role": "server",
        "nics": [{"name": n.name, "mac": n.mac, "group": n.group} for n in srv.nics],
        "bonds": interfaces["bonds"],
        "addresses": [
            {"nic": n.name, "address_v4": n.address_v4, "address_v6": n.address_v6}
            for n in srv.nics
            if n.name not in bonded and (n.address_v4 or n.address_v6)
        ],
        "gateways_v4": interfaces["gateways_v4"],
        "gateways_v6": interfaces["gateways_v6"],
        # the files the networkd role would install, from the same template
        "networkd_files": yaml.safe_load(render_template("networkd/server.yml.j2", sc=derive_server(model, host)))[
            "files"
        ],
        "ssh_authorized_keys": list(model.pop.provisioning.ssh_authorized_keys),
        "irq_plan_inputs": irq_plan_inputs(srv),
    }


def derive_provisioning(model: PopModel, host: str) -> dict[str, Any]:
    """provisiond and its dnsmasq on the control server: DHCP for every known boot MAC, the iPXE
    chain, the image to serve (and where to pull it from), and every server's call-home answer."""
    prov = model.pop.provisioning
    group, network = boot_network(model)
    url = urlsplit(prov.callhome_url)
    base = f"{url.scheme}://{url.netloc}"
    dhcp_hosts = []
    identities = []
    for name, srv in model.servers.items():
        macs = [n.mac for n in srv.nics if n.group == group]
        if macs:
            dhcp_hosts.append({"hostname": name, "macs": macs, "address_v4": _boot_address(srv, group)})
        identities.append({"macs": sorted(n.mac for n in srv.nics), "identity": callhome_identity(model, name)})
    return {
        "pop": model.pop.name,
        "boot_group": group,
        "network_v4": network,
        "server_url": base,
        "listen_port": url.port or (443 if url.scheme == "https" else 80),
        "callhome_url": prov.callhome_url,
        "callhome_token": _secret(prov.callhome_token, "pop.provisioning.callhome_token"),
        "image": {
            "version": prov.image_version,
            "sha256": prov.image_sha256,
            "public_key": prov.image_public_key,
        },
        "nearest_pops": [p.model_dump() for p in model.pop.nearest_pops],
        "dhcp_pool": None if prov.dhcp_pool is None else prov.dhcp_pool.model_dump(),
        "dhcp_hosts": dhcp_hosts,
        "hosts": identities,
    }


def derive_control(model: PopModel, host: str) -> StructuredConfig:
    ctl = model.controls[host]
    return {
        "hostname": host,
        "kind": "control",
        "pop": model.pop.name,
        "mgmt_address": ctl.mgmt_address,
        "lan_address_v4": ctl.lan_address_v4,
        "arprelay": _relay_here(model, host),
        "provisioning": derive_provisioning(model, host),
        # what recoveryd cycles outlets on; the servers' BMCs and outlets are in their own configs
        "pdus": [
            {
                "name": pdu.name,
                "address": pdu.address,
                "outlets": pdu.outlets,
                "snmp_community": _secret(pdu.snmp_community, f"pop.pdus.{pdu.name}.snmp_community"),
            }
            for pdu in model.pop.pdus
        ],
    }


def derive_all(model: PopModel) -> dict[str, StructuredConfig]:
    """Structured config for every device, keyed by hostname in natural order."""
    out: dict[str, StructuredConfig] = {}
    by_switch = _servers_by_switch(model)
    for host in model.hostnames:
        if host in model.routers:
            out[host] = derive_router(model, host)
        elif host in model.switches:
            out[host] = derive_switch(model, host, by_switch.get(host, []))
        elif host in model.servers:
            out[host] = derive_server(model, host)
        else:
            out[host] = derive_control(model, host)
    return out
