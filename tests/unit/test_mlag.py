"""The MLAG domain of an EOS switch pair: what the model requires, what derive makes of it and
what the switch config says. Starts from the junos-router golden inventory (sw1 + sw2, a /30 on
VLAN 4093, Port-Channel1000) and breaks one thing at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from edgepop.derive import derive_all
from edgepop.render import render_device
from edgepop.validate import load_valid, validate_inventory

PAIR = Path(__file__).resolve().parents[1] / "golden" / "inventories" / "junos-router"


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    root = tmp_path / "pop"
    shutil.copytree(PAIR, root)
    return root


def edit(root: Path, host: str, keys: list[str | int], value: object) -> None:
    yaml = YAML(typ="rt")
    path = root / "host_vars" / f"{host}.yml"
    data = yaml.load(path.read_text(encoding="utf-8"))
    node = data["switch"]
    for key in keys[:-1]:
        node = node[key]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)


def errors(root: Path) -> list[str]:
    """Every error as 'file key.path: message', without line numbers."""
    report = validate_inventory(root)
    return [f"{e.file} {e.path}: {e.message}" for e in report.errors]


def test_the_pair_is_derived_with_each_others_address() -> None:
    configs = derive_all(load_valid(PAIR))
    sw1, sw2 = configs["sw1"]["mlag"], configs["sw2"]["mlag"]
    assert sw1 == {
        "domain_id": "pop-mlag",
        "peer": "sw2",
        "vlan": 4093,
        "local_interface": "Vlan4093",
        "address": "203.0.113.253/30",
        "peer_address": "203.0.113.254",
        "port_channel": 1000,
        "peer_link": ["Ethernet53/1", "Ethernet54/1"],  # natural order, as listed in reverse
    }
    assert (sw2["address"], sw2["peer_address"], sw2["peer"]) == ("203.0.113.254/30", "203.0.113.253", "sw1")


def test_the_switch_config_carries_the_domain() -> None:
    sc = derive_all(load_valid(PAIR))["sw2"]
    conf = render_device(sc)["eos.cfg"]
    assert "vlan 4093\n   name mlag-peer\n   trunk group mlag-peer\n!\nno spanning-tree vlan-id 4093\n" in conf
    assert (
        "interface Port-Channel1000\n   description MLAG peer-link to sw1\n   switchport mode trunk\n"
        "   switchport trunk group mlag-peer\n!\n"
    ) in conf
    for port in ("Ethernet53/1", "Ethernet54/1"):
        assert f"interface {port}\n   description MLAG peer-link to sw1\n   channel-group 1000 mode active\n" in conf
    assert (
        "interface Vlan4093\n   description MLAG peer address\n   no autostate\n   ip address 203.0.113.254/30\n"
        in conf
    )
    assert (
        "mlag configuration\n   domain-id pop-mlag\n   local-interface Vlan4093\n   peer-address 203.0.113.253\n"
        "   peer-link Port-Channel1000\n!\n"
    ) in conf
    # the domain comes before management, and server port-channels still carry their MLAG ids
    assert conf.index("mlag configuration") < conf.index("interface Management1")
    assert "   mlag 3\n" in conf


def test_a_single_switch_renders_no_domain() -> None:
    lab = Path(__file__).resolve().parents[2] / "inventory" / "lab"
    sc = derive_all(load_valid(lab))["sw1"]
    assert sc["mlag"] is None
    edge = derive_all(load_valid(PAIR.parent / "bird-edge"))["sw1"]
    assert edge["mlag"] is None and "mlag" not in render_device(edge)["bird.conf"]


def test_an_eos_pair_without_a_domain_is_refused(pair: Path) -> None:
    edit(pair, "sw1", ["mlag"], None)
    assert errors(pair) == [
        "host_vars/sw1.yml switch.mlag_peer: an EOS switch with an mlag_peer needs `mlag` (domain_id, peer_link, "
        "address) for its MLAG domain",
    ]


def test_a_domain_without_a_peer_is_refused(pair: Path) -> None:
    edit(pair, "sw2", ["mlag_peer"], None)
    found = errors(pair)
    assert "host_vars/sw1.yml switch.mlag_peer: 'sw2' does not name 'sw1' as its mlag_peer" in found
    assert "host_vars/sw2.yml switch.mlag: an MLAG domain needs mlag_peer: the other switch of the pair" in found


def test_peer_link_ports_must_exist_be_free_and_listed_once(pair: Path) -> None:
    edit(
        pair,
        "sw1",
        ["mlag", "peer_link"],
        ["Ethernet53/1", "Ethernet53/1", "Ethernet60/1", "Ethernet1", "Ethernet49/1"],
    )
    assert errors(pair) == [
        "host_vars/sw1.yml switch.mlag.peer_link[1]: port 'Ethernet53/1' is listed twice",
        "host_vars/sw1.yml switch.mlag.peer_link[2]: switch 'sw1' has no port 'Ethernet60/1'",
        "host_vars/sw1.yml switch.mlag.peer_link[3]: port 'Ethernet1' is cabled to srv1:ext0, not to the other switch",
        "host_vars/sw1.yml switch.mlag.peer_link[4]: port 'Ethernet49/1' is cabled to rtr1:et-0/0/0, "
        "not to the other switch",
    ]


def test_a_peer_link_port_that_names_a_server_is_refused(pair: Path) -> None:
    edit(pair, "sw2", ["ports", 7, "peer"], "srv9:ext0")
    found = errors(pair)
    assert (
        "host_vars/sw2.yml switch.mlag.peer_link[1]: port 'Ethernet53/1' says its peer is srv9:ext0, "
        "not the other switch" in found
    )


def test_peer_addresses_must_share_a_point_to_point_network(pair: Path) -> None:
    edit(pair, "sw2", ["mlag", "address"], "203.0.113.250/31")
    assert errors(pair) == [
        "host_vars/sw2.yml switch.mlag.address: 203.0.113.250/31 and sw1's 203.0.113.253/30 are not in one "
        "point-to-point network",
    ]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("203.0.113.253/29", "expected a /31 or /30 (two switches on a point-to-point VLAN), got /29"),
        ("203.0.113.255/30", "203.0.113.255/30 is the broadcast address of 203.0.113.252/30, not a host address"),
        ("203.0.113.252/30", "203.0.113.252/30 is the network address of 203.0.113.252/30, not a host address"),
    ],
)
def test_peer_address_shape(pair: Path, address: str, message: str) -> None:
    edit(pair, "sw1", ["mlag", "address"], address)
    assert any(e.startswith("host_vars/sw1.yml switch.mlag.address: ") and message in e for e in errors(pair)), errors(
        pair
    )


def test_the_peer_vlan_stays_out_of_the_pops_ranges(pair: Path) -> None:
    edit(pair, "sw1", ["mlag", "address"], "198.51.100.62/31")
    edit(pair, "sw2", ["mlag", "address"], "198.51.100.63/31")
    found = errors(pair)
    assert found == [
        "host_vars/sw1.yml switch.mlag.address: 198.51.100.62/31 overlaps lan_v4 (198.51.100.0/26): "
        "the peer VLAN is private to the pair",
        "host_vars/sw2.yml switch.mlag.address: 198.51.100.62/31 overlaps lan_v4 (198.51.100.0/26): "
        "the peer VLAN is private to the pair",
    ]


def test_the_pair_must_agree_on_domain_and_vlan(pair: Path) -> None:
    edit(pair, "sw2", ["mlag", "domain_id"], "other")
    edit(pair, "sw2", ["mlag", "vlan"], 4094)
    assert errors(pair) == [
        "host_vars/sw2.yml switch.mlag.domain_id: 'other' differs from sw1's 'pop-mlag'",
        "host_vars/sw2.yml switch.mlag.vlan: VLAN 4094 differs from sw1's peer VLAN 4093",
    ]


def test_port_channel_and_vlan_must_not_collide_with_the_servers(pair: Path) -> None:
    edit(pair, "sw1", ["mlag", "port_channel"], 3)
    edit(pair, "sw1", ["mlag", "vlan"], 200)
    edit(pair, "sw2", ["mlag", "vlan"], 200)
    assert errors(pair) == [
        "host_vars/sw1.yml switch.mlag.port_channel: Port-Channel3 may be a server port-channel: those are "
        "numbered by port position, 1 to 9 on sw1",
        "host_vars/sw1.yml switch.mlag.vlan: VLAN 200 is already the internal VLAN of sw1",
        "host_vars/sw2.yml switch.mlag.vlan: VLAN 200 is already the internal VLAN of sw2",
    ]


def test_the_same_peer_address_twice_is_a_duplicate(pair: Path) -> None:
    edit(pair, "sw2", ["mlag", "address"], "203.0.113.253/30")
    assert errors(pair) == [
        "host_vars/sw2.yml switch.mlag.address: duplicate IP address 203.0.113.253: already used by "
        "sw1:switch.mlag.address",
    ]


def test_mlag_is_for_eos_only(pair: Path) -> None:
    edit(pair, "sw1", ["platform"], "bird")
    assert "host_vars/sw1.yml switch.mlag: MLAG is rendered for EOS switches only, not bird" in errors(pair)
