"""recoveryd's decision core with an exact clock: every rule of docs/recovery.md, one test each."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from edgepop.agents.common import ConfigError
from edgepop.agents.recoveryd.audit import AuditLog, read_audit
from edgepop.agents.recoveryd.config import RecoverydConfig, dump_config, parse_config
from edgepop.agents.recoveryd.core import Action, Observation, Recovery

DEAD = Observation(bgp=False, reach=False, healthd=False)
OK = Observation(bgp=True, reach=True, healthd=True, green=True)
BOOTED_NOT_GREEN = Observation(bgp=None, reach=True, healthd=True, green=False)
PASSWORD = "s3cr3t-bmc-pw"
COMMUNITY = "pdu-write-community"


def config(n: int = 4, **overrides: Any) -> RecoverydConfig:
    data: dict[str, Any] = {
        "pop": "lab1",
        "decision": {"grace_s": 10, "back_timeout_s": 60, "verify_passes": 2, "verify_timeout_s": 120},
        "limits": {"max_in_flight": 1, "max_down_fraction": 0.5},
        "backoff": {"initial_s": 600, "factor": 2, "max_s": 3600, "reset_after_s": 7200},
        "pdus": [{"name": "pdu1", "address": "203.0.113.40", "community": COMMUNITY}],
        "servers": [
            {
                "name": f"srv{i}",
                "reach": {"address": f"198.51.100.{10 + i}"},
                "healthd_url": f"http://198.51.100.{40 + i}:9180/status",
                "router_protocols": [f"server_srv{i}_v4"],
                "ipmi": {"address": f"203.0.113.{20 + i}", "username": "admin", "password": PASSWORD},
                "pdu": {"pdu": "pdu1", "outlet": i},
            }
            for i in range(1, n + 1)
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data, "recoveryd.yml")


class Harness:
    """The core with a fake clock, feeding one observation per server per round."""

    def __init__(self, cfg: RecoverydConfig) -> None:
        self.now = 1000.0
        self.records: list[dict[str, Any]] = []
        self.core = Recovery(cfg, self.records.append, self.now)
        self.seen: dict[str, Observation] = dict.fromkeys(self.core.servers, OK)
        self.actions: list[Action] = []

    def round(self, dt: float = 1.0, **obs: Observation) -> list[Action]:
        self.now += dt
        self.seen.update(obs)
        for name, o in self.seen.items():
            self.core.observe(self.now, name, o)
        out = self.core.step(self.now)
        self.actions += out
        return out

    def run(self, seconds: float, **obs: Observation) -> list[Action]:
        out: list[Action] = []
        for _ in range(int(seconds)):
            out += self.round(1.0, **obs)
        return out

    def state(self, name: str) -> str:
        return self.core.servers[name].state

    def cycles(self, kind: str = "power_cycle") -> list[tuple[str, str | None]]:
        return [(a.server, a.method) for a in self.actions if a.kind == kind]

    def audit(self, server: str) -> list[str]:
        return [r["action"] for r in self.records if r["server"] == server]


def test_one_missed_probe_never_kills() -> None:
    h = Harness(config())
    for _ in range(30):  # every other round fails on all signals: never 10 s without a pass
        h.round(1.0, srv1=DEAD)
        assert h.state("srv1") == "suspect"
        h.round(1.0, srv1=OK)
        assert h.state("srv1") == "healthy"
    assert h.cycles() == []


def test_one_signal_failing_forever_is_only_suspect() -> None:
    h = Harness(config())
    h.run(120, srv1=Observation(bgp=True, reach=True, healthd=False))
    assert h.state("srv1") == "suspect"
    assert h.cycles() == []


def test_two_signals_past_grace_kill_and_ipmi_comes_first() -> None:
    h = Harness(config())
    h.run(10, srv1=Observation(bgp=False, reach=False, healthd=True))
    assert h.state("srv1") == "suspect", "not before the grace period"
    out = h.round(1.0)
    assert [(a.kind, a.method) for a in out] == [("hold_routes", None), ("power_cycle", "ipmi")]
    assert h.state("srv1") == "cycling"
    assert h.audit("srv1") == ["declared_dead", "ipmi_cycle"]
    assert h.records[0]["signals"] == {"bgp": False, "reach": False, "healthd": True, "green": False}
    assert "bgp, reach" in h.records[0]["reason"]


def test_ipmi_cycle_then_back_then_verified_releases_routes() -> None:
    h = Harness(config())
    h.run(11, srv1=DEAD)
    h.core.power_result(h.now, "srv1", "ipmi", True, "chassis power cycle")
    assert h.state("srv1") == "wait_back"
    h.run(5)  # still dead
    assert h.state("srv1") == "wait_back"
    h.round(1.0, srv1=BOOTED_NOT_GREEN)
    assert h.state("srv1") == "verify"
    h.run(5)
    assert h.state("srv1") == "verify", "answers, but healthd is not green: routes stay held"
    assert h.cycles("release_routes") == []
    out = h.round(1.0, srv1=OK) + h.round(1.0)
    assert [a.kind for a in out] == ["release_routes"]
    assert h.state("srv1") == "healthy"
    assert h.audit("srv1")[-3:] == ["answers", "verified", "released"]


def test_bgp_held_down_by_recoveryd_does_not_count_against_the_server() -> None:
    h = Harness(config())
    h.run(11, srv1=DEAD)
    h.core.power_result(h.now, "srv1", "ipmi", True, "ok")
    h.round(1.0, srv1=Observation(bgp=False, reach=True, healthd=True, green=True))
    h.run(2)
    assert h.state("srv1") == "healthy"


def test_ipmi_unreachable_falls_back_to_the_pdu() -> None:
    h = Harness(config())
    h.run(11, srv1=DEAD)
    h.core.power_result(h.now, "srv1", "ipmi", False, "timeout talking to 203.0.113.21")
    out = h.round(0.1)
    assert h.state("srv1") == "cycling"
    assert [(a.kind, a.method) for a in out] == [("power_cycle", "pdu")]
    assert h.audit("srv1") == ["declared_dead", "ipmi_cycle", "ipmi_failed", "pdu_cycle"]


def test_ipmi_cycle_without_return_falls_back_to_the_pdu_after_the_timeout() -> None:
    h = Harness(config())
    h.run(11, srv1=DEAD)
    h.core.power_result(h.now, "srv1", "ipmi", True, "ok")
    h.run(59)
    assert h.cycles() == [("srv1", "ipmi")]
    h.run(1)
    assert h.cycles() == [("srv1", "ipmi"), ("srv1", "pdu")]
    assert "ipmi_timeout" in h.audit("srv1")


def test_both_fail_gives_one_alert_and_no_loop_within_the_backoff() -> None:
    h = Harness(config())
    h.run(11, srv1=DEAD)
    h.core.power_result(h.now, "srv1", "ipmi", False, "unreachable")
    h.round(1.0)
    h.core.power_result(h.now, "srv1", "pdu", True, "outlet 1 rebooted")
    h.run(60)
    assert h.state("srv1") == "failed"
    alerts = [a for a in h.actions if a.kind == "alert"]
    assert len(alerts) == 1 and alerts[0].event is not None
    assert alerts[0].event["event"] == "recovery_failed" and alerts[0].event["server"] == "srv1"
    h.run(500)  # the first backoff is 600 s from the start of the cycle
    assert h.cycles() == [("srv1", "ipmi"), ("srv1", "pdu")]
    assert len([a for a in h.actions if a.kind == "alert"]) == 1
    h.run(60)  # past the backoff and still dead: one new attempt, not a loop
    assert h.cycles() == [("srv1", "ipmi"), ("srv1", "pdu"), ("srv1", "ipmi")]


def test_backoff_grows_per_server_and_resets_after_a_long_healthy_spell() -> None:
    h = Harness(config())
    starts: list[float] = []
    for _ in range(3):
        for _ in range(3000):  # until the next cycle starts
            if h.round(1.0, srv1=DEAD) and h.state("srv1") == "cycling":
                break
        starts.append(h.now)
        h.core.power_result(h.now, "srv1", "ipmi", True, "ok")
        h.run(3, srv1=OK)
        assert h.state("srv1") == "healthy"
    # the first death waits only for the grace period; each later one for the backoff from the
    # previous cycle's start: 600 s, then 1200 s
    assert [round(b - a) for a, b in itertools.pairwise(starts)] == [600, 1200]
    assert h.audit("srv1").count("held_backoff") == 2
    h.run(7200)
    assert h.core.servers["srv1"].cycles == 0, "healthy for reset_after_s clears the backoff"
    for _ in range(30):
        if h.round(1.0, srv1=DEAD) and h.state("srv1") == "cycling":
            break
    assert h.state("srv1") == "cycling", "after the reset only the grace period applies"


def test_rate_limit_holds_other_servers_while_one_cycle_is_in_flight() -> None:
    h = Harness(config(n=6, limits={"max_in_flight": 1, "max_down_fraction": 0.5}))
    h.run(11, srv1=DEAD, srv2=DEAD, srv3=DEAD)
    assert h.cycles() == [("srv1", "ipmi")]
    assert h.core.servers["srv2"].held == "rate_limit" and h.core.servers["srv3"].held == "rate_limit"
    h.core.power_result(h.now, "srv1", "ipmi", True, "ok")
    h.run(5)
    assert h.cycles() == [("srv1", "ipmi")], "srv1 has not answered yet: still in flight"
    h.round(1.0, srv1=OK)
    assert h.cycles() == [("srv1", "ipmi"), ("srv2", "ipmi")]
    h.core.power_result(h.now, "srv2", "ipmi", False, "unreachable")
    h.round(1.0)
    assert h.cycles() == [("srv1", "ipmi"), ("srv2", "ipmi"), ("srv2", "pdu")], "fallback is the same cycle"


def test_max_in_flight_two_runs_two_at_once() -> None:
    h = Harness(config(n=6, limits={"max_in_flight": 2}))
    h.run(11, srv1=DEAD, srv2=DEAD, srv3=DEAD)
    assert h.cycles() == [("srv1", "ipmi"), ("srv2", "ipmi")]


def test_never_when_more_than_a_fraction_of_the_pop_is_down() -> None:
    h = Harness(config(n=4, limits={"max_down_fraction": 0.5}))
    h.run(11, srv1=DEAD, srv2=DEAD, srv3=DEAD)
    assert h.cycles() == [], "3 of 4 down: a PoP-wide cause, nothing is cycled"
    alerts = [a.event for a in h.actions if a.kind == "alert"]
    assert len(alerts) == 1 and alerts[0] is not None and alerts[0]["event"] == "pop_wide_hold"
    h.run(10, srv3=OK)
    assert h.cycles() == [("srv1", "ipmi")], "2 of 4 is within the fraction"


def test_never_the_whole_pop_even_with_a_high_fraction() -> None:
    h = Harness(config(n=2, limits={"max_down_fraction": 0.99, "max_in_flight": 4}))
    h.run(30, srv1=DEAD, srv2=DEAD)
    assert h.cycles() == []


def test_a_server_that_comes_back_by_itself_is_not_cycled() -> None:
    h = Harness(config(n=6, limits={"max_in_flight": 1}))
    h.run(11, srv1=DEAD, srv2=DEAD)
    assert h.state("srv2") == "dead"
    h.round(1.0, srv2=OK)
    assert h.state("srv2") == "healthy"
    assert "came_back" in h.audit("srv2")


def test_no_method_configured_fails_with_an_alert() -> None:
    cfg = config(n=3)
    data = cfg.model_dump(mode="json")
    data["servers"][0]["ipmi"] = None
    data["servers"][0]["pdu"] = None
    data["pdus"][0]["community"] = COMMUNITY
    for s in data["servers"][1:]:
        s["ipmi"]["password"] = PASSWORD
    h = Harness(parse_config(data, "x.yml"))
    h.run(11, srv1=DEAD)
    assert h.state("srv1") == "failed" and h.cycles() == []
    assert [a.event["event"] for a in h.actions if a.kind == "alert" and a.event] == ["recovery_failed"]


def test_secrets_never_reach_the_audit_log(tmp_path: Path) -> None:
    cfg = config()
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, cfg.secrets(), wall=lambda: 0.0)
    core = Recovery(cfg, log.write, 0.0)
    for t in range(12):
        core.observe(float(t), "srv1", DEAD)
        core.step(float(t))
    # a device error that echoes the credential it was sent
    core.power_result(12.0, "srv1", "ipmi", False, f"login failed for admin/{PASSWORD}")
    core.power_result(13.0, "srv1", "pdu", False, f"community {COMMUNITY} refused")
    text = path.read_text()
    assert PASSWORD not in text and COMMUNITY not in text
    records = read_audit(path)
    assert [r["action"] for r in records] == [
        "declared_dead",
        "ipmi_cycle",
        "ipmi_failed",
        "pdu_cycle",
        "pdu_failed",
        "failed",
    ]
    assert records[2]["reason"] == "login failed for admin/***"
    assert set(records[0]) == {"time", "server", "action", "reason", "state", "signals"}
    assert records[0]["time"] == "1970-01-01T00:00:00.000Z"


def test_secrets_are_masked_in_print_config_and_repr() -> None:
    cfg = config()
    assert PASSWORD not in dump_config(cfg) and COMMUNITY not in dump_config(cfg)
    assert PASSWORD not in repr(cfg)
    assert set(cfg.secrets()) == {PASSWORD, COMMUNITY}


def test_print_config_masks_the_alert_commands_arguments() -> None:
    hook = "https://alerts.example/hook?token=Zq81-alert-secret"
    printed = dump_config(config(alert_command=["/usr/bin/curl", "-d@-", hook]))
    assert "Zq81-alert-secret" not in printed
    assert "/usr/bin/curl" in printed and printed.count("**********") >= 2


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"limits": {"max_down_fraction": 1.0}}, "limits.max_down_fraction"),
        ({"decision": {"min_signals": 1}}, "decision.min_signals"),
        ({"decision": {"probe_timeout_s": 5, "probe_interval_s": 1}}, "probe_timeout_s (5.0) must not exceed"),
        ({"pdus": []}, "PDUs not listed under pdus: pdu1"),
        ({"typo": 1}, "typo: Extra inputs are not permitted"),
    ],
)
def test_invalid_configs_name_the_key(change: dict[str, Any], expect: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(**change)
    assert any(expect in line for line in err.value.errors), err.value.errors
    assert all(line.startswith("recoveryd.yml: ") for line in err.value.errors)
    assert PASSWORD not in json.dumps(err.value.errors)


def test_held_servers_adopted_after_a_restart_verify_before_release() -> None:
    h = Harness(config(router={"hold_routes": True}))
    h.core.adopt_held(["srv2"], h.now)
    assert h.core.held() == ["srv2"] and h.state("srv2") == "verify"
    out = h.round(1.0) + h.round(1.0)
    assert [(a.kind, a.server) for a in out] == [("release_routes", "srv2")]
    assert h.audit("srv2") == ["adopted_held", "verified", "released"]


def test_held_server_adopted_dead_fails_verification_alerts_and_is_cycled() -> None:
    h = Harness(config())
    h.core.adopt_held(["srv2"], h.now)
    h.run(119, srv2=DEAD)
    assert h.state("srv2") == "verify" and h.cycles() == []
    h.run(2)
    assert h.cycles("release_routes") == [], "never released without verifying"
    assert [a.event["event"] for a in h.actions if a.kind == "alert" and a.event] == ["recovery_failed"]
    assert h.cycles() == [("srv2", "ipmi")], "it is dead and was never cycled: no backoff to wait for"
    assert h.audit("srv2")[:4] == ["adopted_held", "failed", "retry_after_backoff", "ipmi_cycle"]


def test_dry_run_holds_nothing() -> None:
    h = Harness(config(dry_run=True))
    h.run(11, srv1=DEAD)
    assert h.state("srv1") == "cycling" and h.core.held() == []
