"""healthd's state machine with a fake clock, fake checks, a fake BIRD and a fake restarter."""

from __future__ import annotations

from typing import Any

import pytest

from edgepop.agents.healthd.checks import CheckResult, Probe
from edgepop.agents.healthd.config import HealthdConfig, ServiceConfig, parse_config
from edgepop.agents.healthd.core import Agent, RoutesUnavailable

HTTP = ["static_http_v4", "static_http_v6"]
DNS = ["static_dns_v4"]


class FakeBird:
    """core.Routes: protocol states, a generation, and every command in one shared event log."""

    def __init__(self, events: list[str], protocols: list[str]) -> None:
        self.events = events
        self.enabled = dict.fromkeys(protocols, True)
        self.gen = ("boot-1", "conf-1")
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise RoutesUnavailable("connection refused")

    def generation(self) -> tuple[str, str]:
        self._check()
        return self.gen

    def states(self) -> dict[str, bool]:
        self._check()
        return dict(self.enabled)

    def enable(self, name: str) -> None:
        self._check()
        self.events.append(f"enable {name}")
        self.enabled[name] = True

    def disable(self, name: str) -> None:
        self._check()
        self.events.append(f"disable {name}")
        self.enabled[name] = False

    def restart(self) -> None:
        """BIRD restarted: every protocol from its config is enabled again, a new boot time."""
        self.enabled = dict.fromkeys(self.enabled, True)
        self.gen = (self.gen[0] + "'", self.gen[1])

    def reconfigure(self) -> None:
        """`birdc configure`: BIRD re-enables protocols disabled from the CLI."""
        self.enabled = dict.fromkeys(self.enabled, True)
        self.gen = (self.gen[0], self.gen[1] + "'")


class InlineChecks:
    """core.CheckRunner that runs a probe at once (the result is seen by the next step)."""

    def __init__(self) -> None:
        self._done: list[tuple[str, CheckResult]] = []

    def submit(self, service: str, probe: Probe) -> None:
        self._done.append((service, probe()))

    def busy(self, service: str) -> bool:
        return False

    def completed(self) -> list[tuple[str, CheckResult]]:
        done, self._done = self._done, []
        return done


class FakeRestarter:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def start(self, service: str, argv: list[str], timeout_s: float) -> None:
        self.events.append(f"restart {service}: {' '.join(argv)}")

    def running(self, service: str) -> bool:
        return False

    def completed(self) -> list[tuple[str, bool, str]]:
        return []


class FakePeers:
    def __init__(self, count: int = 0) -> None:
        self.count = count
        self.reports: dict[str, tuple[int, int]] = {}
        self.room: dict[str, int] = {}

    def configured(self) -> int:
        return self.count

    def service_counts(self, service: str, now: float) -> tuple[int, int]:
        return self.reports.get(service, (0, 0))

    def with_room(self, service: str, now: float, below: float) -> int:
        return self.room.get(service, 0)


class MemoryStore:
    def __init__(self, withdrawn: set[str] | None = None) -> None:
        self.withdrawn = set(withdrawn or ())

    def load(self) -> set[str]:
        return set(self.withdrawn)

    def save(self, withdrawn: set[str]) -> None:
        self.withdrawn = set(withdrawn)


def config(**overrides: Any) -> HealthdConfig:
    check = {"type": "exec", "command": ["true"], "interval_s": 1.0, "timeout_s": 0.5, "rise": 3, "fall": 2}
    data: dict[str, Any] = {
        "hostname": "srv1",
        "services": [
            {
                "name": "http",
                "protocols": HTTP,
                "address": "203.0.113.100",
                "check": check,
                "restart": {"command": ["systemctl", "restart", "nginx.service"], "retry_s": 10, "max_attempts": 2},
            },
            {"name": "dns", "protocols": DNS, "address": "203.0.113.101", "check": check},
        ],
    }
    data.update(overrides)
    return parse_config(data, "test.yml")


class Harness:
    """An agent plus its fakes; `healthy[service]` decides what the next checks return."""

    def __init__(self, cfg: HealthdConfig | None = None, *, store: MemoryStore | None = None, peers: int = 0):
        self.events: list[str] = []
        self.cfg = cfg or config()
        self.bird = FakeBird(self.events, [p for s in self.cfg.services for p in s.protocols])
        self.healthy = {s.name: True for s in self.cfg.services}
        self.store = store or MemoryStore()
        self.peers = FakePeers(peers)
        self.load = 0.0
        self.drained: frozenset[str] = frozenset()
        self.now = 1000.0
        self.agent = self.new_agent()

    def probe(self, svc: ServiceConfig) -> Probe:
        return lambda: CheckResult(self.healthy[svc.name], "ok" if self.healthy[svc.name] else "refused")

    def new_agent(self) -> Agent:
        return Agent(
            self.cfg,
            routes=self.bird,
            runner=InlineChecks(),
            restarter=FakeRestarter(self.events),
            peers=self.peers,
            store=self.store,
            probe_factory=self.probe,
            load=lambda: self.load,
            drains=lambda: self.drained,
        )

    def run(self, seconds: float, dt: float = 0.25) -> None:
        end = self.now + seconds
        while self.now < end:
            self.agent.step(self.now)
            self.now += dt

    def state(self, service: str) -> Any:
        return self.agent.services[service]


