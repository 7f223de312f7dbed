"""The lab as data: which containers and cables the lab inventory asks for, without running any."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from edgepop.derive import ROUTER_SYSCTL, SERVER_SYSCTL
from edgepop.lab.topology import LabError, _provider_slices, build_topology
from edgepop.lab.vault import resolve_secret
from edgepop.validate import load_valid

LAB = Path(__file__).resolve().parents[2] / "inventory" / "lab"


def test_every_device_cable_and_provider_of_the_inventory() -> None:
    topo = build_topology(load_valid(LAB))
    roles = {n.name: n.role for n in topo.nodes}
    assert roles == {
        "rtr1": "router", "sw1": "switch", "srv1": "server", "srv2": "server", "srv3": "server",
        "srv4": "server", "ctl1": "control", "transit-a": "provider", "transit-b": "provider", "client": "client",
    }  # fmt: skip
    cables = {(lk.a.node, lk.a.ifname, lk.b.node, lk.b.ifname) for lk in topo.links}
    assert ("srv3", "ext0", "sw1", "swp5") in cables and ("srv3", "int0", "sw1", "swp6") in cables
    assert ("sw1", "swp9", "rtr1", "eth1") in cables
    assert ("transit-a", "eth-pop", "rtr1", "eth2") in cables and (
        "client",
        "eth0",
        "transit-a",
        "eth-client",
    ) in cables
    assert len(topo.links) == 12
    macs = {(lk.a.node, lk.a.ifname): lk.a.mac for lk in topo.links}
    assert macs[("srv2", "ext0")] == "02:00:00:00:02:01"
    assert topo.node("srv1").mgmt_ip == "203.0.113.11" and topo.node("srv1").mgmt_mac == "02:00:00:00:01:00"
    assert set(topo.node("rtr1").sysctls) == {f"{k}={v}" for k, v in ROUTER_SYSCTL.items()}
    assert set(topo.node("srv4").sysctls) == {f"{k}={v}" for k, v in SERVER_SYSCTL.items()}
    assert topo.node("transit-a").mgmt_ip is None  # the lab's internet is not reachable from the host


def test_the_labs_internet_uses_documentation_ranges_only_and_has_a_few_hundred_prefixes() -> None:
    topo = build_topology(load_valid(LAB))
    allowed = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
    for prov in topo.providers:
        prefixes = [ipaddress.ip_network(p) for p in (*prov.prefixes_v4, *prov.prefixes_v6)]
        assert 200 <= len(prefixes) <= 400
        assert all(any(p.subnet_of(a) for a in allowed if a.version == p.version) for p in prefixes)  # type: ignore[arg-type]
    a, b = topo.providers
    assert not set(a.prefixes_v4) & set(b.prefixes_v4)  # own slices, and a shared multihomed block in v6
    assert set(a.prefixes_v6) & set(b.prefixes_v6)
    client = topo.client
    assert client is not None and client.provider == "transit-a"
    assert ipaddress.ip_interface(client.address_v4).network.subnet_of(ipaddress.ip_network(a.prefixes_v4[0]))  # type: ignore[arg-type]
    assert a.address_v4 == "203.0.113.81/31" and a.router_v4 == "203.0.113.80"


def test_more_providers_than_the_lab_has_room_for() -> None:
    with pytest.raises(LabError, match="room for 2 providers"):
        _provider_slices(2)


def test_provider_password_is_decrypted_from_the_lab_vault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = load_valid(LAB)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # ansible-vault is found beside this Python, not on PATH
    assert resolve_secret(model, model.providers[0].password or "") == "lab-transit-a"
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-lab-password\n")
    monkeypatch.setenv("EDGEPOP_VAULT_PASSWORD_FILE", str(wrong))
    with pytest.raises(LabError, match="cannot decrypt"):
        resolve_secret(model, model.providers[1].password or "")
