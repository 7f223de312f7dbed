"""Anycast for real: the rendered BIRD configs of the lab PoP's router and three servers, healthd on
each server, and a client, in network namespaces (edgepop.lab.fabric). Every assertion is on the
router's kernel FIB or on what the client is answered.

The lab inventory's weights: srv1 100, srv2 200, srv3 200, so srv1 takes everything while it
announces, and srv2 and srv3 share equally (ECMP) when it does not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgepop.derive import derive_all
from edgepop.lab.fabric import Fabric
from edgepop.validate import load_valid

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "lab"
HTTP = "203.0.113.100"
DNS = "203.0.113.101"
SERVERS = ["srv1", "srv2", "srv3"]

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("bird", "birdc", "busybox", "curl", "ip", "nft")):
    pytest.skip("needs root, bird2, busybox, curl, iproute2 and nft", allow_module_level=True)

FabricFactory = Callable[..., Fabric]


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[FabricFactory]:
    made: list[Fabric] = []

    def make(**kwargs: Any) -> Fabric:
        fab = Fabric(kwargs.pop("inventory", INVENTORY), tmp_path / "fabric", servers=SERVERS, log=print, **kwargs)
        made.append(fab)
        fab.up()
        fab.wait("every server session established", lambda: len(fab.established()) == 2 * len(SERVERS), 30)
        return fab

    try:
        yield make
    finally:
        for fab in made:
            fab.down()
        leftovers = [
            ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        ]
        assert not [ns for ns in leftovers if any(f.tag in ns for f in made)], leftovers


def test_lowest_weight_wins_and_equal_weights_share_per_flow(fabric: FabricFactory) -> None:
    fab = fabric(healthd=False)
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    # IPv6 follows the same weights
    fab.wait("srv1 alone in the IPv6 FIB", lambda: fab.servers_at("2001:db8:a::100") == {"2001:db8:0:1::11"})
    assert fab.requests(10) == {"srv1": 10}

    fab.servers["srv1"].birdc("disable", "static_http_v4")
    fab.wait("srv2 and srv3 sharing", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"})
    assert fab.servers_at(DNS) == {"srv1"}  # only the disabled service moved
    answers = fab.requests(40)
    # with L4 hashing, 40 new flows all on one of two servers has a probability of 2 x 2^-40
    assert set(answers) == {"srv2", "srv3"}, answers


def test_weight_change_moves_traffic_without_a_session_reset(fabric: FabricFactory, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory)
    fab = fabric(inventory=inventory, healthd=False)
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    before = fab.established()

    edit = subprocess.run(
        [str(ROOT / ".venv/bin/edgepop"), "inventory", "set-weight", str(inventory), "srv1", "300"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert edit.returncode == 0, edit.stderr
    sc = derive_all(load_valid(inventory))["srv1"]
    assert "bgp_med = 300;" in fab.bird_config(fab.servers["srv1"], sc)
    assert "Reconfigured" in fab.reconfigure_bird("srv1", sc)

    fab.wait("traffic on srv2 and srv3", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"})
    assert fab.servers_at(DNS) == {"srv2", "srv3"}  # the weight is the server's, for every service
    assert fab.established() == before  # same sessions, same `since`: no reset


def test_killed_service_withdraws_only_its_prefix_and_comes_back(fabric: FabricFactory) -> None:
    fab = fabric()
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    fab.wait("healthd up on srv1", lambda: fab.status("srv1")["services"]["http"]["health"] == "up")
    assert fab.kill_service("srv1"), "no httpd found on srv1"
    took = fab.wait("srv1 out of the http FIB", lambda: "srv1" not in fab.servers_at(HTTP), 10)
    fab.wait("srv2 and srv3 sharing", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"}, 5)
    assert fab.servers_at(DNS) == {"srv1"}, "the other service must stay on srv1"
    print(f"withdrawn {took:.2f} s after the kill")
    # healthd restarted the httpd and announced srv1 again once it passed `rise` checks
    fab.wait("srv1 back", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)
    assert fab.servers["srv1"].pids_of("httpd")
    assert fab.requests(5) == {"srv1": 5}
    log = fab.healthd_log("srv1")
    assert "service down: withdrawing its routes" in log and "restarting" in log and "announced" in log


@pytest.mark.parametrize("how", ["sigstop", "nft-drop"])
def test_a_silently_dead_server_is_dropped_by_bfd(fabric: FabricFactory, how: str) -> None:
    fab = fabric(healthd=False)
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    srv1 = fab.servers["srv1"]
    bird = srv1.procs["bird"]
    try:
        if how == "sigstop":
            bird.send_signal(signal.SIGSTOP)
        else:
            srv1.run(
                "nft", "add table inet dead; add chain inet dead in { type filter hook input priority 0; policy drop; }"
            )
        took = fab.wait("srv1 out of the FIB", lambda: "srv1" not in fab.servers_at(HTTP), 8)
    finally:
        if how == "sigstop":
            bird.send_signal(signal.SIGCONT)
        else:
            srv1.run("nft", "delete table inet dead", check=False)
    # BGP alone would wait for the 9 s hold time; BFD (100 ms x 3) needs about 0.3 s
    assert took < 3.0, f"took {took:.2f} s: BFD did not act"
    fab.wait("srv2 and srv3 sharing", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"}, 5)
    fab.wait("srv1 back after it wakes up", lambda: fab.servers_at(HTTP) == {"srv1"}, 30)


def test_sigterm_drains_without_a_failed_request_and_a_new_agent_takes_back(fabric: FabricFactory) -> None:
    fab = fabric()
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    fab.wait("healthd up on srv1", lambda: fab.status("srv1")["services"]["http"]["health"] == "up")
    poller = fab.poller(interval_s=0.02)
    try:
        fab.wait("the client answered by srv1", lambda: "srv1" in poller.lines(), 10)
        agent = fab.servers["srv1"].procs["healthd"]
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        fab.wait("srv1 drained", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"}, 5)
        mark = len(poller.lines())
        fab.wait("the client answered by the others", lambda: len(poller.lines()) > mark + 20, 10)
    finally:
        counts = poller.stop()
    failed = {k: v for k, v in counts.items() if k.startswith("failed")}
    assert not failed, counts
    assert counts.get("srv1") and (counts.get("srv2", 0) + counts.get("srv3", 0)) >= 20, counts
    assert fab.servers_at(DNS) == {"srv1"}, "healthd here manages http only: dns is not its to withdraw"

    fab.start_healthd("srv1")  # adopts its own withdrawal and announces after `rise` passes
    fab.wait("srv1 back", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)


def test_overload_sheds_to_peers_with_room_and_takes_it_back(fabric: FabricFactory) -> None:
    shedding = {"enabled": True, "high": 0.9, "low": 0.6, "peer_room": 0.7, "step_s": 1}
    fab = fabric(healthd_settings={"load_shedding": shedding, "shed_services": ["http"]})
    for name in SERVERS:
        fab.set_load(name, 0.2)
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    fab.wait("peers seen with room", lambda: fab.status("srv2")["load"] == 0.2)

    fab.set_load("srv1", 1.5)
    fab.wait("srv1 shed", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"}, 10)
    status = fab.status("srv1")["services"]["http"]
    assert status["shed"] and status["health"] == "up" and status["restarts"] == 0
    assert fab.servers_at(DNS) == {"srv1"}, "only the services listed to shed are shed"

    fab.set_load("srv1", 0.75)  # between low and high: stays shed (hysteresis)
    time.sleep(2.5)
    assert fab.servers_at(HTTP) == {"srv2", "srv3"}

    fab.set_load("srv1", 0.3)
    fab.wait("srv1 takes it back", lambda: fab.servers_at(HTTP) == {"srv1"}, 10)

    # a peer without room: shedding onto it is refused, and load already shed comes back
    fab.set_load("srv2", 0.95)
    fab.set_load("srv3", 0.95)
    fab.set_load("srv1", 1.5)
    time.sleep(4)
    assert fab.servers_at(HTTP) == {"srv1"}


def test_the_safety_floor_keeps_the_pop_announced_when_every_server_fails(fabric: FabricFactory) -> None:
    fab = fabric()
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    for name in SERVERS:
        fab.wait(f"{name} sees its peers", lambda n=name: fab.status(n)["services"]["http"]["health"] == "up")
    time.sleep(1.5)  # a fresh peer report everywhere

    fab.break_shared_dependency()  # /healthz fails on every server at once; the servers are fine
    time.sleep(5)  # the servers act, then see each other fail and refill the PoP
    empty = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        empty += not fab.servers_at(HTTP)
        time.sleep(0.05)
    assert empty == 0, "the PoP stopped announcing the service"
    held = [n for n in SERVERS if fab.status(n)["services"]["http"]["held_by_safety"]]
    assert held, "no server kept its routes on the safety's account"
    assert any("level=critical" in fab.healthd_log(n) for n in SERVERS)
    answers = fab.requests(5)
    assert not any(k.startswith("failed") for k in answers), answers  # the service itself still works

    fab.break_shared_dependency(False)
    fab.wait(
        "every server healthy again",
        lambda: all(fab.status(n)["services"]["http"]["health"] == "up" for n in SERVERS),
        15,
    )
    fab.wait("srv1 alone again", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)


HELD = """
import socket, sys, time, pathlib
go = pathlib.Path(sys.argv[2])
s = socket.create_connection((sys.argv[1], 80), timeout=5)
print("connected", flush=True)
while not go.exists():
    time.sleep(0.02)
