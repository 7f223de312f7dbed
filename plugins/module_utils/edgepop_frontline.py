"""Release the frontline proxy one core at a time, so memory stays flat and no core runs two workers.

The frontline runs one single-worker NGINX instance per chosen core, each pinned to its core, all
listening on the service addresses with `reuseport`. NGINX's own binary upgrade (USR2, then WINCH
and QUIT to the old master) starts a whole second set of workers next to the first: memory doubles
for the length of the upgrade, and two workers share each core. Here, instead, for each core in
order: the old instance on that core is stopped gracefully (SIGQUIT: it closes its listener and
finishes what it has; with `net.ipv4.tcp_migrate_req=1` the kernel moves connections still queued
on the closing listener to a live one), bounded by a drain timeout; the new version's instance is
started on the same core; it must answer its own health check and be pinned to that core (master
and worker) before the next core is touched. A failed check stops the release and rolls every core
already done back to the old version.

`Instances` is how instances are started and stopped: `ProcessInstances` runs NGINX directly with
`taskset` (the tests, the benchmark), `SystemdInstances` drives the role's template units
(`edgepop-frontline@<core>.service`, whose config is the version linked from `current-<core>`).
Each release step is timed and reported.

One file for the controller (`edgepop.frontline.release` links here) and for the `frontline_release`
module, which runs it on the box: standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class ReleaseError(Exception):
    """A core failed its checks; the message names the core and the check."""


class Instances(Protocol):
    def start(self, core: int, version: str) -> None: ...
    def stop(self, core: int, drain_s: float) -> None: ...
    def pids(self, core: int) -> list[int]: ...
    def health_url(self, core: int) -> str: ...


def cpus_allowed(pid: int) -> str:
    """The CPU list a process may run on (`Cpus_allowed_list` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return ""


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class CoreReport:
    core: int
    stop_s: float = 0.0
    start_s: float = 0.0
    check_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.stop_s + self.start_s + self.check_s


@dataclass
class Release:
    instances: Instances
    cores: Sequence[int]
    old: str
    new: str
    drain_s: float = 10.0
    check_timeout_s: float = 10.0
    check: Callable[[str], bool] | None = None
    log: Callable[[str], None] = print
    reports: list[CoreReport] = field(default_factory=list)

    def _healthy(self, core: int) -> bool:
        url = self.instances.health_url(core)
        if self.check is not None:
            return self.check(url)
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200 and self.new in resp.read().decode())
        except OSError:
            return False

    def _pinned(self, core: int) -> bool:
        pids = self.instances.pids(core)  # the master and its worker
        return len(pids) >= 2 and all(cpus_allowed(pid) == str(core) for pid in pids)

    def _check(self, core: int) -> None:
        deadline = time.monotonic() + self.check_timeout_s
        while time.monotonic() < deadline:
            if self._healthy(core):
                break
            time.sleep(0.05)
        else:
            raise ReleaseError(f"core {core}: version {self.new} did not pass its health check")
        while time.monotonic() < deadline and not self._pinned(core):
            time.sleep(0.05)
        if not self._pinned(core):
            pids = self.instances.pids(core)
            raise ReleaseError(f"core {core}: not pinned ({', '.join(f'{p}:{cpus_allowed(p)}' for p in pids)})")

    def run(self) -> list[CoreReport]:
        done: list[int] = []
        for core in self.cores:
            report = CoreReport(core)
            t = time.monotonic()
            self.instances.stop(core, self.drain_s)
            report.stop_s = time.monotonic() - t
            t = time.monotonic()
            self.instances.start(core, self.new)
            report.start_s = time.monotonic() - t
            t = time.monotonic()
            try:
                self._check(core)
            except ReleaseError as exc:
                self.log(f"release: {exc}; rolling back cores {[*done, core]}")
                self.rollback([*done, core])
                raise
            report.check_s = time.monotonic() - t
            done.append(core)
            self.reports.append(report)
            self.log(
                f"release: core {core} on {self.new} in {report.total_s:.2f} s "
                f"(stop {report.stop_s:.2f}, start {report.start_s:.2f}, check {report.check_s:.2f})"
            )
        return self.reports

    def rollback(self, cores: Sequence[int]) -> None:
        for core in cores:
            self.instances.stop(core, self.drain_s)
            if self.old:  # a first install has no old version to go back to
                self.instances.start(core, self.old)


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stop_pid(pid: int, drain_s: float) -> None:
    """SIGQUIT (graceful), then SIGTERM and SIGKILL when the drain takes too long."""
    for sig, wait in ((signal.SIGQUIT, drain_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.01)


@dataclass
class ProcessInstances:
    """NGINX instances run directly, pinned with `taskset -c CORE`, under `prefix` (an argv prefix,
    e.g. `ip netns exec NS`). `config_for(core, version)` is the config file of that core's instance
    of a version: single worker, `daemon off`, its own health listener; the pid file goes to
    `rundir`."""

    config_for: Callable[[int, str], Path]
    health: Callable[[int], str]
    rundir: Path
    prefix: Sequence[str] = ()
    masters: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, core: int, version: str) -> None:
        argv = [*self.prefix, "taskset", "-c", str(core), "nginx", "-c", str(self.config_for(core, version)),
                "-g", f"pid {self.rundir / f'nginx-{core}.pid'};"]  # fmt: skip
        log = open(self.rundir / f"nginx-{core}.out", "ab")  # noqa: SIM115 (the child keeps it)
        self.masters[core] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, core: int, drain_s: float) -> None:
        proc = self.masters.pop(core, None)
        if proc is None:
            return
        master = self._master(proc)
        _stop_pid(master, drain_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    @staticmethod
    def _master(proc: subprocess.Popen[bytes]) -> int:
        """The NGINX master: the process itself, or its child when run through a prefix."""
        pid = proc.pid
        for _ in range(3):
            exe = ""
            with contextlib.suppress(OSError):
                exe = Path(f"/proc/{pid}/comm").read_text().strip()
            if exe == "nginx":
                return pid
            kids = children(pid)
            if not kids:
                return pid
            pid = kids[0]
        return pid

    def pids(self, core: int) -> list[int]:
        proc = self.masters.get(core)
        if proc is None or proc.poll() is not None:
            return []
        master = self._master(proc)
        return [master, *children(master)]

    def health_url(self, core: int) -> str:
        return self.health(core)

    def stop_all(self) -> None:
        for core in list(self.masters):
            self.stop(core, 2.0)


@dataclass
class SystemdInstances:
    """The role's units: `edgepop-frontline@CORE.service` runs the version named in
    `/etc/edgepop/frontline/current-CORE` (a symlink to that version's config), pinned with
    `CPUAffinity=CORE`; its health endpoint is 127.0.0.1:(health_base + CORE)."""

    versions_dir: Path = Path("/etc/edgepop/frontline")
    health_base: int = 9100
    run: Callable[[list[str]], str] = field(
        default=lambda argv: subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    )

    def unit(self, core: int) -> str:
        return f"edgepop-frontline@{core}.service"

    def config(self, core: int, version: str) -> Path:
        return self.versions_dir / f"{version}-{core}.conf"

    def current(self, core: int) -> str:
        """The version core `core` is set to run (from its `current-<core>` link), or ""."""
        link = self.versions_dir / f"current-{core}"
        with contextlib.suppress(OSError):
            return Path(os.readlink(link)).name.rsplit("-", 1)[0]
        return ""

    def start(self, core: int, version: str) -> None:
        config = self.config(core, version)
        if not config.exists():
            raise ReleaseError(f"core {core}: no config for version {version} ({config})")
        link = self.versions_dir / f"current-{core}"
        tmp = self.versions_dir / f".current-{core}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(config)
        tmp.replace(link)
        self.run(["systemctl", "start", self.unit(core)])

    def stop(self, core: int, drain_s: float) -> None:
        # the unit's KillSignal is SIGQUIT and TimeoutStopSec bounds the drain
        self.run(["systemctl", "stop", self.unit(core)])

    def pids(self, core: int) -> list[int]:
        """The unit's NGINX master (its main process) and the master's worker."""
        main = int(self.run(["systemctl", "show", "-p", "MainPID", "--value", self.unit(core)]).strip() or 0)
        if not main:
            return []
        with contextlib.suppress(OSError):
            return [main, *children(main)]
        return []

    def health_url(self, core: int) -> str:
        return f"http://127.0.0.1:{self.health_base + core}/health"
