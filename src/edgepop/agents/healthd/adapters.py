"""The production adapters behind core's Protocols: BIRD's control socket, the check threads, restart
processes and the state file. Each is small; the logic they serve lives in `core`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from edgepop.agents.healthd.checks import CheckResult, Probe
from edgepop.agents.healthd.core import RoutesError, RoutesUnavailable
from edgepop.bird.control import BirdControl, BirdError, BirdUnavailable


class BirdRoutes:
    """core.Routes over BIRD's control socket (one connection, remade when BIRD restarts)."""

    def __init__(self, control: BirdControl) -> None:
        self.control = control

    def generation(self) -> tuple[str, str]:
        try:
            status = self.control.show_status()
        except BirdUnavailable as exc:
            raise RoutesUnavailable(str(exc)) from exc
        except BirdError as exc:
            raise RoutesError(str(exc)) from exc
        return status.last_reboot, status.last_reconfiguration

    def states(self) -> dict[str, bool]:
        try:
            return {name: proto.enabled for name, proto in self.control.show_protocols().items()}
        except BirdUnavailable as exc:
            raise RoutesUnavailable(str(exc)) from exc
        except BirdError as exc:
            raise RoutesError(str(exc)) from exc

    def _do(self, action: Callable[[str], bool], name: str) -> None:
        try:
            action(name)
        except BirdUnavailable as exc:
            raise RoutesUnavailable(str(exc)) from exc
        except BirdError as exc:
            raise RoutesError(str(exc)) from exc

    def enable(self, name: str) -> None:
        self._do(self.control.enable, name)

    def disable(self, name: str) -> None:
        self._do(self.control.disable, name)


class ThreadedChecks:
    """core.CheckRunner on a thread pool; a finished check wakes the main loop at once."""

    def __init__(self, wake: threading.Event, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check")
        self._wake = wake
        self._lock = threading.Lock()
        self._running: dict[str, Future[CheckResult]] = {}
        self._done: list[tuple[str, CheckResult]] = []

    def submit(self, service: str, probe: Probe) -> None:
        future = self._pool.submit(probe)
        with self._lock:
            self._running[service] = future

        def finished(fut: Future[CheckResult]) -> None:
            if fut.cancelled():  # at shutdown
                return
            exc = fut.exception()
            result = CheckResult(False, f"check crashed: {exc!r}") if exc is not None else fut.result()
            with self._lock:
                if self._running.get(service) is fut:
                    del self._running[service]
                self._done.append((service, result))
            self._wake.set()

        future.add_done_callback(finished)

    def busy(self, service: str) -> bool:
        with self._lock:
            return service in self._running

    def completed(self) -> list[tuple[str, CheckResult]]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ProcessRestarter:
    """core.Restarter with child processes; a restart that outlives its timeout is killed."""

    def __init__(self) -> None:
        self._procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
        self._done: list[tuple[str, bool, str]] = []

    def start(self, service: str, argv: list[str], timeout_s: float) -> None:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C"},
            )
        except OSError as exc:
            self._done.append((service, False, f"cannot run {argv[0]}: {exc.strerror}"))
            return
        self._procs[service] = (proc, time.monotonic() + timeout_s)

    def running(self, service: str) -> bool:
        self._reap()
        return service in self._procs

    def completed(self) -> list[tuple[str, bool, str]]:
        self._reap()
        done, self._done = self._done, []
        return done

    def _reap(self) -> None:
        now = time.monotonic()
        for service, (proc, deadline) in list(self._procs.items()):
            rc = proc.poll()
            if rc is None and now > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                self._done.append((service, False, "timed out: killed"))
                del self._procs[service]
            elif rc is not None:
                self._done.append((service, rc == 0, f"exit {rc}"))
                del self._procs[service]


class JsonStateStore:
    """core.StateStore in a small JSON file (on /run: a reboot restarts BIRD too, and forgets both)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def load(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return set()
        withdrawn = data.get("withdrawn", []) if isinstance(data, dict) else []
        return {str(p) for p in withdrawn}

    def save(self, withdrawn: set[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"withdrawn": sorted(withdrawn)}) + "\n")
        tmp.replace(self.path)


def system_load() -> float:
    """The 1-minute load average per CPU."""
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def file_load(path: str) -> Callable[[], float]:
    """The load as another program reports it: the first number in `path`. A missing or garbled file
    reads as 0.0 (not overloaded): shedding must never follow from a reporter that is not there."""

    def read() -> float:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return 0.0
        for word in text.split():
            try:
                return float(word)
            except ValueError:
                return 0.0
        return 0.0

    return read


def file_drains(path: str) -> Callable[[], frozenset[str]]:
    """The services an operator drained: the words of `path` (`#` starts a comment). A missing file
    drains nothing; an unreadable one keeps the last answer, so a bad read never undrains."""
    last: list[frozenset[str]] = [frozenset()]

    def read() -> frozenset[str]:
        try:
            text = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            last[0] = frozenset()
        except OSError:
            pass
        else:
            last[0] = frozenset(w for line in text.splitlines() for w in line.split("#", 1)[0].split())
        return last[0]

    return read