s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
data = b""
try:
    while chunk := s.recv(4096):
        data += chunk
except OSError as exc:
    print(f"failed: {exc!r}", flush=True)
print(data.split(b"\\r\\n\\r\\n", 1)[-1].decode().strip() or "failed: no answer", flush=True)
"""


def test_a_connection_open_during_a_drain_stays_on_its_server(fabric: FabricFactory, tmp_path: Path) -> None:
    # the router pins each connection to the server its first packet went to (pinning.nft): after
    # the route moves, packets of the open connection still reach srv1, not srv2 (which would reset)
    fab = fabric(healthd=False)
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"})
    assert fab.client is not None
    go = tmp_path / "go"
    out = tmp_path / "held.out"
    with open(out, "wb") as sink:
        held = subprocess.Popen(
            fab.client.argv(sys.executable, "-c", HELD, HTTP, str(go)), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        fab.wait("the connection open", lambda: "connected" in out.read_text(), 10)
        for proto in ("static_http_v4", "static_http_v6"):
            fab.servers["srv1"].birdc("disable", proto)
        fab.wait("the route moved", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"})
        assert set(fab.requests(10)) <= {"srv2", "srv3"}  # new connections follow the route
        go.touch()
        held.wait(10)
    finally:
        if held.poll() is None:
            held.kill()
            held.wait()
    assert out.read_text().splitlines()[-1] == "http served by srv1", out.read_text()
