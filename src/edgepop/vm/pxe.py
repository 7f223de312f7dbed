"""A PoP's boot network in one network namespace, for zero-touch proofs with diskless qemu guests.

The namespace plays the control server: a bridge on the call-home network carrying the control
server's address, dnsmasq with the rendered `dnsmasq-pxe.conf` (DHCP + TFTP `boot.ipxe`), and
provisiond with the rendered plan, serving the image release and answering call-home. Guests are
started inside the namespace (so qemu opens taps that live there) with nothing but a MAC: `-boot n`
makes qemu's iPXE ROM ask DHCP, chain boot.ipxe, fetch its per-MAC script from provisiond, and load
the kernel and the rootfs initramfs over HTTP.

Everything this module makes carries the caller's prefix and is removed by `close()`: the processes
it started (by PID), then the namespace with its bridge and taps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepop.derive import StructuredConfig
from edgepop.render import render_device

IFNAMSIZ = 15


class PxeError(RuntimeError):
    """The boot network could not be set up, or a guest did not boot; names the log to read."""


def _run(*argv: str, timeout: float = 30) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PxeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(every)
    raise PxeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class PxeNet:
    """The namespace, its bridge, dnsmasq and provisiond. `start()`, then always `close()`."""

    prefix: str
    control: StructuredConfig
    address: str  # the control server's address/prefix on the call-home network
    workdir: Path  # provisiond's state is `state/` in it: put the release in state/images first
    token: str
    python: str
    src: Path
    edit_plan: Callable[[dict[str, Any]], None] | None = None  # what the role would fill in
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)
    _made_ns: bool = False
    _provisiond: subprocess.Popen[bytes] = field(init=False, repr=False)

    @property
    def ns(self) -> str:
        return f"{self.prefix}ns"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        proc = subprocess.run(
            self.exec_argv(*argv), capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
        if check and proc.returncode != 0:
            raise PxeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-1000:]}")
        return proc

    def _files(self) -> tuple[Path, Path, Path, Path]:
        files = render_device(self.control)
        tftp, ipxe = self.workdir / "tftp", self.workdir / "ipxe"
        tftp.mkdir(parents=True, exist_ok=True)
        ipxe.mkdir(parents=True, exist_ok=True)
        (tftp / "boot.ipxe").write_text(files["boot.ipxe"])
        (tftp / "boot.ipxe").chmod(0o644)
        for rel, text in files.items():
            if rel.startswith("ipxe/"):
                (self.workdir / rel).write_text(text)
        plan_file = self._write_plan(files["provisiond.json"])
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(files["dnsmasq-pxe.conf"])
        return conf, tftp, ipxe, plan_file

    def _write_plan(self, rendered: str) -> Path:
        plan = json.loads(rendered)
        plan["callhome_token"] = self.token
        if self.edit_plan is not None:
            self.edit_plan(plan)
        plan_file = self.workdir / "provisiond.json"
        tmp = plan_file.with_name(".provisiond.json.tmp")
        tmp.write_text(json.dumps(plan, indent=1))
        tmp.replace(plan_file)
        return plan_file

    def replan(self, control: StructuredConfig) -> None:
        """A new plan for provisiond (after an inventory edit), applied with SIGHUP as the role does."""
        self.control = control
        self._write_plan(render_device(control)["provisiond.json"])
        log = self.workdir / "provisiond.log"
        seen = log.read_bytes().count(b"plan reloaded")
        os.kill(self._provisiond.pid, signal.SIGHUP)
        wait_for("provisiond to reload its plan", lambda: log.read_bytes().count(b"plan reloaded") > seen, 15, 0.1)

    def start(self) -> None:
        if len(self.bridge) > IFNAMSIZ or len(self.prefix) + 2 > IFNAMSIZ:
            raise ValueError(f"prefix {self.prefix!r} is too long for interface names")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf, tftp, ipxe, plan = self._files()
        self.state.mkdir(parents=True, exist_ok=True)
        _run("ip", "netns", "add", self.ns)
        self._made_ns = True
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "link", "add", self.bridge, "type", "bridge")
        self.run("ip", "addr", "add", self.address, "dev", self.bridge)
        self.run("ip", "link", "set", self.bridge, "up")
        dnsmasq = self.exec_argv(
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            f"--conf-file={conf}",
            f"--interface={self.bridge}",
            "--bind-interfaces",
            "--no-ping",
            "--user=root",
            f"--dhcp-leasefile={self.workdir}/leases",
            f"--pid-file={self.workdir}/dnsmasq.pid",
            f"--tftp-root={tftp}",
        )
        self._spawn(dnsmasq, "dnsmasq.log")
        host = self.address.split("/")[0]
        provisiond = self.exec_argv(
            self.python,
            "-m",
            "edgepop.agents.provisiond",
            *("--plan", str(plan), "--ipxe-dir", str(ipxe), "--state-dir", str(self.state)),
            *("--listen", host),
        )
        # `ip netns exec` execs its command: this PID is provisiond's own
        self._provisiond = self._spawn(provisiond, "provisiond.log", env={**os.environ, "PYTHONPATH": str(self.src)})
        log = self.workdir / "provisiond.log"
        wait_for("provisiond to listen", lambda: b"listening on" in log.read_bytes(), 30, 0.1)
        if b"serving image" not in log.read_bytes():
            raise PxeError(f"provisiond serves no image: {log.read_text()[-1500:]}")

    def _spawn(self, argv: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.workdir / log_name).open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(proc)
        return proc

    def tap(self, index: int) -> str:
        name = f"{self.prefix}t{index}"
        self.run("ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.taps.append(name)
        self.run("ip", "link", "set", name, "master", self.bridge)
        self.run("ip", "link", "set", name, "up")
        return name

    def guest(self, name: str, mac: str, *, memory_mb: int = 1536, direct: tuple[Path, Path] | None = None) -> Guest:
        """A diskless guest with one NIC on the bridge, started at once: netbooting, or with
        `direct` = (kernel, initrd) booted by qemu itself (the baseline without PXE and iPXE)."""
        tap = self.tap(len(self.taps))
        console = self.workdir / f"{name}.console.log"
        boot = ["-boot", "n"]
        if direct is not None:
            boot = ["-kernel", str(direct[0]), "-initrd", str(direct[1])]
            boot += ["-append", "console=ttyS0,115200n8 rootfstype=ramfs panic=-1"]
        argv = self.exec_argv(
            "qemu-system-x86_64",
            *("-name", name, "-accel", "tcg", "-smp", "1", "-m", str(memory_mb)),
            *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", *boot),
            *("-serial", f"file:{console}"),
            *("-netdev", f"tap,id=boot,ifname={tap},script=no,downscript=no"),
            # speed/duplex: without them virtio reports none and 802.3ad keeps the NIC out of its bond
            *("-device", f"virtio-net-pci,netdev=boot,mac={mac},speed=10000,duplex=full"),
        )
        (self.workdir / f"{name}.argv").write_text(" ".join(argv) + "\n")
        proc = self._spawn(argv, f"{name}.qemu.log")
        return Guest(name, mac, proc, console, self, tap)

    def stop_guest(self, guest: Guest) -> None:
        """End one guest's qemu (by its PID) and remove its tap."""
        _stop(guest.process)
        self.procs = [p for p in self.procs if p is not guest.process]
        if guest.tap in self.taps:
            self.run("ip", "link", "del", guest.tap, check=False)
            self.taps.remove(guest.tap)

    def requests(self) -> list[dict[str, Any]]:
        log = self.state / "requests.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    def close(self) -> list[str]:
        """Stop every process started here (by PID), then delete the namespace; return the errors."""
        errors: list[str] = []
        for proc in reversed(self.procs):
            try:
                _stop(proc)
            except OSError as exc:
                errors.append(f"pid {proc.pid}: {exc}")
        self.procs.clear()
        if self._made_ns:
            with contextlib.suppress(subprocess.TimeoutExpired):
                done = subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, text=True, timeout=30)
                if done.returncode != 0:
                    errors.append(done.stderr.strip())
            self._made_ns = False
        return errors


@dataclass
class Guest:
    name: str
    mac: str
    process: subprocess.Popen[bytes]
    console: Path
    net: PxeNet
    tap: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def console_tail(self, lines: int = 25) -> str:
        text = self.console.read_text(errors="replace") if self.console.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        def check() -> bool:
            if not self.alive():
                raise PxeError(f"{self.name}: qemu exited while waiting for {what}:\n{self.console_tail()}")
            return predicate()

        try:
            return wait_for(what, check, timeout, 1.0)
        except PxeError as exc:
            raise PxeError(f"{self.name}: {exc} (console {self.console}):\n{self.console_tail()}") from None