def test_fall_withdraws_only_that_service_then_restarts_it() -> None:
    h = Harness()
    h.run(3)
    assert h.events == [] and all(h.bird.enabled.values())
    h.healthy["http"] = False
    h.run(1.1)  # one failed check: fall is 2
    assert h.events == [] and h.bird.enabled["static_http_v4"]
    h.run(1.0)  # the second
    assert h.events == [
        "disable static_http_v4",
        "disable static_http_v6",
        "restart http: systemctl restart nginx.service",  # only once the routes are gone
    ]
    assert h.bird.enabled == {"static_http_v4": False, "static_http_v6": False, "static_dns_v4": True}
    assert h.store.withdrawn == set(HTTP)


def test_rise_announces_again_after_enough_passes() -> None:
    h = Harness()
    h.healthy["http"] = False
    h.run(3)
    h.events.clear()
    h.healthy["http"] = True
    h.run(2.1)  # two passes: rise is 3
    assert h.events == []
    h.run(1.0)
    assert h.events == ["enable static_http_v4", "enable static_http_v6"]
    assert h.store.withdrawn == set()
    assert h.state("http").health == "up"


def test_a_flapping_check_below_fall_moves_nothing() -> None:
    h = Harness()
    for _ in range(6):
        h.healthy["http"] = not h.healthy["http"]
        h.run(1.0)
    assert h.events == []


def test_restart_is_retried_while_down_then_given_up() -> None:
    h = Harness()
    h.healthy["http"] = False
    h.run(60)
    restarts = [e for e in h.events if e.startswith("restart")]
    assert len(restarts) == 2  # max_attempts
    assert h.state("http").health == "down"


def test_flap_damping_keeps_a_flapping_service_withdrawn_until_the_penalty_decays() -> None:
    h = Harness(config(damping={"penalty": 1000, "suppress": 2500, "reuse": 750, "half_life_s": 60}))
    for _ in range(3):
        h.healthy["http"] = False
        h.run(3)
        h.healthy["http"] = True
        h.run(4)
    # the third withdrawal crossed `suppress`: healthy, yet not announced
    st = h.state("http")
    assert st.health == "up" and st.damper.suppressed(h.now)
    assert h.bird.enabled["static_http_v4"] is False
    assert h.events.count("disable static_http_v4") == 3 and h.events.count("enable static_http_v4") == 2
    reuse_at = st.damper.reuse_at(h.now)
    assert reuse_at is not None and 60 < reuse_at - h.now < 200
    h.run(reuse_at - h.now - 1, dt=1.0)
    assert h.bird.enabled["static_http_v4"] is False
    h.run(3, dt=1.0)
    assert h.bird.enabled["static_http_v4"] is True


def test_damping_off_reannounces_every_time() -> None:
    h = Harness(config(damping={"enabled": False}))
    for _ in range(4):
        h.healthy["http"] = False
        h.run(3)
        h.healthy["http"] = True
        h.run(4)
    assert h.events.count("enable static_http_v4") == 4


def test_agent_restart_adopts_announced_routes_without_touching_them() -> None:
    h = Harness()
    h.run(2)
    h.agent = h.new_agent()  # healthd restarted (crash, or SIGUSR1 re-exec)
    h.healthy["http"] = False  # and its first check fails: fall still applies
    h.run(1.1)
    assert h.events == []
    h.run(1.0)
    assert h.events[:2] == ["disable static_http_v4", "disable static_http_v6"]


def test_agent_restart_after_its_own_withdrawal_waits_for_rise() -> None:
    h = Harness()
    h.healthy["http"] = False
    h.run(3)
    h.events.clear()
    h.healthy["http"] = True
    h.agent = h.new_agent()
    h.run(2.1)
    assert h.events == [] and h.state("http").health == "down"
    h.run(1.0)
    assert h.events == ["enable static_http_v4", "enable static_http_v6"]


