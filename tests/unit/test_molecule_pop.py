"""The Molecule PoP scenario as data: its boxes and cables are the lab's, its network is its own.

`molecule test -s pop` itself runs under `make molecule`; these checks are the part that needs no
podman: the plan create.yml carries out, and the scenario settings that must agree with the lab.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from edgepop.image.container import RUN_FLAGS
from edgepop.lab.topology import build_topology
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"
SCENARIO = ROOT / "molecule" / "pop"
SHARED = ROOT / "molecule" / "shared"


def _plan_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("podman_plan", SHARED / "podman_plan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shared_vars() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SHARED / "vars" / "main.yml").read_text())
    return data


def _platforms() -> list[str]:
    data = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return [p["name"] for p in data["platforms"]]


def _spec(platforms: list[str]) -> dict[str, Any]:
    shared = _shared_vars()
    return {
        "inventory": str(LAB),
        "platforms": platforms,
        "tag": "localhost/edgepop-base:0123456789ab",
        "network": shared["edgepop_molecule__network"],
        "subnet": shared["edgepop_molecule__subnet"],
        "gateway": shared["edgepop_molecule__gateway"],
        "key": "/tmp/molecule/id_ed25519",
        "label": shared["edgepop_molecule__label"],
        "prefix": shared["edgepop_molecule__container_prefix"],
    }


def test_management_network_is_apart_from_the_lab_and_documentation_only() -> None:
    shared = _shared_vars()
    subnet = ipaddress.ip_network(shared["edgepop_molecule__subnet"])
    lab_mgmt = ipaddress.ip_network(load_valid(LAB).pop.ranges.management_v4)
    assert not subnet.overlaps(lab_mgmt)
    assert subnet.subnet_of(ipaddress.ip_network("198.51.100.0/24")) or subnet.subnet_of(
        ipaddress.ip_network("203.0.113.0/24")
    )
    assert ipaddress.ip_address(shared["edgepop_molecule__gateway"]) in subnet


def test_scenario_platforms_are_lab_devices_and_cover_the_roles() -> None:
    topo = build_topology(load_valid(LAB))
    roles = {n.name: n.role for n in topo.nodes}
    platforms = _platforms()
    assert {roles[name] for name in platforms} == {"router", "switch", "server"}
    converge = (SCENARIO / "converge.yml").read_text()
    for role in ("base", "networkd", "anycast_services", "bird"):
        assert f"role: {role}\n" in converge or f"name: {role}\n" in converge


def test_plan_uses_the_lab_flags_and_cables_only_between_platforms() -> None:
    plan = _plan_module().plan(_spec(_platforms()))
    boxes = {b["name"]: b for b in plan["boxes"]}
    assert list(boxes) == _platforms()
    rtr = boxes["rtr1"]["argv"]
    assert rtr[:2] == ["podman", "run"] and rtr[-2:] == ["localhost/edgepop-base:0123456789ab", "/sbin/init"]
    assert " ".join(RUN_FLAGS) in " ".join(rtr)
    assert rtr[rtr.index("--hostname") + 1] == "rtr1"
    assert "net.ipv4.ip_forward=1" in rtr and "net.ipv4.ip_forward=1" not in boxes["sw1"]["argv"]
    assert "edgepop.molecule=1" in rtr and "/tmp/molecule/id_ed25519.pub:/root/.ssh/authorized_keys:ro" in rtr

    addresses = [b["instance"]["address"] for b in plan["boxes"]]
    assert len(set(addresses)) == len(addresses) and "198.51.100.225" not in addresses
    assert boxes["srv1"]["instance"] == {
        "instance": "srv1",
        "address": addresses[_platforms().index("srv1")],
        "user": "root",
        "port": 22,
        "identity_file": "/tmp/molecule/id_ed25519",
    }

    cables = {(lk["a"]["node"], lk["a"]["ifname"], lk["b"]["node"], lk["b"]["ifname"]) for lk in plan["links"]}
    assert cables == {
        ("srv1", "ext0", "sw1", "swp1"),
        ("srv1", "int0", "sw1", "swp2"),
        ("srv2", "ext0", "sw1", "swp3"),
        ("srv2", "int0", "sw1", "swp4"),
        ("sw1", "swp9", "rtr1", "eth1"),
    }
    ext0 = next(lk["a"] for lk in plan["links"] if lk["a"]["node"] == "srv2" and lk["a"]["ifname"] == "ext0")
    assert ext0 == {"node": "srv2", "container": "edgepop-molecule-srv2", "ifname": "ext0", "mac": "02:00:00:00:02:01"}
    assert len(plan["ends"]) == 2 * len(plan["links"])


def test_plan_refuses_platforms_the_lab_does_not_have() -> None:
    with pytest.raises(SystemExit, match="srv9"):
        _plan_module().plan(_spec(["rtr1", "srv9"]))
