"""healthd's core: per-service hysteresis, restarts, flap damping, PoP-wide safety and load shedding,
and the reconciliation of what it wants announced with what BIRD announces.

Everything outside this module is an adapter behind a small Protocol (BIRD, the check runner, the
restarter, the peers' reports, the load, the state file), and time is passed in, so the decisions
here are tested with fakes and a fake clock.

Who owns a protocol's state. healthd disables a protocol when its service fails and remembers that
it did (`withdrawn`, kept in the state file across its own restarts). It only ever re-enables what
it disabled itself: a protocol found disabled by someone else (`drain.yml`, an operator's `birdc
disable`) stays down until they enable it. It disables again a protocol of a failed service that
someone (or BIRD's `configure`, which re-enables every protocol) turned back on. When BIRD restarts
or reconfigures, every operator hold is gone inside BIRD too, and healthd re-asserts both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edgepop.agents.healthd.checks import CheckResult, Probe
from edgepop.agents.healthd.config import HealthdConfig, ServiceConfig
from edgepop.agents.healthd.damping import FlapDamper
from edgepop.agents.healthd.logs import BoundLogger, get_logger

Health = Literal["up", "down"]


class RoutesUnavailable(Exception):
    """BIRD cannot be reached right now; healthd tries again at its next poll."""


class RoutesError(Exception):
    """BIRD refused one command (e.g. the protocol does not exist)."""


class Routes(Protocol):
    """The routing daemon, as healthd needs it (BIRD's control socket in production)."""

    def generation(self) -> tuple[str, str]:
        """Changes when the daemon restarts or reloads its configuration."""
        ...

    def states(self) -> dict[str, bool]:
        """Protocol name -> enabled."""
        ...

    def enable(self, name: str) -> None: ...

    def disable(self, name: str) -> None: ...


class CheckRunner(Protocol):
    def submit(self, service: str, probe: Probe) -> None: ...

    def busy(self, service: str) -> bool: ...

    def completed(self) -> list[tuple[str, CheckResult]]: ...


class Restarter(Protocol):
    def start(self, service: str, argv: list[str], timeout_s: float) -> None: ...

    def running(self, service: str) -> bool: ...

    def completed(self) -> list[tuple[str, bool, str]]:
        """Restarts that ended since the last call: (service, succeeded, detail)."""
        ...


class PeerView(Protocol):
    """What the other servers of the PoP report about themselves."""

    def configured(self) -> int:
        """How many peers healthd asks (0: no PoP-wide view at all)."""
        ...

    def service_counts(self, service: str, now: float) -> tuple[int, int]:
        """(announcing and healthy, failing) among the peers with a fresh report that run `service`."""
        ...

    def with_room(self, service: str, now: float, below: float) -> int:
        """Peers announcing `service` whose load is below `below`."""
        ...


class StateStore(Protocol):
    def load(self) -> set[str]: ...

    def save(self, withdrawn: set[str]) -> None: ...


@dataclass
class ServiceState:
    """Everything healthd knows about one service."""

    cfg: ServiceConfig
    probe: Probe
    damper: FlapDamper
    log: BoundLogger
    adopted: bool = False
    health: Health = "up"
    passes: int = 0
    fails: int = 0
    next_check: float = 0.0
    last_result: CheckResult | None = None
    held_by_safety: bool = False
    shed: bool = False
    restart_attempts: int = 0
    restart_due: bool = False
    last_restart: float | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "checks_ok": 0,
            "checks_failed": 0,
            "transitions": 0,
            "withdrawals": 0,
            "announcements": 0,
            "restarts": 0,
        }
    )

    @property
    def name(self) -> str:
        return self.cfg.name