def test_a_drain_by_someone_else_is_left_alone() -> None:
    h = Harness()
    h.run(2)
    h.bird.enabled["static_http_v4"] = False  # `birdc disable`, drain.yml
    h.run(5)
    assert h.events == [] and h.bird.enabled["static_http_v4"] is False
    # the service fails and recovers meanwhile: healthd still does not undo the drain
    h.healthy["http"] = False
    h.run(3)
    h.healthy["http"] = True
    h.run(4)
    assert "enable static_http_v4" not in h.events and h.bird.enabled["static_http_v4"] is False
    assert h.bird.enabled["static_http_v6"] is True  # its own withdrawal it took back
    # nor does a restarted agent, which finds it down without having withdrawn it
    h.events.clear()
    h.agent = h.new_agent()
    h.run(5)
    assert h.events == []


def test_failed_service_reenabled_by_bird_configure_is_withdrawn_again() -> None:
    h = Harness()
    h.healthy["http"] = False
    h.run(3)
    h.events.clear()
    h.bird.reconfigure()
    h.run(1)
    assert h.events == ["disable static_http_v4", "disable static_http_v6"]


def test_bird_restart_and_outage_are_survived_and_state_reasserted() -> None:
    h = Harness()
    h.run(2)
    h.bird.enabled["static_dns_v4"] = False  # an operator's drain, which a BIRD restart wipes
    h.healthy["http"] = False
    h.run(3)
    h.events.clear()
    h.bird.available = False
    h.run(3)  # no crash while BIRD is gone; checks go on
    assert h.events == []
    h.bird.restart()
    h.bird.available = True
    h.run(1)
    assert sorted(h.events) == ["disable static_http_v4", "disable static_http_v6"]
    assert h.bird.enabled["static_dns_v4"] is True


def test_withdraw_all_on_exit_records_what_it_withdrew() -> None:
    h = Harness()
    h.run(2)
    h.bird.enabled["static_dns_v4"] = False  # already down: no command for it
    assert h.agent.withdraw_all() is True
    assert h.events == ["disable static_http_v4", "disable static_http_v6"]
    assert h.store.withdrawn == set(HTTP)
    # the next instance takes them back after rise passes, not at once
    h.events.clear()
    h.agent = h.new_agent()
    h.run(2.1)
    assert h.events == []
    h.run(1.0)
    assert h.events == ["enable static_http_v4", "enable static_http_v6"]


def test_withdraw_all_reports_failure_when_bird_is_gone() -> None:
    h = Harness()
    h.run(1)
    h.bird.available = False
    assert h.agent.withdraw_all() is False


def test_safety_keeps_routes_when_most_of_the_pop_fails() -> None:
    h = Harness(peers=3)
    h.peers.reports["http"] = (1, 2)  # 1 peer announces, 2 fail too: 3 of 4 fail
    h.run(1)
    h.healthy["http"] = False
    h.run(5)
    assert h.events == []  # no withdrawal, no restart
    assert h.state("http").held_by_safety
    h.peers.reports["http"] = (3, 0)  # the others recovered: it is this server after all
    h.run(0.5)
    assert h.events == [
        "disable static_http_v4",
        "disable static_http_v6",
        "restart http: systemctl restart nginx.service",
    ]


def test_safety_announces_again_when_the_others_fail_after_it_withdrew() -> None:
    # peers reported healthy when this server withdrew; then their reports show them failing too:
    # a shared cause after all, and the PoP must not be left empty by servers that acted at once
    h = Harness(peers=3)
    h.peers.reports["http"] = (3, 0)
    h.run(1)
    h.healthy["http"] = False
    h.run(3)
    assert h.events[:2] == ["disable static_http_v4", "disable static_http_v6"]
    h.events.clear()
    h.peers.reports["http"] = (1, 2)
    h.run(1)
    assert h.events == ["enable static_http_v4", "enable static_http_v6"]
    assert h.state("http").held_by_safety
    assert h.agent.snapshot(h.now)["services"]["http"]["announced"]
    h.peers.reports["http"] = (3, 0)  # the others recovered: withdrawn again
    h.run(1)
    assert h.events[2:4] == ["disable static_http_v4", "disable static_http_v6"]


def test_safety_floor_and_a_blind_safety() -> None:
    h = Harness(config(safety={"floor": 2}), peers=3)
    h.peers.reports["http"] = (1, 0)  # only one other server announces: below the floor
    h.run(1)
    h.healthy["http"] = False
    h.run(3)
    assert h.events == []
    h2 = Harness(peers=3)  # no peer report at all: the safety cannot judge and does not block
    h2.run(1)
    h2.healthy["http"] = False
    h2.run(3)
    assert "disable static_http_v4" in h2.events


def test_load_shedding_withdraws_and_restores_with_hysteresis() -> None:
    cfg = config(load_shedding={"enabled": True, "high": 0.9, "low": 0.6, "peer_room": 0.7, "step_s": 5})
    services = [s.model_copy(update={"shed": s.name == "http"}) for s in cfg.services]
    h = Harness(cfg.model_copy(update={"services": services}), peers=3)
    h.peers.room["http"] = 2
    h.run(1)
    h.load = 1.5
    h.run(1)
    assert h.events == ["disable static_http_v4", "disable static_http_v6"]  # no restart: it is healthy
    h.load = 0.75  # between low and high: stays shed
    h.run(10)
    assert len(h.events) == 2
    h.load = 0.3
    h.run(1)
    assert h.events[2:] == ["enable static_http_v4", "enable static_http_v6"]
    assert h.state("http").damper.penalty(h.now) == 0.0  # shedding is not a flap


