"""recoveryd's process: probes every server each round, feeds the core, carries out its actions.

Probes (each round, in parallel, each bounded by `probe_timeout_s`):
- `bgp`: the router's sessions to the server (`show protocols` over the router's BIRD control
  socket): passes while at least one of them is Established; unknown while the router is silent.
- `reach`: a TCP connection to the server (port 22 by default): an accept or a refusal both pass
  (the kernel answers); a timeout or an unreachable host fails.
- `healthd`: GET of its /status: any JSON answer passes; `green` when every service there is up.

Power actions run in a child process each (`python -m edgepop.agents.recoveryd.power`, the request
with its credentials on stdin, never in argv), killed at their deadline. Routes are held and
released through the router's control socket. Alerts run `alert_command` with the event as JSON
on stdin. SIGTERM/SIGINT stop the loop (a power action under way is left to finish); SIGHUP is
not supported yet: restart to take a new configuration.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from edgepop.agents.common import StatusServer
from edgepop.agents.healthd.logs import get_logger
from edgepop.agents.recoveryd.audit import AuditLog, describe, scrub
from edgepop.agents.recoveryd.config import RecoverydConfig, ServerConfig
from edgepop.agents.recoveryd.core import Action, Method, Observation, Recovery
from edgepop.agents.recoveryd.status import metrics_text
from edgepop.agents.statefile import StateShapeError, read_json, write_json
from edgepop.bird.control import BirdControl, Protocol


def reach_probe(address: str, port: int, timeout: float) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return True  # a RST: the box's kernel is up
        except OSError:
            return False
    return True


def healthd_probe(url: str, timeout: float) -> tuple[bool, bool]:
    """(answers, green): green when every service in the report is up."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read(1 << 20))
    except (OSError, ValueError):
        return False, False
    services = data.get("services", {}) if isinstance(data, dict) else {}
    green = bool(services) and all(isinstance(s, dict) and s.get("health") == "up" for s in services.values())
    return True, green


