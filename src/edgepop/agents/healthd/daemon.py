"""healthd's process: wires the adapters to the core, runs the loop, handles the signals.

SIGTERM/SIGINT: withdraw every route healthd announced (unless `withdraw_on_exit: false`), then exit.
SIGHUP: reload the configuration; a file that does not validate is reported and the running one kept.
SIGUSR1: re-execute itself in place (same PID, routes untouched): how new code takes over without a
drain. The new instance adopts BIRD's state as it finds it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from edgepop.agents.common import ConfigError, StatusServer
from edgepop.agents.healthd.adapters import (
    BirdRoutes,
    JsonStateStore,
    ProcessRestarter,
    ThreadedChecks,
    file_drains,
    file_load,
    system_load,
)
from edgepop.agents.healthd.checks import make_probe
from edgepop.agents.healthd.config import HealthdConfig, load_config
from edgepop.agents.healthd.core import Agent
from edgepop.agents.healthd.logs import get_logger
from edgepop.agents.healthd.status import PeerPoller, metrics_text
from edgepop.bird.control import BirdControl

# the longest the loop sleeps: signals and finished checks wake it earlier
_MAX_SLEEP_S = 1.0


class Daemon:
    def __init__(self, config_path: str, config: HealthdConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config_path = config_path
        self.config = config
        self.clock = clock
        self.log = get_logger(host=config.hostname)
        self.wake = threading.Event()
        self._stop = False
        self._reload = False
        self._reexec = False
        self.checks = ThreadedChecks(self.wake, workers=max(2, len(config.services)))
        self.peers = PeerPoller(
            config.peers,
            config.safety.peer_interval_s,
            config.safety.peer_timeout_s,
            config.safety.stale_after_s,
            clock=clock,
            log=self.log,
        )
        self.agent = Agent(
            config,
            routes=BirdRoutes(BirdControl(config.bird.socket, timeout=config.bird.timeout_s)),
            runner=self.checks,
            restarter=ProcessRestarter(),
            peers=self.peers,
            store=JsonStateStore(config.state_file),
            probe_factory=make_probe,
            load=file_load(config.load_shedding.load_file) if config.load_shedding.load_file else system_load,
            drains=file_drains(config.drain_file),
            log=self.log,
        )
        self.latest: dict[str, Any] = self.agent.snapshot(clock())
        self.status: StatusServer | None = None

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop = True
        elif signum == signal.SIGHUP:
            self._reload = True
        elif signum == signal.SIGUSR1:
            self._reexec = True
        self.wake.set()

    def _do_reload(self) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            for line in exc.errors:
                self.log.error("reload refused: the running configuration stays", detail=line)
            return
        for key in ("status", "peers", "bird", "state_file"):
            if getattr(config, key) != getattr(self.config, key):
                self.log.warning("this setting changes only at a restart", setting=key)
        self.config = config
        self.agent.reload(config)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, self._signal)
        if self.config.status.listen is not None:
            try:
                self.status = StatusServer(
                    self.config.status.listen, self.config.status.port, lambda: self.latest, metrics_text
                )
                self.status.start()
                self.log.info("status endpoint up", listen=self.config.status.listen, port=self.status.port)
            except OSError as exc:
                self.log.error("status endpoint unavailable; running without it", detail=str(exc))
        self.peers.start()
        self.log.info(
            "started",
            services=",".join(s.name for s in self.config.services),
            bird=self.config.bird.socket,
            peers=len(self.config.peers),
        )
        while not self._stop:
            if self._reload:
                self._reload = False
                self._do_reload()
            if self._reexec:
                self._exec_self()
            now = self.clock()
            self.agent.step(now)
            self.latest = self.agent.snapshot(now)
            pause = min(_MAX_SLEEP_S, self.agent.next_wakeup(now) - now)
            self.wake.wait(max(0.005, pause))
            self.wake.clear()
        return self._shutdown()

    def _shutdown(self) -> int:
        code = os.EX_OK
        if self.config.withdraw_on_exit:
            self.log.info("stopping: withdrawing every route healthd manages")
            if not self.agent.withdraw_all():
                code = os.EX_UNAVAILABLE
        else:
            self.log.info("stopping: routes left as they are (withdraw_on_exit is false)")
        self._close()
        return code

    def _close(self) -> None:
        self.peers.stop()
        self.checks.shutdown()
        if self.status is not None:
            self.status.stop()

    def _exec_self(self) -> None:
        self.log.info("re-executing in place (routes untouched)")
        self._close()
        argv = [sys.executable, "-m", "edgepop.agents.healthd", *sys.argv[1:]]
        os.execv(sys.executable, argv)