def test_shedding_never_lands_on_peers_without_room() -> None:
    cfg = config(load_shedding={"enabled": True, "step_s": 1})
    services = [s.model_copy(update={"shed": True}) for s in cfg.services]
    h = Harness(cfg.model_copy(update={"services": services}), peers=3)
    h.load = 5.0
    h.run(5)
    assert h.events == []


def test_reload_keeps_state_and_adopts_new_services() -> None:
    h = Harness()
    h.healthy["http"] = False
    h.run(3)
    h.events.clear()
    cfg = config()
    only_http = cfg.model_copy(update={"services": [cfg.services[0]]})
    h.agent.reload(only_http)
    h.run(2)
    assert h.events == [] and h.state("http").health == "down"
    assert "dns" not in h.agent.services
    h.agent.reload(cfg)
    h.run(1)
    assert h.agent.services["dns"].adopted and h.events == []


def test_status_snapshot_reports_what_peers_need() -> None:
    h = Harness()
    h.healthy["dns"] = False
    h.run(3)
    snap = h.agent.snapshot(h.now)
    assert snap["hostname"] == "srv1" and snap["bird_up"] is True
    assert snap["services"]["http"]["health"] == "up" and snap["services"]["http"]["announced"] is True
    assert snap["services"]["dns"]["health"] == "down" and snap["services"]["dns"]["announced"] is False
    assert snap["services"]["dns"]["withdrawals"] == 1


@pytest.mark.parametrize("fast", [None, 0.1])
def test_fast_interval_shortens_detection(fast: float | None) -> None:
    cfg = config()
    services = [s.model_copy(update={"fast_interval_s": fast}) for s in cfg.services]
    h = Harness(cfg.model_copy(update={"services": services}))
    h.run(1.2, dt=0.05)
    h.healthy["http"] = False
    start = h.now
    while h.bird.enabled["static_http_v4"]:
        h.run(0.05, dt=0.05)
    took = h.now - start
    assert (took < 1.2) if fast else (took > 1.5)


def test_after_a_bird_restart_what_it_wants_up_is_brought_up() -> None:
    h = Harness()
    h.run(2)
    h.bird.restart()
    h.bird.enabled["static_dns_v4"] = False  # came back disabled (`disabled;` in its config)
    h.run(1)
    assert h.events == ["enable static_dns_v4"]
    # the same state without a restart is someone else's drain, and stays
    h.events.clear()
    h.bird.enabled["static_dns_v4"] = False
    h.run(2)
    assert h.events == []


def test_a_drain_withdraws_and_lifting_it_announces_without_fighting_the_agent() -> None:
    h = Harness()
    h.run(1)
    h.drained = frozenset({"http"})
    h.run(0.5)
    assert h.events == ["disable static_http_v4", "disable static_http_v6"]  # no restart: it is healthy
    assert h.agent.snapshot(h.now)["services"]["http"]["drained"]
    h.run(5)
    assert len(h.events) == 2, "a drained service stays withdrawn while healthy"
    h.drained = frozenset()
    h.run(0.5)
    assert h.events[2:] == ["enable static_http_v4", "enable static_http_v6"]


def test_a_drain_of_a_protocol_already_down_is_taken_over_and_lifted() -> None:
    # drain.yml disables in BIRD itself too (so it works without the agent); and the agent may have
    # withdrawn the service for a failure just before: either way the lift must announce it again
    h = Harness()
    h.run(1)
    h.healthy["http"] = False
    h.run(2)
    assert h.bird.enabled["static_http_v4"] is False
    h.bird.enabled["static_dns_v4"] = False  # drain.yml's own `birdc disable`
    h.drained = frozenset({"all"})
    h.healthy["http"] = True
    h.run(5)
    assert not any(h.bird.enabled.values()), "healthy again, but drained"
    h.events.clear()
    h.drained = frozenset()
    h.run(1.5)
    assert all(h.bird.enabled.values()), h.events


def test_file_drains_reads_words_and_keeps_the_last_answer_on_errors(tmp_path: Any) -> None:
    from edgepop.agents.healthd.adapters import file_drains

    path = tmp_path / "drain"
    read = file_drains(str(path))
    assert read() == frozenset()
    path.write_text("# drained by drain.yml\nhttp\ndns # and this\n")
    assert read() == {"http", "dns"}
    path.unlink()
    assert read() == frozenset()
