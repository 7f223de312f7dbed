"""A new server from a template: copy its shape, substitute what identifies one machine.

PoPs grow by adding servers like the ones they have: same hardware, same cabling pattern, same
services. What a copy must not keep is everything that names one physical machine or one place:
the MAC of every NIC, every address, the switch port of every cabled NIC, the IPMI address and the
PDU outlet. When the template is an existing server, each of these must be given, and every one
that is missing is reported with the option that supplies it. When the template is a file written
for the new server (`--from`), its values stand and the options only override them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from edgepop.inventory_edit.roundtrip import scalar_like
from edgepop.model.schema import MAC_RE, unicast_mac_problem

FAMILIES = ("v4", "v6")


@dataclass(frozen=True)
class PortRef:
    """`--switch-port NIC=[SWITCH:]PORT`: the switch is the template's unless named."""

    switch: str | None
    port: str


@dataclass(frozen=True)
class OutletRef:
    """`--pdu-outlet [PDU:]OUTLET`: the PDU is the template's unless named."""

    pdu: str | None
    outlet: int


@dataclass
class ServerSpec:
    """The per-machine values of a new server, as the operator gave them."""

    macs: dict[str, str] = field(default_factory=dict)  # NIC name -> MAC
    macs_in_order: list[str] = field(default_factory=list)  # for the other NICs, in template order
    addresses: dict[tuple[str, str], str] = field(default_factory=dict)  # (NIC or bond, v4|v6) -> address
    switch_ports: dict[str, PortRef] = field(default_factory=dict)
    ipmi_address: str | None = None
    pdu_outlet: OutletRef | None = None
    weight: int | None = None
    rack: str | None = None


