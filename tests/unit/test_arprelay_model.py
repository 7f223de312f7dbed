"""The ARP-relay part of the data model: pop.arprelay, providers on the relay switch, what derive
makes of them for the switch, the servers and the relay, and the errors for what does not fit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from edgepop.derive import derive_all
from edgepop.render import render_device, render_template
from edgepop.validate import load_valid, validate_inventory

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "inventories" / "arprelay-switch"


def test_off_in_the_lab_and_the_examples() -> None:
    for path in (REPO / "inventory" / "lab", *sorted((REPO / "inventory" / "examples").iterdir())):
        model = load_valid(path)
        assert model.pop.arprelay.enabled is False
        for sc in derive_all(model).values():
            assert sc.get("arprelay") is None


def test_derived_for_the_switch_the_servers_and_the_relay() -> None:
    sc = derive_all(load_valid(GOLDEN))
    relay = sc["sw1"]["arprelay"]
    assert relay["source"] == "netlink" and relay["url"] == "http://198.51.100.2:8790/v1/mapping"
    assert relay["providers"] == [
        {"name": "transit-a", "address": "198.51.100.129", "table": 1001},
        {"name": "transit-a", "address": "2001:db8:400:f0::1", "table": 1001},
        {"name": "transit-b", "address": "198.51.100.131", "table": 1002},
    ]
    host = sc["srv1"]["arprelay"]
    assert (host["interface"], host["local_v4"], host["local_v6"]) == ("ext0", "198.51.100.11", "2001:db8:400:1::11")
    assert host["links_v6"] == ["2001:db8:400:f0::1"]
    assert sc["srv1"]["bgp"]["full_table"]["neighbors"] == [
        {"name": "sw1", "address_v4": "198.51.100.2", "address_v6": "2001:db8:400:1::2", "multihop": False}
    ]
    assert sc["rtr1"].get("arprelay") is None and sc["rtr1"]["bgp"]["providers"] == []


def test_switch_bird_sessions_and_next_hops() -> None:
    sc = derive_all(load_valid(GOLDEN))
    conf = render_device(sc["sw1"])["bird.conf"]
    sessions = re.findall(r"^protocol bgp (\S+) \{$", conf, re.M)
    assert sessions == [
        "provider_transit_a_v4",
        "provider_transit_a_v6",
        "provider_transit_b_v4",
        "full_table_srv1_v4",
        "full_table_srv1_v6",
        "full_table_srv2_v4",
        "full_table_srv2_v6",
    ]
    assert conf.count("next hop keep;") == 4
    assert "route 203.0.113.128/27 via 198.51.100.1;" in conf  # inbound traffic goes on to the router
    srv = render_device(sc["srv1"])["bird.conf"]
    assert "export where source = RTS_BGP && dest = RTD_UNICAST;" in srv
    assert 'route 2001:db8:400:f0::1/128 via "ext0";' in srv
    assert srv.count("igp table provider_nexthops_") == 2


def test_agent_configs_render_and_load() -> None:
    from edgepop.agents.arprelay.config import HostConfig, RelayConfig, parse_config

    sc = derive_all(load_valid(GOLDEN))
    relay = yaml.safe_load(render_template("arprelay/arprelay.yml.j2", sc=sc["sw1"]))
    relay["token"] = "t"
    assert isinstance(parse_config(relay), RelayConfig)
    host = yaml.safe_load(render_template("arprelay/arprelay.yml.j2", sc=sc["srv2"]))
    assert host["token"] == "<vault:vault_arprelay_token>"  # swapped on the controller by edgepop_files
    cfg = parse_config({**host, "token": "t"})
    assert isinstance(cfg, HostConfig) and cfg.local_v4 == "198.51.100.12" and cfg.table_max == 1099


def edit(tmp_path: Path, rel: str, change: dict[str, object] | None = None, text: str | None = None) -> Path:
    inv = tmp_path / "inv"
    if not inv.exists():
        shutil.copytree(GOLDEN, inv)
    path = inv / rel
    if text is not None:
        path.write_text(text)
    elif change is not None:
        data = yaml.safe_load(path.read_text())
        for dotted, value in change.items():
            node = data
            *parents, last = dotted.split(".")
            for key in parents:
                node = node[int(key)] if isinstance(node, list) else node[key]
            node[last] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def errors(inv: Path) -> list[str]:
    report = validate_inventory(inv)
    return [str(e) for e in report.errors]


@pytest.mark.parametrize(
    ("rel", "change", "expected"),
    [
        ("group_vars/all/providers.yml", {"providers.1.table": 1001}, "table 1001 is already provider 'transit-a'"),
        ("group_vars/all/providers.yml", {"providers.1.table": 1500}, "table 1500 is outside pop.arprelay.table_min"),
        (
            "group_vars/all/providers.yml",
            {"providers.1.switch_port": "swp1"},
            "sw1:swp1 is already cabled to provider 'transit-b'",
        ),
        ("group_vars/all/providers.yml", {"providers.1.switch_port": "swp99"}, "switch 'sw1' has no port 'swp99'"),
        ("group_vars/all/providers.yml", {"providers.1.address_v4": "198.51.100.140"}, "is not on the switch's link"),
        ("group_vars/all/providers.yml", {"providers.1.table": None}, "needs switch_port and table"),
        ("group_vars/all/pop.yml", {"pop.arprelay.enabled": False}, "providers on a switch need pop.arprelay.enabled"),
        ("group_vars/all/pop.yml", {"pop.arprelay.switch": "sw9"}, "unknown switch 'sw9'"),
        ("group_vars/all/pop.yml", {"pop.arprelay.relay_host": "srv1"}, "'srv1' is neither the switch 'sw1' nor"),
        ("host_vars/sw1.yml", {"switch.lan_address_v4": None}, "the arprelay switch needs its address on the server"),
        ("host_vars/sw1.yml", {"switch.lan_address_v4": "198.51.100.11/26"}, "duplicate IP address 198.51.100.11"),
    ],
)
def test_errors_name_what_does_not_fit(tmp_path: Path, rel: str, change: dict[str, object], expected: str) -> None:
    found = errors(edit(tmp_path, rel, change))
    assert any(expected in e for e in found), found


def test_an_eos_switch_needs_a_control_server_to_poll_it(tmp_path: Path) -> None:
    inv = edit(tmp_path, "host_vars/sw1.yml", {"switch.platform": "eos"})
    assert any("is an EOS switch: name the control server" in e for e in errors(inv))
