"""Provider next hops out of a switch's ARP/neighbour table (ARP-relay design).

One file, two users: the `arista_arp_facts` Ansible module (NAPALM `get_arp_table` entries) and the
switch half of the arprelay agent (eAPI answers, or a Linux switch's neighbour table); this is
src/edgepop/arp_table.py too. Standard library only.

An entry is `{"ip", "mac", "interface"}` as NAPALM normalises it; EOS names the interface of an
entry learned on a VLAN interface "Vlan100, Ethernet1" (SVI, then the physical port), which is kept
as `interface` with the physical port split out as `port`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

_HEX = re.compile(r"[0-9a-fA-F]")


class ArpError(Exception):
    """An answer that is not an ARP table, or providers that cannot be matched; names which."""


def normalise_mac(raw: Any) -> str | None:
    """`0050.5684.3b25`, `00:50:56:84:3B:25`, `00-50-56-84-3b-25` -> `00:50:56:84:3b:25`; None when
    it is not a usable unicast MAC (an incomplete entry shows as all zeros or empty)."""
    digits = "".join(_HEX.findall(str(raw or "")))
    if len(digits) != 12 or len(str(raw)) > 17:
        return None
    mac = ":".join(digits[i : i + 2] for i in range(0, 12, 2)).lower()
    if mac == "00:00:00:00:00:00" or int(mac[:2], 16) & 1:
        return None
    return mac


def split_interface(interface: str) -> tuple[str, str]:
    """("Vlan100, Ethernet1") -> ("Vlan100", "Ethernet1"); a routed port is both."""
    parts = [p.strip() for p in str(interface).split(",") if p.strip()]
    if not parts:
        return "", ""
    return parts[0], parts[-1]


def eapi_entries(answer: Mapping[str, Any], vrf: str = "default") -> list[dict[str, Any]]:
    """Entries of an eAPI JSON answer to `show arp vrf all`, `show ip arp` or `show ipv6 neighbors`."""
    if not isinstance(answer, Mapping):
        raise ArpError(f"expected a JSON object from the switch, got {type(answer).__name__}")
    scopes: list[Mapping[str, Any]]
    if "vrfs" in answer:
        vrfs = answer["vrfs"] or {}
        scopes = [v for k, v in vrfs.items() if not vrf or k == vrf]
    else:
        scopes = [answer]
    out = []
    for scope in scopes:
        for key in ("ipV4Neighbors", "ipV6Neighbors"):
            for n in scope.get(key) or []:
                out.append({"ip": n.get("address"), "mac": n.get("hwAddress"), "interface": n.get("interface", "")})
    return out


def provider_nexthops(
    entries: Iterable[Mapping[str, Any]], providers: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Match the table against the providers' addresses.

    `providers`: `{"name", "address", ...}` (one per address; other keys, a table number say, are
    carried through). Returns (next hops sorted by provider then address, addresses not in the table
    or without a usable MAC).
    """
    wanted: dict[str, Mapping[str, Any]] = {}
    for p in providers:
        try:
            addr = str(ipaddress.ip_address(str(p["address"])))
        except (KeyError, ValueError):
            raise ArpError(f"provider {p.get('name', '?')}: {p.get('address')!r} is not an IP address") from None
        wanted[addr] = p
    found: dict[str, dict[str, Any]] = {}
    for e in entries:
        try:
            addr = str(ipaddress.ip_address(str(e.get("ip"))))
        except ValueError:
            continue
        prov = wanted.get(addr)
        mac = normalise_mac(e.get("mac"))
        if prov is None or mac is None:
            continue
        svi, port = split_interface(str(e.get("interface") or ""))
        found[addr] = {
            **{k: v for k, v in prov.items() if k != "address"},
            "provider": prov["name"],
            "address": addr,
            "mac": mac,
            "interface": svi,
            "port": port,
        }
        found[addr].pop("name", None)
    missing = sorted(a for a in wanted if a not in found)
    nexthops = sorted(found.values(), key=lambda n: (n["provider"], ipaddress.ip_address(n["address"]).version))
    return nexthops, missing