def normalise_mac(text: str) -> str:
    """Call-home and vendor tools print MACs in several ways; the inventory wants aa:bb:cc:dd:ee:ff.

    Only a NIC's own (unicast, non-zero) address identifies a box, so broadcast, multicast and
    all-zero MACs are refused here, where they come in, rather than by the validator later."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    mac = text.strip().lower().replace("-", ":")
    if re.fullmatch(r"[0-9a-f]{12}", mac):
        mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
    if not re.fullmatch(MAC_RE, mac):
        raise ValueError(f"{text!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    problem = unicast_mac_problem(mac)
    if problem:
        raise ValueError(problem)
    return mac


def _maps(node: Any) -> list[CommentedMap]:
    return [item for item in node if isinstance(item, CommentedMap)] if isinstance(node, CommentedSeq) else []


def interface_addresses(server: Any) -> dict[str, str]:
    """NIC or bond name -> its IPv4 address without the prefix length."""
    out: dict[str, str] = {}
    if not isinstance(server, CommentedMap):
        return out
    for iface in [*_maps(server.get("nics")), *_maps(server.get("bonds"))]:
        if iface.get("address_v4") is not None:
            out[str(iface.get("name"))] = str(iface["address_v4"]).partition("/")[0]
    return out


def _set(node: CommentedMap, key: str, value: Any) -> None:
    node[key] = scalar_like(node.get(key), value)


def personalise(server: CommentedMap, spec: ServerSpec, template: str, *, complete: bool) -> list[str]:
    """Apply the spec to a copy of the template's server body; return every problem found.

    `complete`: the template is another server, so every per-machine value must be replaced."""
    problems: list[str] = []
    nics = _maps(server.get("nics"))
    bonds = _maps(server.get("bonds"))
    names = [str(n.get("name")) for n in nics]
    listing = ", ".join(names)
    problems += _assign_macs(nics, names, spec, template, complete)

    ifaces = {str(i.get("name")): i for i in [*nics, *bonds]}
    for (name, fam), _ in spec.addresses.items():
        iface = ifaces.get(name)
        if iface is None:
            problems.append(f"--address-{fam} {name}=...: {template} has no NIC or bond {name!r}")
        elif f"address_{fam}" not in iface:
            problems.append(f"--address-{fam} {name}=...: {name} on {template} has no address_{fam} to replace")
    for name, iface in ifaces.items():
        for fam in FAMILIES:
            key = f"address_{fam}"
            if key not in iface:
                continue
            given = spec.addresses.get((name, fam))
            if given is None:
                if complete:
                    problems.append(f"missing --address-{fam} {name}=ADDRESS ({template} has {iface[key]})")
                continue
            if "/" not in given and "/" in str(iface[key]):
                given = f"{given}/{str(iface[key]).partition('/')[2]}"
            _set(iface, key, given)

    for name, given_port in spec.switch_ports.items():
        if name not in names:
            problems.append(f"--switch-port {name}=...: {template} has no NIC {name!r} (NICs: {listing})")
        elif given_port.switch is None and nics[names.index(name)].get("switch") is None:
            problems.append(
                f"--switch-port {name}={given_port.port}: {name} is not cabled on {template}; give SWITCH:PORT"
            )
    for name, nic in zip(names, nics, strict=True):
        ref = spec.switch_ports.get(name)
        if ref is None:
            if complete and nic.get("switch_port") is not None:
                problems.append(f"missing --switch-port {name}=PORT ({template} uses {nic['switch_port']})")
            continue
        if ref.switch is not None:
            _set(nic, "switch", ref.switch)
        _set(nic, "switch_port", ref.port)

    problems += _ipmi_and_pdu(server, spec, template, complete)
    if spec.weight is not None:
        _set(server, "anycast_weight", spec.weight)
    if spec.rack is not None:
        _set(server, "rack", spec.rack)
    return problems


def spec_macs(spec: ServerSpec) -> tuple[list[str], dict[str, str], list[str]]:
    """The spec's MACs in the inventory's form, and a problem for each that is not a NIC's MAC.

    The CLI normalises `--mac` already; this covers every other way a spec is built (provisiond's
    queue, a caller of the commands), so no MAC reaches a document unchecked."""
    problems: list[str] = []
    macs: dict[str, str] = {}
    in_order: list[str] = []
    for name, raw in spec.macs.items():
        try:
            macs[name] = normalise_mac(raw)
        except ValueError as exc:
            problems.append(f"--mac {name}={raw}: {exc}")
    for raw in spec.macs_in_order:
        try:
            in_order.append(normalise_mac(raw))
        except ValueError as exc:
            problems.append(f"--mac {raw}: {exc}")
    return problems, macs, in_order


def _assign_macs(
    nics: list[CommentedMap], names: list[str], spec: ServerSpec, template: str, complete: bool
) -> list[str]:
    problems, macs, in_order = spec_macs(spec)
    if problems:
        return problems
    listing = ", ".join(names)
    assigned = {name: mac for name, mac in macs.items() if name in names}
    for name in macs:
        if name not in names:
            problems.append(f"--mac {name}=...: {template} has no NIC {name!r} (NICs: {listing})")
    rest = [name for name in names if name not in macs]
    if in_order:
        if len(in_order) != len(rest):
            problems.append(
                f"{len(in_order)} MAC(s) given for {len(rest)} NIC(s) ({', '.join(rest)}); "
                "give one MAC per NIC in this order, or name them as NIC=MAC"
            )
        else:
            assigned.update(zip(rest, in_order, strict=True))
    given = [*macs.values(), *in_order]
    for mac in sorted({m for m in given if given.count(m) > 1}):
        problems.append(f"MAC {mac} is given more than once")
    for name, nic in zip(names, nics, strict=True):
        if name in assigned:
            _set(nic, "mac", assigned[name])
        elif complete:
            problems.append(f"missing --mac {name}=MAC ({template} has {nic.get('mac')})")
    return problems


def _ipmi_and_pdu(server: CommentedMap, spec: ServerSpec, template: str, complete: bool) -> list[str]:
    problems: list[str] = []
    ipmi = server.get("ipmi")
    if spec.ipmi_address is not None:
        if isinstance(ipmi, CommentedMap):
            _set(ipmi, "address", spec.ipmi_address)
        else:
            problems.append(f"--ipmi-address: {template} has no ipmi section to take it (write the server with --from)")
    elif complete and isinstance(ipmi, CommentedMap) and ipmi.get("address") is not None:
        problems.append(f"missing --ipmi-address ADDRESS ({template} has {ipmi['address']})")
    pdu = server.get("pdu")
    if spec.pdu_outlet is not None:
        if isinstance(pdu, CommentedMap):
            if spec.pdu_outlet.pdu is not None:
                _set(pdu, "pdu", spec.pdu_outlet.pdu)
            _set(pdu, "outlet", spec.pdu_outlet.outlet)
        else:
            problems.append(f"--pdu-outlet: {template} has no pdu section to take it (write the server with --from)")
    elif complete and isinstance(pdu, CommentedMap):
        problems.append(f"missing --pdu-outlet OUTLET ({template} uses {pdu.get('pdu')} outlet {pdu.get('outlet')})")
    return problems