class Daemon:
    def __init__(self, config: RecoverydConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.log = get_logger(agent="recoveryd", pop=config.pop)
        self.audit = AuditLog(config.audit_log, config.secrets())
        self.core = Recovery(config, self.audit.write, clock())
        self.by_name = {s.name: s for s in config.servers}
        self.pdus = {p.name: p for p in config.pdus}
        self._held: list[str] = []
        adopted = self._load_held()
        if adopted:
            self.log.warning("adopting servers whose sessions were held", servers=",".join(adopted))
            self.core.adopt_held(adopted, clock())
            self._held = self.core.held()
        self.results: queue.Queue[tuple[str, Method, bool, str]] = queue.Queue()
        self.pool = ThreadPoolExecutor(max_workers=max(4, 2 * len(config.servers)), thread_name_prefix="probe")
        self.wake = threading.Event()
        self._stop = False
        self.latest: dict[str, Any] = self.core.snapshot(clock())
        self.counters = {"rounds": 0, "power_actions": 0, "alerts": 0, "router_errors": 0}
        self.status: StatusServer | None = None

    # --- probes ----------------------------------------------------------------------------------

    def _router(self) -> dict[str, Protocol] | None:
        if self.config.router.socket is None:
            return None
        try:
            with BirdControl(self.config.router.socket, timeout=self.config.router.timeout_s) as bird:
                return bird.show_protocols()
        except Exception as exc:
            self.counters["router_errors"] += 1
            self.log.warning("router unavailable: BGP signal unknown", detail=describe(exc, self.config.secrets()))
            return None

    def _probe(self, srv: ServerConfig, protocols: dict[str, Protocol] | None) -> Observation:
        timeout = self.config.decision.probe_timeout_s
        bgp: bool | None = None
        if protocols is not None and srv.router_protocols:
            known = [protocols[p] for p in srv.router_protocols if p in protocols]
            bgp = any(p.info.startswith("Established") for p in known) if known else None
        reach_f = self.pool.submit(reach_probe, srv.reach.address, srv.reach.port, timeout)
        healthd: bool | None = None
        green = False
        if srv.healthd_url:
            healthd, green = healthd_probe(srv.healthd_url, timeout)
        return Observation(bgp=bgp, reach=reach_f.result(), healthd=healthd, green=green)

    def probe_round(self) -> dict[str, Observation]:
        protocols = self._router()
        futures = {name: self.pool.submit(self._probe, srv, protocols) for name, srv in self.by_name.items()}
        return {name: f.result() for name, f in futures.items()}

    # --- actions ---------------------------------------------------------------------------------

    def _power_request(self, action: Action) -> tuple[dict[str, Any], float]:
        srv = self.by_name[action.server]
        if action.method == "ipmi" and srv.ipmi is not None:
            ipmi = {**srv.ipmi.model_dump(mode="json"), "password": srv.ipmi.password.get_secret_value()}
            return {"method": "ipmi", "ipmi": ipmi}, srv.ipmi.timeout_s
        if action.method == "pdu" and srv.pdu is not None:
            pdu = self.pdus[srv.pdu.pdu]
            data = {**pdu.model_dump(mode="json"), "community": pdu.community.get_secret_value()}
            budget = (pdu.timeout_s * (pdu.retries + 1)) * 3 + pdu.off_s + 5
            return {"method": "pdu", "pdu": data, "outlet": srv.pdu.outlet}, budget
        raise ValueError(f"{action.server}: no {action.method} configured")

    def _power(self, action: Action) -> None:
        assert action.method is not None
        method: Method = action.method
        if self.config.dry_run:
            self.audit.write({"server": action.server, "action": f"would_{method}_cycle", "reason": action.reason})
            self.results.put((action.server, method, True, "dry run: not carried out"))
            self.wake.set()
            return
        try:
            request, budget = self._power_request(action)
            proc = subprocess.run(
                [sys.executable, "-m", "edgepop.agents.recoveryd.power"],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=budget,
                check=False,
            )
            answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
            ok = bool(answer.get("ok"))
            detail = str(answer.get("detail") or proc.stderr.strip()[-300:] or f"exit {proc.returncode}")
        except subprocess.TimeoutExpired:
            ok, detail = False, f"no result within {budget:.0f} s"
        except Exception as exc:
            ok, detail = False, describe(exc)
        detail = str(scrub(detail, self.config.secrets()))
        self.results.put((action.server, method, ok, detail))
        self.wake.set()

    def _routes(self, action: Action, enable: bool) -> None:
        srv = self.by_name[action.server]
        if self.config.dry_run or not srv.router_protocols or self.config.router.socket is None:
            return
        try:
            with BirdControl(self.config.router.socket, timeout=self.config.router.timeout_s) as bird:
                for name in srv.router_protocols:
                    bird.enable(name) if enable else bird.disable(name)
        except Exception as exc:
            self.log.error(
                "could not change the router's sessions",
                server=action.server,
                enable=enable,
                detail=describe(exc, self.config.secrets()),
            )
            return
        self.log.info("routes released" if enable else "routes held", server=action.server)

    def _alert(self, action: Action) -> None:
        event = scrub(action.event or {}, self.config.secrets())
        self.counters["alerts"] += 1
        self.log.error("ALERT", **{k: v for k, v in event.items() if k != "pop"})
        self.audit.write({"server": action.server, "action": "alert", "reason": action.reason, "event": event})
        if self.config.alert_command:
            try:
                subprocess.run(
                    self.config.alert_command,
                    input=json.dumps(event),
                    text=True,
                    capture_output=True,
                    timeout=self.config.alert_timeout_s,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                self.log.error("alert command failed", detail=describe(exc, self.config.secrets()))

    def execute(self, actions: list[Action]) -> None:
        for action in actions:
            if action.kind == "hold_routes":
                self._routes(action, enable=False)
            elif action.kind == "release_routes":
                self._routes(action, enable=True)
            elif action.kind == "power_cycle":
                self.counters["power_actions"] += 1
                self.log.warning("power cycle", server=action.server, method=action.method, reason=action.reason)
                threading.Thread(target=self._power, args=(action,), name=f"power-{action.server}", daemon=True).start()
            elif action.kind == "alert":
                threading.Thread(target=self._alert, args=(action,), name="alert", daemon=True).start()

    # --- held sessions across restarts -----------------------------------------------------------

    def _load_held(self) -> list[str]:
        """The servers a previous instance held; a bad state file is moved aside and named once (the
        sessions it held stay disabled on the router until they are enabled by hand)."""

        def shape(doc: object) -> list[str]:
            held = doc.get("held") if isinstance(doc, dict) else None
            if not isinstance(held, list) or not all(isinstance(name, str) for name in held):
                raise StateShapeError('expected {"held": [server names]}')
            return held

        def warn(message: str) -> None:
            self.log.warning(f"{message}; sessions it held stay disabled on the router until enabled by hand")

        held = read_json(Path(self.config.state_file), shape, warn) or []
        unknown = sorted(name for name in held if name not in self.by_name)
        if unknown:
            self.log.warning("state file names servers not in the configuration", servers=",".join(unknown))
        return [name for name in held if name in self.by_name]

    def _save_held(self) -> None:
        held = self.core.held()
        if held == self._held:
            return
        try:
            write_json(Path(self.config.state_file), {"held": held}, 0o640)
            self._held = held
        except OSError as exc:
            self.log.error("cannot write the state file", path=self.config.state_file, detail=exc.strerror)

    # --- the loop --------------------------------------------------------------------------------

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._stop = True
        self.wake.set()

    def round(self) -> None:
        observations = self.probe_round()
        now = self.clock()
        for name, obs in observations.items():
            self.core.observe(now, name, obs)
        while not self.results.empty():
            server, method, ok, detail = self.results.get_nowait()
            self.core.power_result(now, server, method, ok, detail)
        self.execute(self.core.step(now))
        self._save_held()
        self.counters["rounds"] += 1
        self.latest = {**self.core.snapshot(now), "counters": dict(self.counters)}

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._signal)
        if self.config.status.listen is not None:
            try:
                self.status = StatusServer(
                    self.config.status.listen, self.config.status.port, lambda: self.latest, metrics_text
                )
                self.status.start()
            except OSError as exc:
                self.log.error("status endpoint unavailable; running without it", detail=exc.strerror or str(exc))
        self.log.info(
            "started", servers=len(self.config.servers), dry_run=self.config.dry_run, audit=self.config.audit_log
        )
        interval = self.config.decision.probe_interval_s
        while not self._stop:
            started = self.clock()
            self.round()
            self.wake.wait(max(0.0, interval - (self.clock() - started)))
            self.wake.clear()
        self.log.info("stopping")
        if self.status is not None:
            self.status.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        return os.EX_OK
