"""qemu guests booted from the image's boot artifacts, for proofs that need a real kernel.

The host kernel of a lab machine may lack what a server needs (the bonding driver, NIC queue
interrupts), so those are shown inside qemu guests: TCG only (no KVM needed), the rootfs as the
initramfs (root in RAM, nothing to clean on disk), serial console to a log file, the monitor on a
unix socket (to pull a cable: `set_link`), management over qemu's user network with `restrict=on`
(the guest can reach nothing but its forwarded SSH port) and data NICs on tap devices the caller
wires together (`edgepop.vm.links`).

A `Vm` owns exactly one qemu process; `stop()` asks qemu to quit through the monitor, then signals
that PID only, and is safe to call more than once (the caller's `finally`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edgepop.image.boot import BootArtifacts, OverlayEntry, write_initrd

MGMT_NET: Final = "203.0.113.192/27"
"""The guest's management network on qemu's user stack: a documentation range, never qemu's default."""
MGMT_HOST: Final = "203.0.113.193"
MGMT_DHCP_START: Final = "203.0.113.200"
SSH_OPTIONS: Final[tuple[str, ...]] = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
)


_ESCAPES: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class VmError(RuntimeError):
    """A guest did not start, boot or answer; the message names the guest and its console log."""


@dataclass(frozen=True)
class TapNic:
    """A data NIC on a tap device: `netdev` is also the name `set_link` takes."""

    netdev: str
    tap: str
    mac: str
    queues: int = 4


