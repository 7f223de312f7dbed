"""The PoP-wide view: each healthd serves its own state (`/status`, JSON; `/metrics`, Prometheus
text) and polls its peers' `/status`, so the safety floor and load shedding can see the whole PoP.

The endpoint is read-only and serves only what `snapshot()` returned last; the main loop refreshes it
after every round, so no request ever touches the state machine.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from edgepop.agents.healthd.config import Peer
from edgepop.agents.healthd.logs import BoundLogger, get_logger

Snapshot = dict[str, Any]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(snap: Snapshot) -> str:
    """Prometheus exposition of one snapshot: state, transitions and check latency per service."""
    gauges = [
        ("edgepop_healthd_service_up", "1 while the service's checks pass (after rise/fall)", "gauge"),
        ("edgepop_healthd_service_announced", "1 while every BIRD protocol of the service is enabled", "gauge"),
        ("edgepop_healthd_service_held_by_safety", "1 while the PoP-wide safety keeps a failed service", "gauge"),
        ("edgepop_healthd_service_shed", "1 while the service is withdrawn to shed load", "gauge"),
        ("edgepop_healthd_service_drained", "1 while an operator's drain keeps the service withdrawn", "gauge"),
        ("edgepop_healthd_service_suppressed", "1 while flap damping keeps the service withdrawn", "gauge"),
        ("edgepop_healthd_service_penalty", "current flap-damping penalty", "gauge"),
        ("edgepop_healthd_check_duration_seconds", "duration of the last check", "gauge"),
        ("edgepop_healthd_transitions_total", "up/down transitions", "counter"),
        ("edgepop_healthd_withdrawals_total", "withdrawals after a failure", "counter"),
        ("edgepop_healthd_restarts_total", "restarts started", "counter"),
        ("edgepop_healthd_checks_total", "checks run, by result", "counter"),
    ]
    lines: list[str] = []
    services: dict[str, Any] = snap.get("services", {})
    for metric, help_text, kind in gauges:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        for name, svc in services.items():
            lab = f'service="{_label(name)}"'
            if metric == "edgepop_healthd_checks_total":
                lines.append(f'{metric}{{{lab},result="ok"}} {svc["checks_ok"]}')
                lines.append(f'{metric}{{{lab},result="failed"}} {svc["checks_failed"]}')
                continue
            value: float
            if metric == "edgepop_healthd_service_up":
                value = svc["health"] == "up"
            elif metric == "edgepop_healthd_check_duration_seconds":
                last = svc["last_check"]
                if last is None:
                    continue
                value = last["duration_s"]
            else:
                key = metric.removeprefix("edgepop_healthd_service_").removeprefix("edgepop_healthd_")
                value = svc[key.removesuffix("_total")]
            lines.append(f"{metric}{{{lab}}} {float(value):g}")
    lines += [
        "# HELP edgepop_healthd_bird_up 1 while BIRD's control socket answers",
        "# TYPE edgepop_healthd_bird_up gauge",
        f"edgepop_healthd_bird_up {int(bool(snap.get('bird_up')))}",
        "# HELP edgepop_healthd_load 1-minute load average per CPU",
        "# TYPE edgepop_healthd_load gauge",
        f"edgepop_healthd_load {float(snap.get('load', 0.0)):g}",
    ]
    return "\n".join(lines) + "\n"


class PeerPoller:
    """core.PeerView: polls every peer's `/status` on a background thread and keeps the latest."""

    def __init__(
        self,
        peers: list[Peer],
        interval_s: float,
        timeout_s: float,
        stale_after_s: float,
        clock: Callable[[], float] = time.monotonic,
        log: BoundLogger | None = None,
    ) -> None:
        self.peers = peers
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.log = log or get_logger()
        self._reports: dict[str, tuple[float, Snapshot]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peers", daemon=True)
        self._failing: set[str] = set()

    def start(self) -> None:
        if self.peers:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> None:
        threads = [threading.Thread(target=self._fetch, args=(peer,), daemon=True) for peer in self.peers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.timeout_s + 1)

    def _fetch(self, peer: Peer) -> None:
        try:
            with urllib.request.urlopen(peer.url, timeout=self.timeout_s) as resp:
                data = json.loads(resp.read(1 << 20))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            if peer.name not in self._failing:
                self._failing.add(peer.name)
                self.log.warning("peer status unavailable", peer=peer.name, detail=str(exc))
            return
        if peer.name in self._failing:
            self._failing.discard(peer.name)
            self.log.info("peer status available again", peer=peer.name)
        with self._lock:
            self._reports[peer.name] = (self.clock(), data)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def _fresh(self, now: float) -> list[Snapshot]:
        with self._lock:
            return [snap for at, snap in self._reports.values() if now - at <= self.stale_after_s]

    # --- core.PeerView -------------------------------------------------------------------------

    def configured(self) -> int:
        return len(self.peers)

    def service_counts(self, service: str, now: float) -> tuple[int, int]:
        up = failing = 0
        for snap in self._fresh(now):
            svc = snap.get("services", {}).get(service)
            if not isinstance(svc, dict):
                continue
            if svc.get("health") == "down":
                failing += 1
            elif svc.get("announced") and svc.get("wanted"):
                up += 1
        return up, failing

    def with_room(self, service: str, now: float, below: float) -> int:
        count = 0
        for snap in self._fresh(now):
            svc = snap.get("services", {}).get(service)
            healthy = isinstance(svc, dict) and svc.get("health") == "up" and svc.get("announced")
            if healthy and float(snap.get("load", 1e9)) < below:
                count += 1
        return count
