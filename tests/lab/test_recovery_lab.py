"""recoveryd for real: the lab PoP's router and four servers in network namespaces (BIRD, healthd,
an HTTP service each), a control-server namespace on the server LAN and the internal network, one
virtual BMC per server (IPMI 2.0 over LAN) and the PDU's SNMP agent inside it, each wired to
`Fabric.power_off`/`power_on`, and recoveryd running there with short timers.

A server "crashes" with `power_off` behind the BMC's back (the BMC still reads `on`): its
processes die and its ports go silent. Every assertion is on what recoveryd wrote to its audit log,
what the simulators were told over the wire, the router's sessions and FIB, and the client's answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sims.ipmi_bmc import BmcSim
from sims.snmp_pdu import PduProcess

from edgepop.agents.recoveryd.audit import read_audit
from edgepop.lab.fabric import Fabric, Node

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "lab"
HTTP = "203.0.113.100"
SERVERS = ["srv1", "srv2", "srv3", "srv4"]
PASSWORD = "lab-bmc-5e1f"
COMMUNITY = "lab-pdu-77ab"
CONTROL_LAN = "198.51.100.5/27"
CONTROL_INTERNAL = "198.51.100.37/27"

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("bird", "birdc", "busybox", "curl", "ip", "nft")):
    pytest.skip("needs root, bird2, busybox, curl, iproute2 and nft", allow_module_level=True)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Lab:
    """The fabric plus the control namespace, the simulators and recoveryd."""

    def __init__(self, fab: Fabric, ctl: Node, workdir: Path) -> None:
        self.fab = fab
        self.ctl = ctl
        self.workdir = workdir
        self.bmc_ports = {name: free_udp_port() for name in SERVERS}
        self.pdu_port = free_udp_port()
        self.outlets = {name: i + 1 for i, name in enumerate(SERVERS)}
        self.dead_outlets: set[int] = set()  # outlets whose server does not come back (a dead PSU)
        self.bmcs: dict[str, BmcSim] = {}
        self.pdu: PduProcess | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.audit_path = workdir / "audit.jsonl"
        self.alerts_path = workdir / "alerts.jsonl"
        self.runs = 0

    def power(self, name: str, state: str) -> None:
        if state == "off":
            self.fab.power_off(name)
        else:
            self.fab.power_on(name)

    def start_bmc(self, name: str) -> None:
        self.bmcs[name] = BmcSim(
            self.bmc_ports[name],
            "admin",
            PASSWORD,
            lambda state, n=name: self.power(n, state),  # type: ignore[misc]
            prefix=self.ctl.argv(),
            workdir=self.workdir,
        )

    def start_pdu(self) -> None:
        by_outlet = {o: n for n, o in self.outlets.items()}

        def changed(outlet: int, state: str) -> None:
            if outlet in by_outlet and not (state == "on" and outlet in self.dead_outlets):
                self.power(by_outlet[outlet], state)

        self.pdu = PduProcess(self.pdu_port, COMMUNITY, 8, changed, prefix=self.ctl.argv(), workdir=self.workdir)

    def config(self, **limits: Any) -> dict[str, Any]:
        servers = []
        for name in SERVERS:
            srv = self.fab.servers[name]
            servers.append(
                {
                    "name": name,
                    "reach": {"address": srv.lan_v4, "port": 22},
                    "healthd_url": f"http://{srv.internal_v4}:9180/status",
                    "router_protocols": [f"server_{name}_v4", f"server_{name}_v6"],
                    "ipmi": {
                        "address": "127.0.0.1",
                        "port": self.bmc_ports[name],
                        "username": "admin",
                        "password": PASSWORD,
                        "timeout_s": 3,
                    },
                    "pdu": {"pdu": "pdu1", "outlet": self.outlets[name]},
                }
            )
        assert self.fab.router is not None
        return {
            "pop": "lab1",
            "decision": {
                "probe_interval_s": 0.5,
                "probe_timeout_s": 0.4,
                "grace_s": 1.5,
                "back_timeout_s": 8,
                "verify_passes": 2,
                "verify_timeout_s": 20,
            },
            "limits": {"max_in_flight": 1, "max_down_fraction": 0.75, **limits},
            "backoff": {"initial_s": 60, "factor": 2, "max_s": 600, "reset_after_s": 600},
            "router": {"socket": self.fab.router.bird_socket, "timeout_s": 1},
            "audit_log": str(self.audit_path),
            "state_file": str(self.workdir / "recoveryd-state.json"),
            "alert_command": ["sh", "-c", f"cat >> {self.alerts_path}; echo >> {self.alerts_path}"],
            "status": {"listen": "127.0.0.1", "port": 9181},
            "pdus": [
                {
                    "name": "pdu1",
                    "address": "127.0.0.1",
                    "port": self.pdu_port,
                    "community": COMMUNITY,
                    "timeout_s": 0.5,
                    "retries": 1,
                }
            ],
            "servers": servers,
        }

    def start_agent(self, **limits: Any) -> None:
        self.runs += 1
        conf = self.workdir / f"recoveryd-{self.runs}.yml"
        conf.write_text(yaml.safe_dump(self.config(**limits), sort_keys=False))
        conf.chmod(0o600)
        check = subprocess.run(
            [sys.executable, "-m", "edgepop.agents.recoveryd", "--check-config", "--config", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        log = open(self.workdir / "recoveryd.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.agent = subprocess.Popen(
            self.ctl.argv(sys.executable, "-m", "edgepop.agents.recoveryd", "--config", str(conf)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None

    def audit(self, server: str | None = None) -> list[dict[str, Any]]:
        return [r for r in read_audit(self.audit_path) if server is None or r["server"] == server]

    def actions(self, server: str) -> list[str]:
        return [r["action"] for r in self.audit(server)]

    def alerts(self) -> list[dict[str, Any]]:
        if not self.alerts_path.exists():
            return []
        return [json.loads(line) for line in self.alerts_path.read_text().splitlines() if line.strip()]

    def log(self) -> str:
        return (self.workdir / "recoveryd.log").read_text(errors="replace")

    def established(self, name: str) -> bool:
        return f"server_{name}_v4" in self.fab.established()

    def stop(self) -> None:
        self.stop_agent()
        for bmc in self.bmcs.values():
            bmc.stop()
        if self.pdu is not None:
            self.pdu.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    fab = Fabric(
        INVENTORY,
        tmp_path / "fabric",
        servers=SERVERS,
        check_overrides={"interval_s": 0.25, "timeout_s": 0.2, "rise": 2, "fall": 2},
        log=print,
    )
    made: Lab | None = None
    try:
        fab.up()
        ctl = fab.add_node("ctl", CONTROL_LAN, CONTROL_INTERNAL)
        made = Lab(fab, ctl, tmp_path)
        for name in SERVERS:
            made.start_bmc(name)
        made.start_pdu()
        fab.wait("every server session established", lambda: len(fab.established()) == 2 * len(SERVERS), 30)
        fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)
        yield made
    finally:
        if made is not None:
            made.stop()
            print("--- recoveryd log (tail)\n" + "\n".join(made.log().splitlines()[-40:]) if made.runs else "")
        fab.down()
        leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        assert not [ns for ns in leftovers if fab.tag in ns], leftovers


def test_recovery_ipmi_pdu_alert_and_rate_limit(lab: Lab) -> None:
    fab = lab.fab
    lab.start_agent()
    time.sleep(2)  # a few healthy rounds first
    assert lab.audit() == [], "nothing happens to a healthy PoP"

    # 1. a crash: IPMI power cycle, back, verified, routes released, requests served again
    fab.power_off("srv1")
    assert lab.bmcs["srv1"].events == [], "the BMC did not see the crash"
    fab.wait("srv2 and srv3 take the traffic", lambda: fab.servers_at(HTTP) == {"srv2", "srv3"}, 5)
    took = wait("srv1 released", lambda: "released" in lab.actions("srv1"), 40)
    print(f"srv1: crash to release {took:.1f} s")
    assert lab.actions("srv1") == ["declared_dead", "ipmi_cycle", "ipmi_cycled", "answers", "verified", "released"]
    assert lab.bmcs["srv1"].events == ["off", "on"], "one chassis power cycle over IPMI"
    assert lab.pdu is not None and lab.pdu.events == []
    dead = lab.audit("srv1")[0]
    assert dead["signals"]["reach"] is False and dead["signals"]["healthd"] is False
    fab.wait("srv1 back in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)
    assert fab.requests(5) == {"srv1": 5}

    # 2. the BMC is unreachable: the PDU outlet is cycled instead
    lab.bmcs["srv2"].stop()
    fab.power_off("srv2")
    wait("srv2 released", lambda: "released" in lab.actions("srv2"), 45)
    assert lab.actions("srv2") == [
        "declared_dead",
        "ipmi_cycle",
        "ipmi_failed",
        "pdu_cycle",
        "pdu_cycled",
        "answers",
        "verified",
        "released",
    ]
    assert lab.pdu.events == [(2, "off"), (2, "on")]
    fab.wait("srv2's sessions back", lambda: lab.established("srv2"), 15)

    # 3. both fail (BMC gone, the outlet's power does not bring it back): one alert, no loop
    lab.bmcs["srv3"].stop()
    lab.dead_outlets.add(3)
    fab.power_off("srv3")
    wait("srv3 failed", lambda: "failed" in lab.actions("srv3"), 45)
    time.sleep(5)  # well inside the 60 s backoff
    assert lab.actions("srv3") == [
        "declared_dead",
        "ipmi_cycle",
        "ipmi_failed",
        "pdu_cycle",
        "pdu_cycled",
        "pdu_timeout",
        "failed",
        "alert",
    ]
    alerts = lab.alerts()
    assert [(a["event"], a["server"]) for a in alerts] == [("recovery_failed", "srv3")]
    assert PASSWORD not in lab.audit_path.read_text() and COMMUNITY not in lab.audit_path.read_text()
    assert PASSWORD not in lab.log() and COMMUNITY not in lab.log()
    assert not lab.established("srv3"), "a failed server's routes stay held"
    # the operator fixes it: it verifies from `failed` and is let back in
    lab.dead_outlets.clear()
    fab.power_on("srv3")
    wait("srv3 released after the repair", lambda: "released" in lab.actions("srv3"), 30)
    fab.wait("srv3's sessions back", lambda: lab.established("srv3"), 15)

    # 4. three servers at once with max_in_flight 1: strictly one cycle at a time
    lab.stop_agent()
    lab.audit_path.unlink()
    lab.start_bmc("srv2")
    lab.start_bmc("srv3")
    lab.start_agent(max_in_flight=1)
    time.sleep(1.5)
    for name in ("srv1", "srv2", "srv4"):
        fab.power_off(name)
    wait(
        "all three released",
        lambda: all("released" in lab.actions(n) for n in ("srv1", "srv2", "srv4")),
        60,
    )
    in_flight: set[str] = set()
    peak = 0
    for rec in lab.audit():
        if rec["action"] == "ipmi_cycle":
            in_flight.add(rec["server"])
        elif rec["action"] in ("answers", "failed"):
            in_flight.discard(rec["server"])
        peak = max(peak, len(in_flight))
    assert peak == 1, lab.audit()
    held = [r for r in lab.audit() if r["action"] == "held_rate_limit"]
    assert {r["server"] for r in held} == {"srv2", "srv4"}, "the other two waited their turn"
    fab.wait("every session back", lambda: len(fab.established()) == 2 * len(SERVERS), 20)
    fab.wait("srv1 alone in the FIB", lambda: fab.servers_at(HTTP) == {"srv1"}, 10)
    assert fab.requests(5) == {"srv1": 5}
