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

from edgepop.model.pop import PopModel
from edgepop.model.schema import Bond, Nic, Router, Server, Switch, natural_key
from edgepop.model.secrets import vault_reference

StructuredConfig = dict[str, Any]


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


# --- servers -----------------------------------------------------------------------------------


def server_external_addresses(srv: Server) -> tuple[str | None, str | None]:
    """The server's addresses on the router LAN (external bond, or the unbonded external NIC)."""
    carriers: list[Bond | Nic] = [*srv.bonds, *srv.nics]
    for item in carriers:
        if item.group == "external" and (item.address_v4 or item.address_v6):
            return _ip(item.address_v4), _ip(item.address_v6)
    return None, None


def router_lan(rt: Router) -> tuple[str | None, str | None, str]:
    itf = next(i for i in rt.interfaces if i.lan)
    return _ip(itf.address_v4), _ip(itf.address_v6), itf.name


def _server_interfaces(srv: Server) -> dict[str, Any]:
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

    return {"nics": [nic(n) for n in srv.nics], "bonds": [bond(b) for b in srv.bonds]}


def _server_bgp(model: PopModel, host: str, srv: Server) -> dict[str, Any]:
    v4, v6 = server_external_addresses(srv)
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
                "weight": srv.anycast_weight,
                "unit": svc.unit,
                "check": svc.check.model_dump(),
                "restart_command": svc.restart_command or ["systemctl", "restart", svc.unit],
            }
        )
    return out


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
    }


def derive_server(model: PopModel, host: str) -> StructuredConfig:
    srv = model.servers[host]
    return {
        "hostname": host,
        "kind": "server",
        "pop": model.pop.name,
        "interfaces": _server_interfaces(srv),
        "bgp": _server_bgp(model, host, srv),
        "services": _server_services(model, srv),
        "irq": _server_irq(srv),
        "ipmi": None
        if srv.ipmi is None
        else {
            "address": srv.ipmi.address,
            "username": srv.ipmi.username,
            "password": _secret(srv.ipmi.password, f"{host}.server.ipmi.password"),
        },
        "pdu": None if srv.pdu is None else srv.pdu.model_dump(),
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
        "accept_v4": sorted(set(accept_v4), key=lambda p: ipaddress.ip_network(p)),
        "accept_v6": sorted(set(accept_v6), key=lambda p: ipaddress.ip_network(p)),
        # a server may announce at most every service prefix, never more
        "prefix_limit_v4": max(1, len(set(accept_v4))),
        "prefix_limit_v6": max(1, len(set(accept_v6))),
        "neighbors": neighbors,
    }


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
            }
        )
    return out


def derive_router(model: PopModel, host: str) -> StructuredConfig:
    rt = model.routers[host]
    bgp = model.pop.bgp
    lan4, lan6, lan_name = router_lan(rt)
    return {
        "hostname": host,
        "kind": "router",
        "platform": rt.platform,
        "pop": model.pop.name,
        "asn": model.pop.asn,
        "router_id": rt.router_id or rt.loopback_v4,
        "mgmt_address": rt.mgmt_address,
        "loopback": {"v4": rt.loopback_v4, "v6": rt.loopback_v6},
        "interfaces": [i.model_dump() for i in rt.interfaces],
        "lan": {"interface": lan_name, "address_v4": lan4, "address_v6": lan6},
        "bgp": {
            "hold_time": bgp.hold_time,
            "keepalive": bgp.keepalive,
            "bfd": {"interval_ms": bgp.bfd_interval_ms, "multiplier": bgp.bfd_multiplier},
            "announce_v4": list(model.pop.ranges.anycast_v4),
            "announce_v6": list(model.pop.ranges.anycast_v6),
            "providers": _router_providers(model, host),
            "servers": _router_servers(model),
        },
    }


# --- switches ----------------------------------------------------------------------------------


def _port_channel_id(sw: Switch, first_port: str) -> int:
    """Stable port-channel number: the position of the bond's first member port on the switch."""
    return [p.name for p in sw.ports].index(first_port) + 1


def derive_switch(model: PopModel, host: str) -> StructuredConfig:
    sw = model.switches[host]
    channels = []
    access = []
    for srv_name, srv in model.servers.items():
        by_nic = {n.name: n for n in srv.nics}
        for bond in srv.bonds:
            ports = sorted(
                (port for m in bond.members if by_nic[m].switch == host and (port := by_nic[m].switch_port)),
                key=natural_key,
            )
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
        "loopback_v4": sw.loopback_v4,
        "mlag_peer": sw.mlag_peer,
        "vlans": [{"id": vid, "name": name} for name, vid in sorted(sw.vlans.items(), key=lambda kv: kv[1])],
        "ports": [p.model_dump() for p in sw.ports],
        "port_channels": sorted(channels, key=lambda c: c["id"]),
        "access_ports": sorted(access, key=lambda a: natural_key(a["port"])),
        "uplinks": [
            {**u.model_dump(), "speed": port_by_name[u.port].speed if u.port in port_by_name else None}
            for u in sw.uplinks
        ],
    }


def derive_control(model: PopModel, host: str) -> StructuredConfig:
    ctl = model.controls[host]
    return {
        "hostname": host,
        "kind": "control",
        "pop": model.pop.name,
        "mgmt_address": ctl.mgmt_address,
        "lan_address_v4": ctl.lan_address_v4,
        "provisioning": {
            "image_version": model.pop.provisioning.image_version,
            "image_sha256": model.pop.provisioning.image_sha256,
            "callhome_url": model.pop.provisioning.callhome_url,
            "nearest_pops": [p.model_dump() for p in model.pop.nearest_pops],
        },
    }


def derive_all(model: PopModel) -> dict[str, StructuredConfig]:
    """Structured config for every device, keyed by hostname in natural order."""
    out: dict[str, StructuredConfig] = {}
    for host in model.hostnames:
        if host in model.routers:
            out[host] = derive_router(model, host)
        elif host in model.switches:
            out[host] = derive_switch(model, host)
        elif host in model.servers:
            out[host] = derive_server(model, host)
        else:
            out[host] = derive_control(model, host)
    return out
