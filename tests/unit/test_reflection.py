"""Provider routes toward the servers (pop.bgp.reflect_to_servers, the ARP-relay design): on the
routers only when asked for, over iBGP from the loopback with the next hop left alone, and limited
to what this router's providers sent."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from edgepop.derive import StructuredConfig, derive_all
from edgepop.render import render_device
from edgepop.validate import load_valid

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "inventories"


@cache
def configs(path: Path) -> dict[str, StructuredConfig]:
    return derive_all(load_valid(path))


def _block(conf: str, header: str, indent: str) -> str:
    """The text of one curly-brace block, from its header line to its closing brace."""
    start = conf.index(f"{indent}{header} {{\n")
    return conf[start : conf.index(f"\n{indent}}}\n", start) + len(indent) + 3]


def test_off_by_default_and_nothing_rendered() -> None:
    for path in (REPO / "inventory" / "lab", REPO / "inventory" / "examples" / "fra1"):
        model = load_valid(path)
        assert model.pop.bgp.reflect_to_servers is False
        for host in model.routers:
            sc = configs(path)[host]
            assert sc["bgp"]["reflection"] is None
            text = "\n".join(render_device(sc).values())
            assert "full-table" not in text and "full_table" not in text
            assert "provider-routes-to-servers" not in text and "provider_routes_to_servers" not in text
            assert "type internal;" not in text and "next hop keep" not in text


def test_derived_per_router_from_its_own_providers() -> None:
    rr = configs(GOLDEN / "junos-router")["rtr1"]["bgp"]["reflection"]
    assert rr == {
        "asn": 64500,
        "local_v4": "203.0.113.1",
        "local_v6": "2001:db8:100:ff::1",
        "password": "<vault:vault_bgp_servers>",
        "providers_v4": ["198.51.100.193", "198.51.100.195"],
        "providers_v6": ["2001:db8:ffff:a::1"],
        "neighbors": [
            {"name": "srv1", "address_v4": "198.51.100.11", "address_v6": "2001:db8:100:1::11"},
            {"name": "srv2", "address_v4": "198.51.100.12", "address_v6": "2001:db8:100:1::12"},
        ],
    }
    other = configs(GOLDEN / "junos-router")["rtr2"]["bgp"]["reflection"]
    assert (other["providers_v4"], other["providers_v6"]) == (["198.51.100.197"], ["2001:db8:ffff:c::1"])


def test_junos_ibgp_group_keeps_the_next_hop() -> None:
    conf = render_device(configs(GOLDEN / "junos-router")["rtr1"])["junos.conf"]
    group = _block(conf, "group servers-full-table", " " * 8)
    assert "type internal;" in group  # our own AS: the next hop of an eBGP-learned route is kept
    assert "import reject-all;" in group and "export provider-routes-to-servers;" in group
    assert "next-hop self" not in conf and "no-nexthop-change" not in conf and "multihop" not in group
    neighbors = re.findall(r"neighbor (\S+) \{\n.*?local-address (\S+);\n.*?family (\S+) \{", group, re.S)
    assert neighbors == [
        ("198.51.100.11", "203.0.113.1", "inet"),
        ("2001:db8:100:1::11", "2001:db8:100:ff::1", "inet6"),
        ("198.51.100.12", "203.0.113.1", "inet"),
        ("2001:db8:100:1::12", "2001:db8:100:ff::1", "inet6"),
    ]
    assert 'authentication-key "<vault:vault_bgp_servers>";' in group
    # the anycast sessions are untouched: eBGP from the LAN address, nothing exported
    servers = _block(conf, "group servers", " " * 8)
    assert "type external;" in servers and "export reject-all;" in servers
    policy = _block(conf, "policy-statement provider-routes-to-servers", " " * 4)
    assert "protocol bgp;" in policy
    assert "neighbor [ 198.51.100.193 198.51.100.195 2001:db8:ffff:a::1 ];" in policy
    assert policy.rstrip().endswith("then reject;\n    }") and policy.count("then accept;") == 1
    assert "next-hop" not in policy


def _bird() -> str | None:
    return shutil.which("bird", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def test_bird_router_sessions_keep_the_next_hop(tmp_path: Path) -> None:
    conf = render_device(configs(GOLDEN / "bird-edge")["rtr1"])["bird.conf"]
    sessions = re.findall(r"^protocol bgp (full_table_\S+) \{\n(.*?)^\}", conf, re.M | re.S)
    assert [name for name, _ in sessions] == [
        "full_table_srv1_v4",
        "full_table_srv1_v6",
        "full_table_srv2_v4",
        "full_table_srv10_v4",
        "full_table_srv10_v6",
    ]
    for name, body in sessions:
        fam = name[-2:]
        local = "203.0.113.1" if fam == "v4" else "2001:db8:300:ff::1"
        assert f"local {local} as 64510;" in body and re.search(r"neighbor \S+ as 64510;", body), body
        assert "import none;" in body and "export filter provider_routes_to_servers;" in body
        assert "next hop keep;" in body and "next hop self" not in body
    assert 'if source = RTS_BGP && proto ~ "provider_*" then accept;' in conf
    bird = _bird()
    if bird is None:
        pytest.skip("the bird binary (Debian package bird2) is not installed")
    path = tmp_path / "bird.conf"
    path.write_text(conf.replace("<vault:", "secret-").replace(">", ""))
    proc = subprocess.run([bird, "-p", "-c", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_junos_config_loads_into_the_netconf_simulator() -> None:
    """The simulator's parser (tests/sims/junos_model.py) reads the group and the bracketed list."""
    from sims.junos_model import JunosDevice, find

    conf = render_device(configs(GOLDEN / "junos-router")["rtr1"])["junos.conf"]
    dev = JunosDevice("system {\n    host-name rtr1;\n}\n")
    assert dev.load(conf, "merge") == []
    dev.commit()
    group = find(dev.running, "protocols", "bgp", "group servers-full-table")
    assert group is not None and group.children is not None
    assert "neighbor 198.51.100.11" in group.children and "neighbor 2001:db8:100:1::12" in group.children
    term = find(dev.running, "policy-options", "policy-statement provider-routes-to-servers", "term providers", "from")
    assert term is not None and term.children is not None
    assert term.children["neighbor"].words == "neighbor [ 198.51.100.193 198.51.100.195 2001:db8:ffff:a::1 ]"
