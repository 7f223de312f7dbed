"""The structured config the templates render from: the properties that matter on a real PoP.

Weights become MEDs, routers accept only declared host routes, every service gets its own static
protocol (healthd withdraws services one by one), and port-channels follow the cabling, with MLAG
ids that agree across the pair.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from edgepop.derive import StructuredConfig, derive_all, static_protocol
from edgepop.model.pop import PopModel
from edgepop.validate import load_valid

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inventories"


@cache
def model(name: str) -> PopModel:
    return load_valid(GOLDEN / name)


@cache
def configs(name: str) -> dict[str, StructuredConfig]:
    return derive_all(model(name))


def servers(name: str) -> list[tuple[str, StructuredConfig]]:
    return [(host, sc) for host, sc in configs(name).items() if sc["kind"] == "server"]


def routers(name: str) -> list[tuple[str, StructuredConfig]]:
    return [(host, sc) for host, sc in configs(name).items() if sc["kind"] == "router"]


@pytest.mark.parametrize("inv", ["junos-router", "bird-edge"])
def test_med_is_the_server_weight(inv: str) -> None:
    weights = set()
    for host, sc in servers(inv):
        weight = model(inv).servers[host].anycast_weight
        weights.add(weight)
        assert sc["bgp"]["med"] == weight
        assert all(svc["weight"] == weight for svc in sc["services"])
        for rhost, rsc in routers(inv):
            nb = next(n for n in rsc["bgp"]["servers"]["neighbors"] if n["name"] == host)
            assert nb["weight"] == weight, f"{rhost} sees {host} with another weight"
    assert len(weights) > 1, "the inventory must give servers different weights for this test to mean anything"


@pytest.mark.parametrize("inv", ["junos-router", "bird-edge"])
def test_routers_accept_exactly_the_declared_host_routes(inv: str) -> None:
    declared = {p for svc in model(inv).services for p in svc.prefixes}
    for _, sc in routers(inv):
        srv = sc["bgp"]["servers"]
        accepted = set(srv["accept_v4"]) | set(srv["accept_v6"])
        assert accepted == declared
        assert all(ipaddress.ip_network(p).version == 4 for p in srv["accept_v4"])
        assert all(ipaddress.ip_network(p).version == 6 for p in srv["accept_v6"])
        assert srv["prefix_limit_v4"] == max(1, len(srv["accept_v4"]))
        assert srv["prefix_limit_v6"] == max(1, len(srv["accept_v6"]))
        # never the aggregates themselves, and nothing outside them
        aggregates = [ipaddress.ip_network(a) for a in sc["bgp"]["announce_v4"] + sc["bgp"]["announce_v6"]]
        for prefix in accepted:
            net = ipaddress.ip_network(prefix)
            assert net.prefixlen == net.max_prefixlen
            assert any(net.version == a.version and net.subnet_of(a) for a in aggregates)  # type: ignore[arg-type]


def test_a_server_exports_only_its_own_services() -> None:
    by_host = dict(servers("junos-router"))
    http_only = by_host["srv2"]
    assert [s["name"] for s in http_only["services"]] == ["http"]
    assert http_only["bgp"]["export_v4"] == ["203.0.113.130/32"]
    assert http_only["bgp"]["export_v6"] == ["2001:db8:200::80/128"]
    assert http_only["interfaces"]["loopback"] == ["203.0.113.130/32", "2001:db8:200::80/128"]
    nothing = dict(servers("bird-edge"))["srv10"]
    assert nothing["services"] == []
    assert nothing["bgp"]["export_v4"] == nothing["bgp"]["export_v6"] == nothing["interfaces"]["loopback"] == []


@pytest.mark.parametrize("inv", ["junos-router", "bird-edge"])
def test_one_static_protocol_per_service_and_family(inv: str) -> None:
    for host, sc in servers(inv):
        names = []
        for svc in sc["services"]:
            for fam in ("v4", "v6"):
                proto = svc[f"protocol_{fam}"]
                assert (proto is not None) == bool(svc[f"prefixes_{fam}"])
                if proto is not None:
                    assert proto == static_protocol(svc["name"], fam)
                    names.append(proto)
        assert len(names) == len(set(names)), f"{host}: two services share a static protocol"


def test_static_protocol_names_are_bird_identifiers() -> None:
    assert static_protocol("dns-auth", "v4") == "static_dns_auth_v4"
    assert static_protocol("http", "v6") == "static_http_v6"
    services = {s["name"]: s for s in dict(servers("bird-edge"))["srv1"]["services"]}
    assert services["dns-auth"]["protocol_v4"] == "static_dns_auth_v4"
    assert services["dns-auth"]["protocol_v6"] is None  # the service has no IPv6 prefix


def test_port_channels_follow_the_cabling() -> None:
    m = model("junos-router")
    cfg = configs("junos-router")
    for sw in ("sw1", "sw2"):
        channels = {pc["description"]: pc for pc in cfg[sw]["port_channels"]}
        expected: dict[str, list[str]] = {}
        for host, srv in m.servers.items():
            by_nic = {n.name: n for n in srv.nics}
            for bond in srv.bonds:
                ports = [by_nic[n].switch_port for n in bond.members if by_nic[n].switch == sw]
                if ports:
                    expected[f"{host}:{bond.name}"] = sorted(p for p in ports if p is not None)
        assert {d: pc["members"] for d, pc in channels.items()} == expected
        ids = [pc["id"] for pc in channels.values()]
        assert len(ids) == len(set(ids)), f"{sw}: two port-channels share a number"
        # the number is the position of the first member port: stable as servers come and go
        port_names = [p.name for p in m.switches[sw].ports]
        for pc in channels.values():
            assert pc["id"] == port_names.index(pc["members"][0]) + 1
    # no member port is also an access port
    for sw in ("sw1", "sw2"):
        members = {p for pc in cfg[sw]["port_channels"] for p in pc["members"]}
        assert not members & {a["port"] for a in cfg[sw]["access_ports"]}


def test_mlag_ids_agree_across_the_pair_and_never_collide() -> None:
    cfg = configs("junos-router")
    sw1 = {pc["description"]: pc for pc in cfg["sw1"]["port_channels"]}
    sw2 = {pc["description"]: pc for pc in cfg["sw2"]["port_channels"]}
    assert set(sw1) == set(sw2)
    for bond in sw1:
        assert sw1[bond]["mlag_id"] == sw2[bond]["mlag_id"], bond
    # the inventory cables asymmetrically, so the port-channel numbers differ for some bond
    assert any(sw1[b]["id"] != sw2[b]["id"] for b in sw1)
    for sw in (sw1, sw2):
        counts = Counter(pc["mlag_id"] for pc in sw.values())
        assert all(n == 1 for n in counts.values()), counts


def test_single_switch_has_no_mlag() -> None:
    sw = configs("bird-edge")["sw1"]
    assert sw["port_channels"]
    assert all(pc["mlag"] is False and pc["mlag_id"] is None for pc in sw["port_channels"])
    assert [pc["lacp_rate"] for pc in sw["port_channels"] if pc["description"] == "srv1:bond0"] == ["slow"]


def test_uplinks_are_server_lan_access_ports() -> None:
    for sw in ("sw1", "sw2"):
        sc = configs("junos-router")[sw]
        assert [u["vlan"] for u in sc["uplinks"]] == [100]
        assert sc["mgmt_interface_address"] == f"{sc['mgmt_address']}/26"
        assert sc["router_id"] == sc["loopback_v4"]
    edge = configs("bird-edge")["sw1"]
    assert edge["uplinks"][0]["vlan"] == 10
    assert edge["router_id"] == edge["mgmt_address"]  # no loopback: falls back to management


def test_router_interfaces_carry_the_l2_mtu() -> None:
    rtr = configs("junos-router")["rtr1"]
    mtus = {i["name"]: (i["mtu"], i["l2_mtu"]) for i in rtr["interfaces"]}
    assert mtus["et-0/0/0"] == (9000, 9014)
    assert mtus["et-0/0/1"] == (1500, 1514)


def test_ttl_security_follows_the_provider() -> None:
    rtr1, rtr2 = configs("junos-router")["rtr1"], configs("junos-router")["rtr2"]
    assert {p["name"]: p["ttl_security"] for p in rtr1["bgp"]["providers"]} == {"transit-a": True, "peer-c": True}
    assert [p["ttl_security"] for p in rtr2["bgp"]["providers"]] == [False]
    assert rtr2["gtsm"] == {"v4": [], "v6": []}
    fra1 = derive_all(load_valid(GOLDEN.parents[2] / "inventory" / "examples" / "fra1"))
    routers = [sc for sc in fra1.values() if sc["kind"] == "router"]
    assert routers and all(not p["ttl_security"] for sc in routers for p in sc["bgp"]["providers"])
