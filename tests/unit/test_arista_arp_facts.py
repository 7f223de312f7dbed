"""The providers' MACs from an Arista switch: the arista_arp_facts module through NAPALM's real
`eos` driver and pyeapi, and the relay's own eAPI poller, both against the eAPI simulator with a
table the test feeds (tests/lab/test_arprelay_lab.py feeds it from a lab switch's real table)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from sims.eos_eapi import EapiServer
from sims.eos_model import EosDevice, neighbours_from_linux

from edgepop import arp_table
from edgepop.agents.arprelay.config import Eapi, RelayConfig
from edgepop.agents.arprelay.daemon import RelayDaemon
from edgepop.agents.arprelay.sources import EapiSource, SourceError
from edgepop.arp_table import normalise_mac, provider_nexthops, split_interface

ROOT = Path(__file__).resolve().parents[2]
RUNNING = "hostname sw1\nmanagement api http-commands\n   protocol https\n   no shutdown\n!\n"
TABLE = [
    {"address": "203.0.113.81", "mac": "02:00:5e:00:53:01", "interface": "Vlan100, Ethernet49/1"},
    {"address": "203.0.113.83", "mac": "0200.5e00.5302", "interface": "Ethernet50/1"},
    {"address": "198.51.100.11", "mac": "02:00:00:00:01:01", "interface": "Vlan100, Ethernet1"},
    {"address": "2001:db8:0:f0::1", "mac": "02:00:5e:00:53:01", "interface": "Vlan100, Ethernet49/1"},
]
PROVIDERS = [
    {"name": "transit-a", "address": "203.0.113.81", "table": 1001},
    {"name": "transit-b", "address": "203.0.113.83", "table": 1002},
    {"name": "transit-c", "address": "203.0.113.85", "table": 1003},
]


@pytest.fixture
def switch() -> Iterator[tuple[EosDevice, EapiServer]]:
    dev = EosDevice(RUNNING)
    dev.set_neighbours(TABLE)
    srv = EapiServer(dev).start()
    try:
        yield dev, srv
    finally:
        srv.stop()


def run_module(args: dict[str, Any]) -> dict[str, Any]:
    sys.modules["ansible.module_utils.edgepop_arp"] = arp_table
    spec = importlib.util.spec_from_file_location(
        "arista_arp_facts_under_test", ROOT / "plugins/modules/arista_arp_facts.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def test_module_reads_the_providers_through_napalm(switch: tuple[EosDevice, EapiServer]) -> None:
    dev, srv = switch
    out = run_module({"hostname": "127.0.0.1", "port": srv.port, "username": "admin", "password": "admin",
                      "providers": PROVIDERS})  # fmt: skip
    assert out["changed"] is False and out["entries"] == 3  # IPv4 only: get_arp_table
    assert out["nexthops"] == [
        {"provider": "transit-a", "address": "203.0.113.81", "mac": "02:00:5e:00:53:01", "interface": "Vlan100",
         "port": "Ethernet49/1", "table": 1001},
        {"provider": "transit-b", "address": "203.0.113.83", "mac": "02:00:5e:00:53:02", "interface": "Ethernet50/1",
         "port": "Ethernet50/1", "table": 1002},
    ]  # fmt: skip
    assert out["missing"] == ["203.0.113.85"]
    assert dev.commands_matching(r"^show arp vrf all$")
    strict = run_module({"hostname": "127.0.0.1", "port": srv.port, "username": "admin", "password": "admin",
                         "providers": PROVIDERS, "require_all": True})  # fmt: skip
    assert strict["failed"] and strict["msg"] == "not in the ARP table of 127.0.0.1: 203.0.113.85"


def test_module_says_which_switch_refused(switch: tuple[EosDevice, EapiServer]) -> None:
    _, srv = switch
    out = run_module({"hostname": "127.0.0.1", "port": srv.port, "username": "admin", "password": "wrong",
                      "providers": PROVIDERS[:1]})  # fmt: skip
    assert (out["failed"] and out["msg"].startswith("127.0.0.1:")) or out["msg"].startswith("cannot open 127.0.0.1")


def test_relay_polls_eapi_and_follows_a_mac_change(switch: tuple[EosDevice, EapiServer]) -> None:
    dev, srv = switch
    eapi = Eapi(url=f"https://127.0.0.1:{srv.port}/command-api", username="admin", password="admin", verify_tls=False)
    v6 = {"name": "transit-a", "address": "2001:db8:0:f0::1", "table": 1001}
    config = RelayConfig(
        role="relay",
        listen="127.0.0.1",
        port=0,
        source="eapi",
        eapi=eapi,
        remove_after_s=0,
        providers=[*PROVIDERS[:2], v6],
    )
    source = EapiSource(eapi, interval=0.05)
    relay = RelayDaemon(config, source=source)
    try:
        relay.step(source)
        first = relay.state.mapping
        assert first.complete and first.version == 1
        assert {n["address"]: n["mac"] for n in first.to_json()["nexthops"]} == {
            "203.0.113.81": "02:00:5e:00:53:01",
            "203.0.113.83": "02:00:5e:00:53:02",
            "2001:db8:0:f0::1": "02:00:5e:00:53:01",  # from `show ipv6 neighbors`
        }
        dev.set_neighbours([{**TABLE[0], "mac": "02:00:5e:00:53:aa"}, *TABLE[2:]])
        relay.step(source)
        m = relay.state.mapping
        assert m.version == 2
        assert {n["address"]: n["mac"] for n in m.to_json()["nexthops"]} == {
            "203.0.113.81": "02:00:5e:00:53:aa",
            "2001:db8:0:f0::1": "02:00:5e:00:53:01",
        }
        srv.stop()  # the switch's API goes away: the mapping is served incomplete, content kept
        relay.step(source)
        assert not relay.state.mapping.complete and len(relay.state.mapping.nexthops) == 2
    finally:
        relay.server.httpd.server_close()


def test_eapi_errors_are_reported_plainly() -> None:
    source = EapiSource(Eapi(url="https://127.0.0.1:9/command-api", username="a", password="b", timeout_s=0.5), 0.1)
    with pytest.raises(SourceError, match=r"eAPI https://127.0.0.1:9/command-api: .*refused"):
        source.read()


def test_mac_and_interface_normalisation() -> None:
    assert normalise_mac("0200.5E00.5301") == "02:00:5e:00:53:01"
    assert normalise_mac("02-00-5e-00-53-01") == "02:00:5e:00:53:01"
    assert normalise_mac("00:00:00:00:00:00") is None
    assert normalise_mac("01:00:5e:00:00:01") is None  # multicast
    assert normalise_mac("") is None and normalise_mac("0200.5e00.53") is None
    assert split_interface("Vlan100, Ethernet1") == ("Vlan100", "Ethernet1")
    assert split_interface("Ethernet49/1") == ("Ethernet49/1", "Ethernet49/1")


def test_linux_table_feeds_the_simulator_with_resolved_entries_only() -> None:
    rows = [
        {"dst": "203.0.113.81", "dev": "br0", "lladdr": "02:00:5e:00:53:01", "state": ["REACHABLE"]},
        {"dst": "203.0.113.83", "dev": "br0", "state": ["FAILED"]},
        {"dst": "203.0.113.85", "dev": "br0", "lladdr": "02:00:5e:00:53:05", "state": ["INCOMPLETE"]},
    ]
    entries = neighbours_from_linux(rows, "Vlan100, Ethernet1")
    assert entries == [{"address": "203.0.113.81", "mac": "02:00:5e:00:53:01", "interface": "Vlan100, Ethernet1"}]
    found, missing = provider_nexthops(
        [{"ip": e["address"], "mac": e["mac"], "interface": e["interface"]} for e in entries], PROVIDERS
    )
    assert [n["provider"] for n in found] == ["transit-a"] and missing == ["203.0.113.83", "203.0.113.85"]
