"""The decision core: one state machine per server, a PoP-wide limiter and per-server backoff.

Nothing here touches the network or the clock: the daemon feeds in probe observations and the
results of power actions, each stamped with a time from its clock, and carries out the actions
`step()` returns. So every rule is a unit test with an exact clock.

    healthy ──a signal fails──▶ suspect ──≥ min_signals failing past grace──▶ dead
    dead ──limiter and backoff allow──▶ cycling(ipmi) ──ok──▶ wait_back ──answers──▶ verify ──green──▶ healthy
                                           │ refused/unreachable   │ timeout
                                           ▼                       ▼
                                        cycling(pdu) ──ok──▶ wait_back ──timeout──▶ failed (one alert)
    failed ──backoff over, still dead──▶ dead (a new attempt) · failed ──answers and green──▶ verify

A single missed probe never kills: a signal counts only once it has failed without a single pass
for longer than `grace_s`, and a death needs `min_signals` (two) independent signals at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgepop.agents.recoveryd.config import RecoverydConfig
from edgepop.model.schema import natural_key

# The death signals: the router's BGP sessions to the server, the server's kernel answering TCP,
# and its healthd answering /status. `green` (every healthd service up) only gates the release.
SIGNALS = ("bgp", "reach", "healthd")

State = Literal["healthy", "suspect", "dead", "cycling", "wait_back", "verify", "failed"]
Method = Literal["ipmi", "pdu"]
ActionKind = Literal["hold_routes", "release_routes", "power_cycle", "alert"]

IN_FLIGHT: tuple[State, ...] = ("cycling", "wait_back")
DOWN: tuple[State, ...] = ("dead", "cycling", "wait_back", "verify", "failed")
# from the first power action until the release the router's sessions are held down on purpose
HELD: tuple[State, ...] = ("cycling", "wait_back", "verify", "failed")


@dataclass(frozen=True)
class Observation:
    """One probe round for one server. None: the probe is not configured (or not applicable)."""

    bgp: bool | None = None
    reach: bool | None = None
    healthd: bool | None = None
    green: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"bgp": self.bgp, "reach": self.reach, "healthd": self.healthd, "green": self.green}


@dataclass(frozen=True)
class Action:
    """What the daemon must do now. `power_cycle` carries the method; `alert` the event."""

    kind: ActionKind
    server: str
    reason: str
    method: Method | None = None
    event: dict[str, Any] | None = None


@dataclass
class ServerState:
    name: str
    methods: list[Method]
    state: State = "healthy"
    since: float = 0.0
    fail_since: dict[str, float] = field(default_factory=dict)
    last: Observation = field(default_factory=Observation)
    method: Method | None = None
    deadline: float | None = None
    verify_ok: int = 0
    cycles: int = 0  # cycles since the backoff was last reset
    next_allowed: float = float("-inf")
    healthy_since: float = 0.0
    held: str | None = None
    attempts_total: int = 0
    failures_total: int = 0
    recoveries_total: int = 0


Audit = Callable[[dict[str, Any]], None]


class Recovery:
    def __init__(self, config: RecoverydConfig, audit: Audit, now: float) -> None:
        self.config = config
        self.audit_sink = audit
        self.servers: dict[str, ServerState] = {}
        for srv in sorted(config.servers, key=lambda s: natural_key(s.name)):
            methods: list[Method] = []
            if srv.ipmi is not None:
                methods.append("ipmi")
            if srv.pdu is not None:
                methods.append("pdu")
            self.servers[srv.name] = ServerState(srv.name, methods, since=now, healthy_since=now)
        self.pop_hold_alerted = False
        self.pending: list[Action] = []

    def adopt_held(self, names: list[str], now: float) -> None:
        """Servers whose router sessions a previous instance held: they must verify before release,
        like a server that has just come back (a dead one fails verification and is alerted on)."""
        for name in names:
            st = self.servers.get(name)
            if st is None:
                continue
            self._enter(st, "verify", now)
            st.deadline = now + self.config.decision.verify_timeout_s
            self._audit(st, "adopted_held", "its sessions were held by the previous recoveryd")

    def held(self) -> list[str]:
        """Servers whose router sessions recoveryd holds now."""
        if not self.config.router.hold_routes or self.config.dry_run:
            return []
        return [name for name, st in self.servers.items() if st.state in HELD]

    # --- inputs ----------------------------------------------------------------------------------

    def observe(self, now: float, server: str, obs: Observation) -> None:
        """Record one probe round. A pass clears a signal's failure streak at once."""
        st = self.servers[server]
        st.last = obs
        for sig in SIGNALS:
            value = getattr(obs, sig)
            if sig == "bgp" and st.state in HELD:
                value = None  # the sessions are down because recoveryd holds them
            if value is False:
                st.fail_since.setdefault(sig, now)
            else:
                st.fail_since.pop(sig, None)
        if st.state in ("verify", "failed"):
            if obs.reach and obs.green:
                st.verify_ok += 1
            else:
                st.verify_ok = 0

    def power_result(self, now: float, server: str, method: Method, ok: bool, detail: str) -> None:
        """The outcome of a `power_cycle` action the daemon carried out."""
        st = self.servers[server]
        if st.state != "cycling" or st.method != method:
            return
        if ok:
            self._audit(st, f"{method}_cycled", detail)
            self._enter(st, "wait_back", now)
            st.deadline = now + self.config.decision.back_timeout_s
        else:
            self._audit(st, f"{method}_failed", detail)
            self._next_method(st, now, f"{method} cycle failed: {detail}")

    # --- the round -------------------------------------------------------------------------------

    def failing(self, st: ServerState, now: float) -> list[str]:
        """Signals failing without a pass for longer than the grace period."""
        grace = self.config.decision.grace_s
        return [sig for sig in SIGNALS if sig in st.fail_since and now - st.fail_since[sig] >= grace]

    def step(self, now: float) -> list[Action]:
        # every server's state first, then the power decisions: the limiter must see all the servers
        # that died in this round, whatever their order
        for st in self.servers.values():
            self._step_server(st, now)
        for st in self.servers.values():
            if st.state == "dead":
                self._try_start(st, now)
        actions, self.pending = self.pending, []
        return actions

    def _step_server(self, st: ServerState, now: float) -> None:
        dec = self.config.decision
        if st.state in ("healthy", "suspect"):
            failing = self.failing(st, now)
            if len(failing) >= dec.min_signals:
                self._enter(st, "dead", now)
                self._audit(st, "declared_dead", f"failing past {dec.grace_s:g} s grace: {', '.join(failing)}")
            elif st.fail_since and st.state == "healthy":
                self._enter(st, "suspect", now)
            elif not st.fail_since and st.state == "suspect":
                self._enter(st, "healthy", now)
            if st.state == "healthy" and st.cycles and now - st.healthy_since >= self.config.backoff.reset_after_s:
                st.cycles = 0
                st.next_allowed = float("-inf")
        if st.state == "dead":
            if not st.fail_since:
                self._audit(st, "came_back", "every signal passes again without a power action")
                self._enter(st, "healthy", now)
                return
        elif st.state == "wait_back":
            if st.last.reach:
                self._audit(st, "answers", f"after the {st.method} cycle")
                self._enter(st, "verify", now)
                st.deadline = now + dec.verify_timeout_s
            elif st.deadline is not None and now >= st.deadline:
                self._audit(
                    st, f"{st.method}_timeout", f"no answer {dec.back_timeout_s:g} s after the {st.method} cycle"
                )
                self._next_method(st, now, f"not back {dec.back_timeout_s:g} s after the {st.method} cycle")
        if st.state in ("verify", "failed") and st.verify_ok >= dec.verify_passes:
            self._audit(st, "verified", f"answers and healthd green for {st.verify_ok} rounds")
            self._release(st, now)
        elif st.state == "verify" and st.deadline is not None and now >= st.deadline:
            self._fail(st, now, f"answers but did not verify green within {dec.verify_timeout_s:g} s")
        elif st.state == "failed" and now >= st.next_allowed:
            failing = self.failing(st, now)
            if len(failing) >= dec.min_signals:
                self._audit(st, "retry_after_backoff", f"still failing: {', '.join(failing)}")
                self._enter(st, "dead", now)

    def _try_start(self, st: ServerState, now: float) -> None:
        limits = self.config.limits
        total = len(self.servers)
        down = sum(1 for s in self.servers.values() if s.state in DOWN)
        in_flight = sum(1 for s in self.servers.values() if s.state in IN_FLIGHT)
        if down > limits.max_down_fraction * total or down >= total:
            self._hold(st, "pop_wide", f"{down} of {total} servers down: more than {limits.max_down_fraction:g}")
            if not self.pop_hold_alerted:
                self.pop_hold_alerted = True
                self._alert(st, "pop_wide_hold", f"{down} of {total} servers down at once; no power action taken")
            return
        if down <= limits.max_down_fraction * total / 2:
            self.pop_hold_alerted = False
        if now < st.next_allowed:
            self._hold(st, "backoff", f"next cycle allowed in {st.next_allowed - now:.0f} s")
            return
        if in_flight >= limits.max_in_flight:
            self._hold(st, "rate_limit", f"{in_flight} cycles in flight (max {limits.max_in_flight})")
            return
        st.held = None
        wait = min(self.config.backoff.max_s, self.config.backoff.initial_s * self.config.backoff.factor**st.cycles)
        st.cycles += 1
        st.next_allowed = now + wait
        if not st.methods:
            self._fail(st, now, "dead, and neither IPMI nor a PDU outlet is configured")
            return
        st.attempts_total += 1
        reason = f"dead: {', '.join(self.failing(st, now)) or 'retry'} failing"
        if self.config.router.hold_routes:
            self.pending.append(Action("hold_routes", st.name, reason))
        self._start_method(st, st.methods[0], now, reason)

    def _start_method(self, st: ServerState, method: Method, now: float, reason: str) -> None:
        self._enter(st, "cycling", now)
        st.method = method
        st.deadline = None
        self._audit(st, f"{method}_cycle", reason)
        self.pending.append(Action("power_cycle", st.name, reason, method=method))

    def _next_method(self, st: ServerState, now: float, reason: str) -> None:
        later = st.methods[st.methods.index(st.method) + 1 :] if st.method in st.methods else []
        if later:
            self._start_method(st, later[0], now, reason)
        else:
            self._fail(st, now, reason)

    def _fail(self, st: ServerState, now: float, reason: str) -> None:
        self._enter(st, "failed", now)
        st.failures_total += 1
        st.verify_ok = 0
        self._audit(st, "failed", f"{reason}; next attempt not before {max(0.0, st.next_allowed - now):.0f} s")
        self._alert(st, "recovery_failed", reason)

    def _release(self, st: ServerState, now: float) -> None:
        if self.config.router.hold_routes:
            self.pending.append(Action("release_routes", st.name, "verified clean"))
        self._audit(st, "released", "routes allowed back")
        st.recoveries_total += 1
        st.fail_since.clear()
        self._enter(st, "healthy", now)
        st.healthy_since = now

    def _hold(self, st: ServerState, why: str, detail: str) -> None:
        if st.held != why:
            st.held = why
            self._audit(st, f"held_{why}", detail)

    def _alert(self, st: ServerState, event: str, reason: str) -> None:
        data = {"event": event, "pop": self.config.pop, "server": st.name, "reason": reason, "state": st.state}
        self.pending.append(Action("alert", st.name, reason, event=data))

    def _enter(self, st: ServerState, state: State, now: float) -> None:
        st.state = state
        st.since = now
        st.verify_ok = 0
        if state != "dead":
            st.held = None
        if state == "healthy":
            st.method = None
            st.deadline = None

    def _audit(self, st: ServerState, action: str, reason: str) -> None:
        self.audit_sink(
            {"server": st.name, "action": action, "reason": reason, "state": st.state, "signals": st.last.as_dict()}
        )

    # --- what /status shows ----------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        servers = {}
        for st in self.servers.values():
            servers[st.name] = {
                "state": st.state,
                "for_s": round(now - st.since, 3),
                "held": st.held,
                "method": st.method,
                "failing": self.failing(st, now),
                "signals": st.last.as_dict(),
                "cycles": st.cycles,
                "next_cycle_in_s": None if st.next_allowed == float("-inf") else round(max(0.0, st.next_allowed - now)),
                "attempts_total": st.attempts_total,
                "failures_total": st.failures_total,
                "recoveries_total": st.recoveries_total,
            }
        return {
            "pop": self.config.pop,
            "dry_run": self.config.dry_run,
            "in_flight": sum(1 for s in self.servers.values() if s.state in IN_FLIGHT),
            "down": sum(1 for s in self.servers.values() if s.state in DOWN),
            "servers": servers,
        }

    def states(self) -> Mapping[str, State]:
        return {name: st.state for name, st in self.servers.items()}
