"""provider_nexthop: the planning (pure) and, in a namespace of the test's own, the module against
the kernel through pyroute2. The code is plugins/module_utils/edgepop_nexthop.py (edgepop.nexthop)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from edgepop import nexthop
from edgepop.nexthop import Change, NexthopError, Settings, State, desired_state, inverse, parse_nexthops, plan

ROOT = Path(__file__).resolve().parents[2]
S = Settings()
A4 = {"provider": "transit-a", "address": "203.0.113.81", "mac": "02:00:5E:00:53:01", "interface": "ext0",
      "local": "198.51.100.11", "table": 1001}  # fmt: skip
A6 = {**A4, "address": "2001:db8:0:f0::1", "local": "2001:db8:0:1::11", "mac": "02:00:5e:00:53:01"}
B4 = {**A4, "provider": "transit-b", "address": "203.0.113.83", "mac": "02:00:5e:00:53:02", "table": 1002}


# --- planning ------------------------------------------------------------------------------------


def test_parse_normalises_and_sorts() -> None:
    got = parse_nexthops([B4, A6, A4], S)
    assert [(n.provider, n.address, n.mac) for n in got] == [
        ("transit-a", "2001:db8:0:f0::1", "02:00:5e:00:53:01"),
        ("transit-a", "203.0.113.81", "02:00:5e:00:53:01"),
        ("transit-b", "203.0.113.83", "02:00:5e:00:53:02"),
    ]


def test_parse_reports_every_error_at_once() -> None:
    bad = [
        A4,
        {**B4, "mac": "01:00:5e:00:00:01"},  # multicast
        {**B4, "table": 5000},
        {**A4, "address": "203.0.113.82", "local": "2001:db8::1"},
        {**B4, "address": "203.0.113.90", "table": 1001},  # a's table
        {"provider": "x"},
    ]
    with pytest.raises(NexthopError) as exc:
        parse_nexthops(bad, S)
    msg = str(exc.value)
    for part in (
        "nexthops[1].mac: '01:00:5e:00:00:01' is not a unicast MAC address",
        "nexthops[2].table: 5000 is outside the owned range 1000-1999",
        "nexthops[3]: address 203.0.113.82 and local 2001:db8::1 are of different families",
        "nexthops[4].table: table 1001 is already provider transit-a's",
        "nexthops[5]: missing address, mac, interface, local, table",
    ):
        assert part in msg


def test_settings_refuse_the_kernels_tables_and_protocols() -> None:
    with pytest.raises(NexthopError, match="main/local"):
        Settings(table_min=200, table_max=300).check()
    with pytest.raises(NexthopError, match="proto 2"):
        Settings(proto=2).check()


def test_plan_from_nothing_adds_in_dependency_order() -> None:
    want = desired_state(parse_nexthops([A4, A6], S), S)
    cmds = [c.command(S.proto) for c in plan(State(), want)]
    assert cmds == [
        "ip -6 route replace 2001:db8:0:f0::1/128 dev ext0 proto 200",
        "ip addr add 198.51.100.11 peer 203.0.113.81 dev ext0 proto 200",
        "ip neigh replace 2001:db8:0:f0::1 lladdr 02:00:5e:00:53:01 nud permanent dev ext0 proto 200",
        "ip neigh replace 203.0.113.81 lladdr 02:00:5e:00:53:01 nud permanent dev ext0 proto 200",
        "ip -4 route replace 0.0.0.0/0 via 203.0.113.81 dev ext0 table 1001 proto 200",
        "ip -6 route replace ::/0 via 2001:db8:0:f0::1 dev ext0 table 1001 proto 200",
        "ip -4 rule add fwmark 1001 lookup 1001 pref 1000 proto 200",
        "ip -6 rule add fwmark 1001 lookup 1001 pref 1000 proto 200",
    ]
    assert plan(want, want) == []


def test_a_new_mac_is_one_neighbour_replace() -> None:
    have = desired_state(parse_nexthops([A4, B4], S), S)
    want = desired_state(parse_nexthops([{**A4, "mac": "02:00:5e:00:53:99"}, B4], S), S)
    assert [c.command(S.proto) for c in plan(have, want)] == [
        "ip neigh replace 203.0.113.81 lladdr 02:00:5e:00:53:99 nud permanent dev ext0 proto 200"
    ]


def test_a_stale_provider_is_removed_rules_first_address_last() -> None:
    have = desired_state(parse_nexthops([A4, B4], S), S)
    want = desired_state(parse_nexthops([A4], S), S)
    assert [c.command(S.proto) for c in plan(have, want)] == [
        "ip -4 rule del fwmark 1002 lookup 1002 pref 1000 proto 200",
        "ip -4 route del 0.0.0.0/0 table 1002 proto 200",
        "ip neigh del 203.0.113.83 dev ext0",
        "ip addr del 198.51.100.11 peer 203.0.113.83 dev ext0 proto 200",
    ]


def test_inverse_undoes_each_kind_of_change() -> None:
    assert inverse(Change("add", "address", ("ext0", "a", "b"))) == Change("delete", "address", ("ext0", "a", "b"))
    assert inverse(Change("replace", "neighbour", ("ext0", "x"), "m2", "m1")) == Change(
        "replace", "neighbour", ("ext0", "x"), "m1", "m2"
    )
    assert inverse(Change("delete", "rule", (1001, 2), old=1000)) == Change("add", "rule", (1001, 2), 1000)


# --- the module against a kernel -------------------------------------------------------------------

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 for a network namespace"
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"eparp-nh{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip = ["ip", "-n", name]
        subprocess.run([*ip, "link", "add", "ext0", "type", "veth", "peer", "name", "sw0"], check=True)
        for dev in ("ext0", "sw0"):
            subprocess.run([*ip, "link", "set", dev, "up"], check=True)
        subprocess.run([*ip, "addr", "add", "198.51.100.11/27", "dev", "ext0"], check=True)
        subprocess.run([*ip, "addr", "add", "2001:db8:0:1::11/64", "dev", "ext0", "nodad"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_module(args: dict[str, Any], *, check: bool = False, diff: bool = False) -> dict[str, Any]:
    sys.modules["ansible.module_utils.edgepop_nexthop"] = nexthop
    spec = importlib.util.spec_from_file_location(
        "provider_nexthop_under_test", ROOT / "plugins/modules/provider_nexthop.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with (
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": diff}),
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        module.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def ip(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "-n", ns, *argv], capture_output=True, text=True, check=True).stdout


@pytest.mark.lab
@needs_netns
def test_module_converges_idempotently_with_check_and_diff(netns: str) -> None:
    args = {"nexthops": [A4, A6, B4], "netns": netns}
    checked = run_module(args, check=True, diff=True)
    assert checked["changed"] and len(checked["commands"]) == 12
    assert "203.0.113.81" not in ip(netns, "neigh"), "check mode changed the kernel"
    assert "neighbour 203.0.113.81 lladdr 02:00:5e:00:53:01 dev ext0\n" in checked["diff"]["after"]
    assert checked["diff"]["before"] == ""

    first = run_module(args)
    assert first["changed"] and first["commands"] == checked["commands"]
    assert "203.0.113.81 dev ext0 lladdr 02:00:5e:00:53:01 PERMANENT proto 200" in ip(netns, "-d", "neigh")
    assert "198.51.100.11 peer 203.0.113.81/32" in ip(netns, "addr", "show", "ext0")
    assert "default via 203.0.113.83 dev ext0 proto 200" in ip(netns, "route", "show", "table", "1002")
    assert "fwmark 0x3e9 lookup 1001 proto 200" in ip(netns, "rule")
    assert "via 203.0.113.81 dev ext0 table 1001" in ip(netns, "route", "get", "203.0.113.200", "mark", "1001")
    again = run_module(args)
    assert again["changed"] is False and again["commands"] == []


@pytest.mark.lab
@needs_netns
def test_module_removes_only_what_it_owns(netns: str) -> None:
    run_module({"nexthops": [A4, B4], "netns": netns})
    # an operator's route in one of the owned tables, and a neighbour the kernel learned
    ip(netns, "route", "add", "198.51.100.128/25", "dev", "ext0", "table", "1002")
    ip(netns, "neigh", "add", "198.51.100.20", "lladdr", "02:00:5e:00:53:77", "dev", "ext0", "nud", "reachable")
    out = run_module({"nexthops": [A4], "netns": netns})
    assert out["changed"]
    assert "203.0.113.83" not in ip(netns, "neigh") and "203.0.113.83" not in ip(netns, "addr")
    assert ip(netns, "route", "show", "table", "1002").strip() == "198.51.100.128/25 dev ext0 scope link"
    assert "198.51.100.20" in ip(netns, "neigh")
    assert "lookup 1002" not in ip(netns, "rule")
    assert run_module({"nexthops": [A4], "netns": netns})["changed"] is False
    emptied = run_module({"nexthops": [], "netns": netns})
    assert emptied["changed"] and "proto 200" not in ip(netns, "-d", "neigh")


@pytest.mark.lab
@needs_netns
def test_module_fails_before_any_change_on_an_unknown_interface(netns: str) -> None:
    out = run_module({"nexthops": [A4, {**B4, "interface": "bond9"}], "netns": netns})
    assert out["failed"] and "interface bond9 does not exist" in out["msg"]
    assert "203.0.113.81" not in ip(netns, "neigh")