@dataclass(frozen=True)
class VmSpec:
    """What to boot: CPUs and memory, the management NIC's MAC, the data NICs, the per-box files."""

    name: str
    smp: str
    memory_mb: int
    mgmt_mac: str
    nics: Sequence[TapNic] = ()
    overlay: Sequence[OverlayEntry] = ()
    # rootfstype=ramfs: the kernel unpacks the initramfs into tmpfs capped at half the RAM, which the
    # rootfs (~450 MB) does not fit in a 1 GiB guest; ramfs has no cap. panic=-1 with -no-reboot
    # makes a kernel panic end qemu instead of hanging the test.
    append: str = "console=ttyS0 panic=-1 rootfstype=ramfs"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mgmt_network_file(mac: str) -> OverlayEntry:
    """A systemd-networkd file giving the management NIC DHCP (its name is not edgepop-owned: no NN- prefix)."""
    from edgepop.image.boot import file

    return file(
        "/etc/systemd/network/mgmt-dhcp.network",
        f"[Match]\nPermanentMACAddress={mac}\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )


def qemu_argv(
    spec: VmSpec, boot: BootArtifacts, initrd: Path, *, ssh_port: int, monitor: Path, console: Path
) -> list[str]:
    """The qemu command line for `spec` (see the module docstring for why each part is there)."""
    argv = [
        "qemu-system-x86_64",
        "-name",
        spec.name,
        "-accel",
        "tcg",
        "-smp",
        spec.smp,
        "-m",
        str(spec.memory_mb),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(boot.kernel),
        "-initrd",
        str(initrd),
        "-append",
        spec.append,
        "-serial",
        f"file:{console}",
        "-monitor",
        f"unix:{monitor},server=on,wait=off",
        "-netdev",
        f"user,id=mgmt,restrict=on,net={MGMT_NET},host={MGMT_HOST},dhcpstart={MGMT_DHCP_START},"
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device",
        f"virtio-net-pci,netdev=mgmt,mac={spec.mgmt_mac},romfile=",
    ]
    for nic in spec.nics:
        # speed/duplex: without them virtio reports no link speed and the bonding driver sends no
        # LACPDUs; vectors: one per queue and direction plus config and control; romfile=: no netboot.
        argv += [
            "-netdev",
            f"tap,id={nic.netdev},ifname={nic.tap},script=no,downscript=no,queues={nic.queues},vhost=off",
            "-device",
            f"virtio-net-pci,netdev={nic.netdev},mac={nic.mac},mq=on,vectors={2 * nic.queues + 2},"
            "speed=10000,duplex=full,romfile=",
        ]
    return argv


@dataclass
class Vm:
    """One running guest. Start it with `start()`; always `stop()` it (idempotent)."""

    spec: VmSpec
    boot: BootArtifacts
    workdir: Path
    key: Path
    ssh_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def console(self) -> Path:
        return self.workdir / f"{self.spec.name}.console.log"

    @property
    def monitor_path(self) -> Path:
        return self.workdir / f"{self.spec.name}.monitor"

    @property
    def initrd(self) -> Path:
        return self.workdir / f"{self.spec.name}.initrd"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        initrd = write_initrd(self.boot.initramfs, self.spec.overlay, self.initrd)
        argv = qemu_argv(
            self.spec, self.boot, initrd, ssh_port=self.ssh_port, monitor=self.monitor_path, console=self.console
        )
        (self.workdir / f"{self.spec.name}.argv").write_text(shlex.join(argv) + "\n")
        log = (self.workdir / f"{self.spec.name}.qemu.log").open("wb")
        with log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _failure(self, what: str) -> VmError:
        tail = ""
        for path in (self.workdir / f"{self.spec.name}.qemu.log", self.console):
            if path.is_file():
                lines = path.read_text(errors="replace").splitlines()[-15:]
                tail += f"\n--- {path.name}:\n" + "\n".join(lines)
        return VmError(f"{self.spec.name}: {what} (console log {self.console}){tail}")

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", *SSH_OPTIONS, "-i", str(self.key), "-p", str(self.ssh_port), "root@127.0.0.1", command]

    def ssh(self, command: str, *, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `command` in the guest as root; raise VmError on a non-zero exit when `check`."""
        proc = subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise VmError(f"{self.spec.name}: `{command}` exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc

    def wait_ssh(self, timeout: float = 300.0) -> float:
        """Poll until SSH answers (the boot takes 40-90 s under TCG); return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self._alive():
                raise self._failure("qemu exited during boot")
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.ssh("true", timeout=15, check=False).returncode == 0:
                    return time.monotonic() - started
            time.sleep(2)
        raise self._failure(f"no SSH on 127.0.0.1:{self.ssh_port} after {timeout:.0f} s")

    def monitor(self, command: str, timeout: float = 10.0) -> str:
        """Send one human-monitor command; return what qemu printed before the next prompt."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.monitor_path))
            banner = b""
            while not banner.endswith(b"(qemu) "):
                chunk = sock.recv(4096)
                if not chunk:
                    raise self._failure(f"monitor closed before its prompt (sending {command!r})")
                banner += chunk
            sock.sendall(command.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"(qemu) "):
                chunk = sock.recv(4096)
                if not chunk:  # `quit` closes the socket
                    break
                reply += chunk
        # qemu echoes the command as it is typed (redrawing the line with cursor escapes) up to the
        # newline, then prints its answer and the next prompt
        text = reply.decode(errors="replace").replace("\r", "")
        answer = text.split("\n", 1)[1] if "\n" in text else ""
        lines = [line for line in _ESCAPES.sub("", answer).split("\n") if line.strip() not in ("", "(qemu)")]
        return "\n".join(lines).strip()

    def set_link(self, netdev: str, up: bool) -> None:
        """Pull (or plug back) the cable of one NIC: the guest sees its carrier go down (or up)."""
        reply = self.monitor(f"set_link {netdev} {'on' if up else 'off'}")
        if reply:
            raise VmError(f"{self.spec.name}: set_link {netdev}: {reply}")

    def stop(self, timeout: float = 10.0) -> None:
        """Quit qemu through its monitor, else SIGTERM, else SIGKILL — only the process this Vm started.

        The guest's initrd copy (the size of the image) goes too; the logs stay for a post-mortem.
        """
        try:
            self._stop(timeout)
        finally:
            self.initrd.unlink(missing_ok=True)

    def _stop(self, timeout: float) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError, VmError):
            self.monitor("quit", timeout=2.0)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and proc.poll() is None:
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue
