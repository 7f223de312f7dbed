"""The ARP-relay design for real (edgepop.lab.arprelay): two providers with MACs of their own
announcing "internet" prefixes over eBGP to BIRD on a Linux-bridge switch, which reflects them to
two servers over iBGP; the relay on the switch follows its neighbour table and every server's
host agent programs the providers' next hops. The configs are the rendered ones of the golden
inventory arprelay-switch.

The tests share one lab (module fixture, ~10 s to come up) and run in file order: each one leaves
the lab as the next expects it (a provider's MAC changed, then provider B removed, then the relay
stopped). Frames are counted on the providers' ports by destination MAC (nftables, ingress).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("bird", "birdc", "ip", "nft", "ss")):
    pytest.skip("needs root, bird2, iproute2 and nft", allow_module_level=True)

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from sims.eos_eapi import EapiServer  # noqa: E402
from sims.eos_model import EosDevice, neighbours_from_linux  # noqa: E402

from edgepop import arp_table  # noqa: E402
from edgepop.agents.arprelay.config import Eapi  # noqa: E402
from edgepop.agents.arprelay.core import RelayState  # noqa: E402
from edgepop.agents.arprelay.sources import EapiSource  # noqa: E402
from edgepop.lab.arprelay import ArpRelayLab  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "golden" / "inventories" / "arprelay-switch"
A, B = "transit-a", "transit-b"
A_V4, B_V4, A_V6 = "198.51.100.129", "198.51.100.131", "2001:db8:400:f0::1"
MAC_A, MAC_B, MAC_A2 = "02:00:5e:00:53:0a", "02:00:5e:00:53:0b", "02:00:5e:00:53:1a"
DEST_A, DEST_B, SHARED = "203.0.113.193", "203.0.113.209", "203.0.113.225"  # behind A, behind B, behind both
INTERNET = {
    A: {
        "prefixes": ["203.0.113.192/28", "203.0.113.224/28", "2001:db8:500::/48"],
        "gateway": "203.0.113.206/28",
        "destination": f"{DEST_A}/28",
    },
    B: {
        "prefixes": ["203.0.113.208/28", "203.0.113.224/28"],
        "gateway": "203.0.113.222/28",
        "destination": f"{DEST_B}/28",
    },
}
SERVERS = ["srv1", "srv2"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArpRelayLab]:
    t0 = time.monotonic()
    lab = ArpRelayLab(
        INVENTORY, tmp_path_factory.mktemp("arprelay"), internet=INTERNET, macs={A: MAC_A, B: MAC_B}, log=print
    )
    try:
        with lab:
            for prov in (A, B):  # the same address on both: one destination reachable through either
                lab.nodes[prov].run("ip", "addr", "add", f"{SHARED}/32", "dev", "lo")
            lab.count_frames(A, [MAC_A, MAC_A2])
            lab.count_frames(B, [MAC_B])
            lab.wait("both servers on both providers", lambda: all_on(lab, {A_V4: MAC_A, B_V4: MAC_B}), 30)
            lab.wait("the providers' routes on both servers", lambda: all_routed(lab, DEST_A, A_V4), 30)
            lab.wait("provider B's routes", lambda: all_routed(lab, DEST_B, B_V4), 15)
            print(f"lab ready in {time.monotonic() - t0:.1f} s")
            yield lab
    finally:
        leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert lab.tag not in leftovers, leftovers


def all_on(lab: ArpRelayLab, want: dict[str, str]) -> bool:
    return all(lab.permanent_mac(srv, addr) == mac for srv in SERVERS for addr, mac in want.items())


def all_routed(lab: ArpRelayLab, destination: str, gateway: str) -> bool:
    return all(lab.route(srv, destination).get("gateway") == gateway for srv in SERVERS)


def v6_route(lab: ArpRelayLab, srv: str) -> str:
    return lab.nodes[srv].run("ip", "-6", "route", "show", "2001:db8:500::/48")


def log_of(lab: ArpRelayLab, name: str) -> str:
    return (lab.nodes[name].workdir / "arprelay.log").read_text()


def test_servers_send_straight_to_each_providers_mac(lab: ArpRelayLab) -> None:
    for srv in SERVERS:
        assert lab.route(srv, DEST_A)["dev"] == "ext0"
        # both announce the shared prefix: B's lower local preference leaves it to A
        assert lab.route(srv, SHARED)["gateway"] == A_V4
        # IPv6: BGP carries the provider's link-local next hop beside the global one, and BIRD uses it
        lab.wait("A's IPv6 routes", lambda s=srv: "dev ext0 proto bird" in v6_route(lab, s), 10)  # type: ignore[misc]
        assert lab.permanent_mac(srv, A_V6) == MAC_A
        # the per-provider tables of the host agent
        assert f"default via {B_V4} dev ext0" in lab.nodes[srv].run("ip", "route", "show", "table", "1002")
    before_a, before_b = lab.frames(A), lab.frames(B)
    for srv in SERVERS:
        lab.send(srv, DEST_A, 5)
        lab.send(srv, DEST_B, 3)
    lab.wait("frames counted", lambda: lab.frames(A)[MAC_A] - before_a[MAC_A] == 10, 3)
    after_a, after_b = lab.frames(A), lab.frames(B)
    assert after_a["other"] == before_a["other"], "frames to provider A with another destination MAC"
    assert after_b[MAC_B] - before_b[MAC_B] == 6
    assert after_b["other"] == before_b["other"]

    state = lab.nodes["srv1"].workdir / "arprelay.json"
    out = lab.nodes["srv1"].run(
        sys.executable, "-m", "edgepop.cli", "st-ping", SHARED, "--state", str(state), "-c", "2", "-i", "0.05"
    )
    print(out)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {A, B}
    assert rows[A][1:4] == ["1001", A_V4, MAC_A] and rows[A][4:6] == ["2", "2"]
    assert rows[B][1:4] == ["1002", B_V4, MAC_B] and rows[B][4:6] == ["2", "2"]
    # a destination only A reaches: B's table has a default route, but B has no route there
    out = lab.nodes["srv1"].run(
        sys.executable, "-m", "edgepop.cli", "st-ping", DEST_A, "--state", str(state), "-c", "1", "-W", "0.3"
    )
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows[A][5] == "1" and rows[B][5] == "0", out


def test_eapi_path_reads_the_lab_switchs_table(lab: ArpRelayLab) -> None:
    """The switch's real neighbour table, served by the EOS simulator, read through NAPALM's eos
    driver (the arista_arp_facts module) and through the relay's own eAPI poller."""
    ports = {p["peer_v4"]: p["port"] for p in lab.configs[lab.switch_name]["bgp"]["providers"]}
    rows = [r for r in lab.neighbours("sw") if ":" not in r["dst"]]
    entries = []
    for r in rows:
        entries += neighbours_from_linux([r], f"Vlan100, {ports.get(r['dst'], 'Ethernet1')}")
    assert {e["address"] for e in entries} >= {A_V4, B_V4}, rows
    dev = EosDevice("hostname sw1\nmanagement api http-commands\n   no shutdown\n!\n")
    dev.set_neighbours(entries)
    sim = EapiServer(dev).start()
    try:
        providers = [{"name": A, "address": A_V4, "table": 1001}, {"name": B, "address": B_V4, "table": 1002}]
        result = run_arista_arp_facts(
            {
                "hostname": "127.0.0.1",
                "username": "admin",
                "password": "admin",
                "port": sim.port,
                "providers": providers,
            }
        )
        assert not result.get("failed"), result
        assert result["missing"] == []
        assert [
            (n["provider"], n["address"], n["mac"], n["interface"], n["port"], n["table"]) for n in result["nexthops"]
        ] == [
            (A, A_V4, lab.macs[A], "Vlan100", "swp30", 1001),
            (B, B_V4, MAC_B, "Vlan100", "swp31", 1002),
        ]
        assert dev.commands_matching(r"^show arp vrf all$"), "NAPALM's get_arp_table did not ask the switch"

        source = EapiSource(
            Eapi(url=f"https://127.0.0.1:{sim.port}/command-api", username="admin", password="admin", verify_tls=False),
            interval=0.05,
        )
        state = RelayState()
        found, missing = arp_table.provider_nexthops(source.read(), providers)
        assert state.observe(found) and missing == []
        served = {n["address"]: n["mac"] for n in state.mapping.to_json()["nexthops"]}
        # what the relay on the switch serves (from netlink) is what eAPI says
        assert served == {A_V4: lab.permanent_mac("srv1", A_V4), B_V4: lab.permanent_mac("srv1", B_V4)}
    finally:
        sim.stop()


