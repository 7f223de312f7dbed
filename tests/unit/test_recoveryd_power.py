"""The power drivers against simulators that speak the real protocols over 127.0.0.1: IPMI 2.0 LAN
(pyghmi client → virtual BMC in a child process) and SNMP v2c (pysnmp client → PDU agent)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sims.ipmi_bmc import BmcSim
from sims.snmp_pdu import APC_OUTLET_CTL, PduAgent

from edgepop.agents.recoveryd.config import IpmiConfig, PduConfig
from edgepop.agents.recoveryd.power import (
    PowerError,
    ipmi_cycle,
    ipmi_set,
    ipmi_status,
    outlet_cycle,
    outlet_set,
    outlet_status,
)

PASSWORD = "bmc-pw-7f3a"
COMMUNITY = "pdu-rw-91c2"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[tuple[BmcSim, IpmiConfig, list[str]]]:
    port = free_udp_port()
    power: list[str] = []
    sim = BmcSim(port, "admin", PASSWORD, power.append, workdir=tmp_path)
    cfg = IpmiConfig.model_validate({"address": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD})
    try:
        yield sim, cfg, power
    finally:
        sim.stop()


@pytest.fixture
def pdu() -> Iterator[tuple[PduAgent, PduConfig, list[tuple[int, str]]]]:
    changes: list[tuple[int, str]] = []
    agent = PduAgent(COMMUNITY, 8, lambda o, s: changes.append((o, s)), read_community="public").start()
    cfg = PduConfig.model_validate(
        {"name": "pdu1", "address": "127.0.0.1", "port": agent.port, "community": COMMUNITY, "timeout_s": 0.5}
    )
    try:
        yield agent, cfg, changes
    finally:
        agent.stop()


def wait_for(predicate: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.02)
    return False


def test_ipmi_status_and_cycle(bmc: tuple[BmcSim, IpmiConfig, list[str]]) -> None:
    _sim, cfg, power = bmc
    assert ipmi_status(cfg) == "on"
    assert ipmi_cycle(cfg) == "chassis power cycle"
    assert wait_for(lambda: power == ["off", "on"]), power
    assert ipmi_status(cfg) == "on"


def test_ipmi_cycle_of_a_chassis_that_is_off_powers_it_on(bmc: tuple[BmcSim, IpmiConfig, list[str]]) -> None:
    _sim, cfg, power = bmc
    ipmi_set(cfg, "off")
    assert wait_for(lambda: power == ["off"]) and ipmi_status(cfg) == "off"
    assert ipmi_cycle(cfg) == "chassis was off: power on"
    assert wait_for(lambda: power == ["off", "on"]), power


def test_ipmi_wrong_password_is_refused_without_showing_it(bmc: tuple[BmcSim, IpmiConfig, list[str]]) -> None:
    _sim, cfg, power = bmc
    wrong = IpmiConfig.model_validate({**cfg.model_dump(mode="json"), "password": "nope-guess"})
    with pytest.raises(PowerError) as err:
        ipmi_cycle(wrong)
    assert "Incorrect password" in str(err.value) and "nope-guess" not in str(err.value)
    assert power == []


def test_ipmi_unreachable_bmc_fails_in_bounded_time(bmc: tuple[BmcSim, IpmiConfig, list[str]]) -> None:
    sim, cfg, _power = bmc
    sim.stop()
    start = time.monotonic()
    with pytest.raises(PowerError, match=r"BMC 127\.0\.0\.1"):
        ipmi_cycle(cfg)
    assert time.monotonic() - start < 15


def test_snmp_outlet_status_set_and_reboot(pdu: tuple[PduAgent, PduConfig, list[tuple[int, str]]]) -> None:
    agent, cfg, changes = pdu
    assert outlet_status(cfg, 3) == "on"
    outlet_set(cfg, 3, "off")
    assert outlet_status(cfg, 3) == "off" and changes == [(3, "off")]
    outlet_set(cfg, 3, "on")
    assert outlet_cycle(cfg, 3) == "outlet 3 reboot"
    assert changes == [(3, "off"), (3, "on"), (3, "off"), (3, "on")]
    assert ("set", f"{APC_OUTLET_CTL}.3", 3) in agent.requests


def test_snmp_cycle_as_off_then_on_for_a_model_without_reboot(
    pdu: tuple[PduAgent, PduConfig, list[tuple[int, str]]],
) -> None:
    agent, cfg, changes = pdu
    model = cfg.model.model_copy(update={"reboot": None})
    cfg = cfg.model_copy(update={"model": model, "off_s": 0.1})
    assert outlet_cycle(cfg, 5) == "outlet 5 off, 0.1 s, on"
    assert changes == [(5, "off"), (5, "on")]
    assert [r for r in agent.requests if r[0] == "set"] == [
        ("set", f"{APC_OUTLET_CTL}.5", 2),
        ("set", f"{APC_OUTLET_CTL}.5", 1),
    ]


def test_snmp_wrong_community_times_out_and_changes_nothing(
    pdu: tuple[PduAgent, PduConfig, list[tuple[int, str]]],
) -> None:
    _agent, cfg, changes = pdu
    bad = PduConfig.model_validate({**cfg.model_dump(mode="json"), "community": "guess", "retries": 0})
    with pytest.raises(PowerError, match="No SNMP response") as err:
        outlet_cycle(bad, 1)
    assert "guess" not in str(err.value)
    assert changes == []


def test_snmp_read_only_community_cannot_switch(pdu: tuple[PduAgent, PduConfig, list[tuple[int, str]]]) -> None:
    _agent, cfg, changes = pdu
    ro = PduConfig.model_validate({**cfg.model_dump(mode="json"), "community": "public"})
    assert outlet_status(ro, 1) == "on"
    with pytest.raises(PowerError, match="noAccess"):
        outlet_set(ro, 1, "off")
    assert changes == []


def test_snmp_unknown_outlet_is_an_error(pdu: tuple[PduAgent, PduConfig, list[tuple[int, str]]]) -> None:
    _agent, cfg, _changes = pdu
    with pytest.raises(PowerError, match="noSuchName"):
        outlet_set(cfg, 9, "off")


def test_child_process_runner_carries_out_one_request(
    bmc: tuple[BmcSim, IpmiConfig, list[str]], pdu: tuple[PduAgent, PduConfig, list[tuple[int, str]]]
) -> None:
    _sim, ipmi, power = bmc
    _agent, pdu_cfg, changes = pdu
    requests = [
        {"method": "ipmi", "ipmi": {**ipmi.model_dump(mode="json"), "password": PASSWORD}},
        {"method": "pdu", "pdu": {**pdu_cfg.model_dump(mode="json"), "community": COMMUNITY}, "outlet": 2},
    ]
    for request in requests:
        proc = subprocess.run(
            [sys.executable, "-m", "edgepop.agents.recoveryd.power"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(proc.stdout)["ok"] is True, proc.stdout
    assert wait_for(lambda: power == ["off", "on"]) and changes == [(2, "off"), (2, "on")]