class Agent:
    """healthd's decisions; `step(now)` does one round of them."""

    def __init__(
        self,
        config: HealthdConfig,
        *,
        routes: Routes,
        runner: CheckRunner,
        restarter: Restarter,
        peers: PeerView,
        store: StateStore,
        probe_factory: Callable[[ServiceConfig], Probe],
        load: Callable[[], float] = lambda: 0.0,
        drains: Callable[[], frozenset[str]] = frozenset,
        log: BoundLogger | None = None,
    ) -> None:
        self.routes = routes
        self.runner = runner
        self.restarter = restarter
        self.peers = peers
        self.store = store
        self.probe_factory = probe_factory
        self.load = load
        self.drains = drains
        self.drained: frozenset[str] = frozenset()
        self.log = log or get_logger()
        self.config = config
        self.services: dict[str, ServiceState] = {}
        self.withdrawn: set[str] = store.load()  # protocols healthd disabled itself
        self.bird_states: dict[str, bool] = {}
        self.bird_up = False
        self._generation: tuple[str, str] | None = None
        self._next_poll = 0.0
        self._applied: dict[str, bool] = {}
        self._reported: set[tuple[str, str]] = set()  # (kind, protocol) already logged once
        self._last_shed_change: float | None = None
        self._last_load = 0.0
        self._configure(config)

    # --- configuration -------------------------------------------------------------------------

    def _configure(self, config: HealthdConfig) -> None:
        old = self.services
        self.config = config
        self.services = {}
        for cfg in config.services:
            prev = old.get(cfg.name)
            log = self.log.bind(service=cfg.name)
            if prev is not None and prev.cfg.protocols == cfg.protocols:
                prev.cfg, prev.probe, prev.log = cfg, self.probe_factory(cfg), log
                prev.damper.settings = config.damping
                self.services[cfg.name] = prev
            else:
                self.services[cfg.name] = ServiceState(cfg, self.probe_factory(cfg), FlapDamper(config.damping), log)
        for name in sorted(set(old) - set(self.services)):
            self.log.info("service no longer managed; its routes are left as they are", service=name)
        self._applied = {}

    def reload(self, config: HealthdConfig) -> None:
        """Apply a new configuration (SIGHUP): known services keep their state, new ones are adopted."""
        self._configure(config)
        self.log.info("configuration reloaded", services=",".join(self.services))

    # --- the round -----------------------------------------------------------------------------

    def step(self, now: float) -> None:
        self._read_drains()
        for name, result in self.runner.completed():
            if name in self.services:
                self.observe(self.services[name], result, now)
        for name, ok, detail in self.restarter.completed():
            st = self.services.get(name)
            if st is not None:
                (st.log.info if ok else st.log.error)("restart finished", ok=ok, detail=detail)
        for st in self.services.values():
            if st.adopted and st.next_check <= now and not self.runner.busy(st.name):
                st.next_check = now + st.cfg.check.interval_s  # observe() shortens it after a failure
                self.runner.submit(st.name, st.probe)
            if st.adopted and st.health == "down":
                self._down_round(st, now)
        self._shed_round(now)
        self.reconcile(now)
        for st in self.services.values():
            if st.restart_due:
                st.restart_due = False
                self._restart(st, now)

    def next_wakeup(self, now: float) -> float:
        """When `step` next has something to do (checks due, BIRD poll, damping reuse)."""
        times = [self._next_poll]
        for st in self.services.values():
            if st.adopted:
                times.append(st.next_check)
            reuse = st.damper.reuse_at(now)
            if reuse is not None:
                times.append(reuse)
            if st.health == "down" and st.cfg.restart and st.last_restart is not None:
                times.append(st.last_restart + st.cfg.restart.retry_s)
        return max(now, min(times))

    def _read_drains(self) -> None:
        drained = self.drains()
        if drained == self.drained:
            return
        for st in self.services.values():
            before, after = self._is_drained(st, self.drained), self._is_drained(st, drained)
            if after and not before:
                st.log.warning("drained by the operator: withdrawn until the drain is lifted")
            elif before and not after:
                st.log.info("drain lifted: announcing again when healthy")
        self.drained = drained

    @staticmethod
    def _is_drained(st: ServiceState, drained: frozenset[str]) -> bool:
        return st.name in drained or "all" in drained

    # --- health --------------------------------------------------------------------------------

    def observe(self, st: ServiceState, result: CheckResult, now: float) -> None:
        """Feed one check result through the service's rise/fall hysteresis."""
        st.last_result = result
        st.counters["checks_ok" if result.ok else "checks_failed"] += 1
        st.log.debug("check", ok=result.ok, detail=result.detail, ms=round(result.duration_s * 1000, 1))
        if result.ok:
            st.passes, st.fails = st.passes + 1, 0
        else:
            st.passes, st.fails = 0, st.fails + 1
            if st.health == "up":
                st.log.warning("check failed", detail=result.detail, fails=st.fails, fall=st.cfg.check.fall)
        if st.health == "up" and not result.ok and st.cfg.fast_interval_s is not None:
            st.next_check = min(st.next_check, now + st.cfg.fast_interval_s)
        if st.health == "up" and st.fails >= st.cfg.check.fall:
            self._fall(st, now)
        elif st.health == "down" and st.passes >= st.cfg.check.rise:
            self._rise(st, now)

    def _fall(self, st: ServiceState, now: float) -> None:
        st.health = "down"
        st.counters["transitions"] += 1
        detail = st.last_result.detail if st.last_result else ""
        allowed, why = self._safety_allows(st, now)
        if not allowed:
            st.held_by_safety = True
            st.log.critical(
                "service failed, but the PoP-wide safety keeps its routes and skips the restart", reason=why
            )
            return
        st.log.error("service down: withdrawing its routes", detail=detail, safety=why)
        self._withdraw(st, now)

    def _withdraw(self, st: ServiceState, now: float) -> None:
        if not st.shed:
            st.damper.withdrawn(now)
        st.counters["withdrawals"] += 1
        st.restart_attempts = 0
        st.restart_due = True  # after BIRD has withdrawn the routes: a restart must not meet clients

    def _rise(self, st: ServiceState, now: float) -> None:
        st.health = "up"
        st.counters["transitions"] += 1
        st.restart_attempts = 0
        st.restart_due = False
        st.last_restart = None
        if st.held_by_safety:
            st.held_by_safety = False
            st.log.warning("service recovered while the PoP-wide safety held its routes")
            return
        if st.damper.suppressed(now):
            st.log.warning(
                "service up, but flap damping keeps it withdrawn",
                penalty=round(st.damper.penalty(now)),
                reuse=st.damper.settings.reuse,
            )
        else:
            st.log.info("service up: announcing its routes", passes=st.passes)

    def _down_round(self, st: ServiceState, now: float) -> None:
        allowed, why = self._safety_allows(st, now)
        if st.held_by_safety:
            if allowed:
                st.held_by_safety = False
                st.log.error("PoP-wide safety released: withdrawing the failed service", safety=why)
                self._withdraw(st, now)
            return
        if not allowed:
            # Servers that fail together decide on reports up to a peer interval old, so several can
            # withdraw at once before any sees the others fail. Each one judges again every round,
            # and announces again once too many fail: the PoP is refilled within a peer interval.
            st.held_by_safety = True
            st.log.critical("too many servers fail the service: announcing it again despite the failure", reason=why)
            return
        restart = st.cfg.restart
        if (
            restart is not None
            and st.last_restart is not None
            and st.fails > 0
            and st.restart_attempts < restart.max_attempts
            and now - st.last_restart >= restart.retry_s
        ):
            self._restart(st, now)

    def _restart(self, st: ServiceState, now: float) -> None:
        restart = st.cfg.restart
        if restart is None:
            return
        if self.restarter.running(st.name):
            return
        st.restart_attempts += 1
        st.last_restart = now
        st.counters["restarts"] += 1
        st.log.info("restarting", command=" ".join(restart.command), attempt=st.restart_attempts)
        self.restarter.start(st.name, list(restart.command), restart.timeout_s)

    # --- PoP-wide safety and load shedding -----------------------------------------------------

    def _safety_allows(self, st: ServiceState, now: float) -> tuple[bool, str]:
        safety = self.config.safety
        if not safety.enabled or self.peers.configured() == 0:
            return True, "off"
        up, failing = self.peers.service_counts(st.name, now)
        known = up + failing
        if known == 0:
            return True, "no fresh peer report: cannot judge"
        total, failing_here = known + 1, failing + 1
        if up < safety.floor:
            return False, f"only {up} other server(s) announce it, floor is {safety.floor}"
        if failing_here / total > safety.max_failing_fraction:
            return False, f"{failing_here} of {total} known servers fail it: a shared cause, not this server"
        return True, f"{up} of {known} peers announce it"

    def _shed_round(self, now: float) -> None:
        shedding = self.config.load_shedding
        shed = [st for st in self.services.values() if st.shed]
        if not shedding.enabled:
            for st in shed:
                st.shed = False
                st.log.info("load shedding off: announcing again")
            return
        load = self._last_load = self.load()
        # never leave a service shed onto peers that have no room any more
        for st in shed:
            if self.peers.with_room(st.name, now, shedding.peer_room) < max(1, self.config.safety.floor):
                st.shed = False
                self._last_shed_change = now
                st.log.warning("taking shed load back: no peer has room", load=round(load, 2))
        if self._last_shed_change is not None and now - self._last_shed_change < shedding.step_s:
            return
        if load > shedding.high:
            for st in self.services.values():
                if not st.cfg.shed or st.shed or st.health != "up" or st.damper.suppressed(now):
                    continue
                if self.peers.with_room(st.name, now, shedding.peer_room) >= max(1, self.config.safety.floor):
                    st.shed = True
                    self._last_shed_change = now
                    st.log.warning("overloaded: shedding the service to peers with room", load=round(load, 2))
                    return
        elif load < shedding.low:
            for st in reversed(list(self.services.values())):
                if st.shed:
                    st.shed = False
                    self._last_shed_change = now
                    st.log.info("load is down again: taking the service back", load=round(load, 2))
                    return

    # --- BIRD ----------------------------------------------------------------------------------

    def wanted(self, st: ServiceState, now: float) -> bool:
        """Whether the service's routes should be announced now."""
        if st.shed or self._is_drained(st, self.drained):
            return False
        if st.health == "down":
            return st.held_by_safety
        return not st.damper.suppressed(now)

    def _once(self, kind: str, protocol: str) -> bool:
        if (kind, protocol) in self._reported:
            return False
        self._reported.add((kind, protocol))
        return True

    def reconcile(self, now: float, *, force: bool = False) -> None:
        """Bring BIRD in line with what healthd wants (when that changed, or at each poll)."""
        want = {p: self.wanted(st, now) for st in self.services.values() for p in st.cfg.protocols}
        if not force and want == self._applied and now < self._next_poll:
            return
        self._next_poll = now + self.config.bird.poll_interval_s
        try:
            generation = self.routes.generation()
            self.bird_states = self.routes.states()
        except RoutesUnavailable as exc:
            if self._once("unavailable", ""):
                self.log.error("BIRD unavailable; will retry", detail=str(exc))
            self.bird_up = False
            return
        if not self.bird_up:
            self.log.info("BIRD reachable", generation=" / ".join(generation))
            self._reported.discard(("unavailable", ""))
        self.bird_up = True
        assert_all = self._generation is not None and generation != self._generation
        if assert_all:
            self.log.warning("BIRD restarted or reconfigured: re-asserting every service's routes")
            self._reported = {r for r in self._reported if r[0] != "held"}
        self._generation = generation
        for st in self.services.values():
            if not st.adopted:
                self._adopt(st, now)
        want = {p: self.wanted(st, now) for st in self.services.values() for p in st.cfg.protocols}
        for st in self.services.values():
            for proto in st.cfg.protocols:
                self._apply(st, proto, want[proto], assert_all)
        self._applied = want

    def _adopt(self, st: ServiceState, now: float) -> None:
        """A service healthd starts managing (at its start, or added by a reload): take over the routes
        as BIRD has them, so an agent restart moves no traffic."""
        present = [p for p in st.cfg.protocols if p in self.bird_states]
        ours_down = [p for p in present if p in self.withdrawn and not self.bird_states[p]]
        st.adopted = True
        st.next_check = now
        if ours_down:
            st.health = "down"
            st.last_restart = now  # the previous instance restarted it; retry only after retry_s
            st.restart_attempts = 1
            st.log.info(
                "adopted as withdrawn (healthd withdrew it before): waiting for rise", protocols=",".join(ours_down)
            )
        else:
            st.health = "up"
            st.log.info("adopted as announced", protocols=",".join(present))
        for proto in present:
            if self.bird_states[proto] and proto in self.withdrawn:
                self._forget(proto)  # BIRD restarted since: the old withdrawal is gone

    def _forget(self, proto: str) -> None:
        self.withdrawn.discard(proto)
        self.store.save(self.withdrawn)

    def _apply(self, st: ServiceState, proto: str, want_up: bool, assert_all: bool) -> None:
        enabled = self.bird_states.get(proto)
        log = st.log.bind(protocol=proto)
        if enabled is None:
            if self._once("missing", proto):
                log.error("BIRD has no such protocol: nothing to announce or withdraw")
            return
        self._reported.discard(("missing", proto))
        try:
            if not want_up and enabled:
                self.withdrawn.add(proto)
                self.store.save(self.withdrawn)  # before BIRD acts: a crash leaves it ours
                self.routes.disable(proto)
                self.bird_states[proto] = False
                log.info("withdrawn")
            elif want_up and not enabled:
                if proto in self.withdrawn or assert_all:
                    self.routes.enable(proto)
                    self.bird_states[proto] = True
                    self._forget(proto)
                    st.counters["announcements"] += 1
                    log.info("announced")
                elif self._once("held", proto):
                    log.warning("disabled by someone else (a drain?): left down until they enable it")
            elif not want_up and not enabled and proto not in self.withdrawn and self._is_drained(st, self.drained):
                # disabled by the drain itself (drain.yml also tells BIRD): the agent takes it over,
                # so it announces the service again once the drain is lifted
                self.withdrawn.add(proto)
                self.store.save(self.withdrawn)
            elif want_up and enabled:
                self._reported.discard(("held", proto))
                if proto in self.withdrawn:
                    self._forget(proto)
        except RoutesError as exc:
            log.error("BIRD refused", detail=str(exc))
        except RoutesUnavailable as exc:
            self.bird_up = False
            log.error("BIRD unavailable while changing routes; will retry", detail=str(exc))

    # --- shutdown and status -------------------------------------------------------------------

    def withdraw_all(self) -> bool:
        """Withdraw every route healthd manages that is announced (SIGTERM: a drain). False if BIRD
        could not be told."""
        try:
            self.bird_states = self.routes.states()
        except RoutesUnavailable as exc:
            self.log.error("cannot withdraw on exit: BIRD unavailable", detail=str(exc))
            return False
        ok = True
        for st in self.services.values():
            for proto in st.cfg.protocols:
                if not self.bird_states.get(proto):
                    continue
                self.withdrawn.add(proto)
                self.store.save(self.withdrawn)
                try:
                    self.routes.disable(proto)
                    st.log.info("withdrawn on exit", protocol=proto)
                except (RoutesError, RoutesUnavailable) as exc:
                    ok = False
                    st.log.error("withdrawal on exit failed", protocol=proto, detail=str(exc))
        return ok

    def snapshot(self, now: float) -> dict[str, Any]:
        """This server's view, as the status endpoint serves it to peers and to Prometheus."""
        services: dict[str, Any] = {}
        for st in self.services.values():
            result = st.last_result
            services[st.name] = {
                "health": st.health,
                "wanted": self.wanted(st, now),
                "announced": all(self.bird_states.get(p, False) for p in st.cfg.protocols),
                "held_by_safety": st.held_by_safety,
                "shed": st.shed,
                "drained": self._is_drained(st, self.drained),
                "suppressed": st.damper.suppressed(now),
                "penalty": round(st.damper.penalty(now), 1),
                "protocols": {p: self.bird_states.get(p) for p in st.cfg.protocols},
                "last_check": None
                if result is None
                else {"ok": result.ok, "detail": result.detail, "duration_s": round(result.duration_s, 6)},
                **st.counters,
            }
        return {
            "hostname": self.config.hostname,
            "bird_up": self.bird_up,
            "load": round(self._last_load if self.config.load_shedding.enabled else self.load(), 3),
            "services": services,
        }