def run_arista_arp_facts(args: dict[str, Any]) -> dict[str, Any]:
    sys.modules["ansible.module_utils.edgepop_arp"] = arp_table
    spec = importlib.util.spec_from_file_location("arista_arp_facts_lab", ROOT / "plugins/modules/arista_arp_facts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def test_a_providers_new_mac_reaches_every_server_within_a_second(lab: ArpRelayLab) -> None:
    t0 = time.monotonic()
    lab.set_mac(A, MAC_A2)
    took = lab.wait("A's new MAC on every server", lambda: all_on(lab, {A_V4: MAC_A2}), 5, interval=0.005)
    print(f"new MAC on every server {took:.3f} s after the change")
    assert took <= 1.0, f"took {took:.2f} s"
    assert time.monotonic() - t0 < 2
    assert all_on(lab, {B_V4: MAC_B}), "provider B's entry must not move"
    before = lab.frames(A)
    lab.send("srv1", DEST_A, 4)
    lab.wait("frames to the new MAC", lambda: lab.frames(A)[MAC_A2] - before[MAC_A2] == 4, 3)
    assert lab.frames(A)[MAC_A] == before[MAC_A], "frames still sent to A's old MAC"
    assert "next hop changed" in log_of(lab, "sw")


def test_a_removed_provider_loses_its_entries_and_routes(lab: ArpRelayLab) -> None:
    lab.remove_provider(B, B_V4)
    took = lab.wait(
        "provider B gone from every server",
        lambda: all(lab.permanent_mac(s, B_V4) is None for s in SERVERS),
        10,
    )
    print(f"provider B's entries removed {took:.2f} s after it went")
    lab.wait("B's routes withdrawn", lambda: all(lab.route(s, DEST_B).get("gateway") is None for s in SERVERS), 10)
    for srv in SERVERS:
        node = lab.nodes[srv]
        assert node.run("ip", "route", "show", "table", "1002").strip() == ""
        assert "fwmark 0x3ea" not in node.run("ip", "rule", "show")
        assert B_V4 not in node.run("ip", "addr", "show", "dev", "ext0")
        assert lab.permanent_mac(srv, A_V4) == MAC_A2
    # A and the shared prefix stay, through A (BIRD moves the shared prefix over to A's path)
    lab.wait("the shared prefix through A", lambda: all_routed(lab, SHARED, A_V4), 10)
    doc = json.loads((lab.nodes["srv2"].workdir / "arprelay.json").read_text())
    assert sorted({n["provider"] for n in doc["nexthops"]}) == [A]


def test_servers_keep_forwarding_when_the_relay_stops(lab: ArpRelayLab) -> None:
    lab.wait("A's entry on every server", lambda: all_on(lab, {A_V4: MAC_A2}), 10)
    lab.stop_relay()
    lab.wait("a host noticing", lambda: "relay unreachable" in log_of(lab, "srv1"), 15)
    for srv in SERVERS:
        assert lab.permanent_mac(srv, A_V4) == MAC_A2
        assert lab.route(srv, DEST_A)["gateway"] == A_V4
    before = lab.frames(A)
    for srv in SERVERS:
        lab.send(srv, DEST_A, 3)
    lab.wait("frames through A without the relay", lambda: lab.frames(A)[MAC_A2] - before[MAC_A2] == 6, 3)
    # and when it comes back (a new epoch), the hosts take its mapping again without a change
    lab.start_relay()
    lab.wait("a host reconnecting", lambda: "relay reachable again" in log_of(lab, "srv1"), 15)
    assert all_on(lab, {A_V4: MAC_A2})
