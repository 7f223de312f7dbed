"""`edgepop doctor`: does this machine have what `make demo` and `make test` need?

Every program the project runs on the host (not inside the lab's containers or VMs, which get theirs
from the image) is listed here with the Debian package that ships it and what needs it, together with
the kernel features the labs use and podman's set-up. A missing piece is named with the command that
installs it, so a fresh machine fails in one readable list instead of deep inside a lab run.

scripts/setup.sh installs the same packages; tests/unit/test_doctor.py keeps the two lists in step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

EX_OK, EX_UNAVAILABLE = 0, 69

# Packages of the bare Debian 12 image this project runs on (checked against the image's package list):
# setup.sh does not install them, but doctor still checks their programs.
BASE_PACKAGES = frozenset(
    {"iproute2", "util-linux", "openssh-client", "curl", "git", "systemd", "tar", "findutils", "procps", "coreutils"}
)


@dataclass(frozen=True)
class Program:
    name: str
    package: str
    needed_by: str


PROGRAMS: tuple[Program, ...] = (
    Program("ip", "iproute2", "lab cabling, namespaces, every lab test"),
    Program("tc", "iproute2", "the VM proof's point-to-point links"),
    Program("ss", "iproute2", "lab port checks"),
    Program("nsenter", "util-linux", "entering lab containers' namespaces"),
    Program("unshare", "util-linux", "this check's throwaway namespace"),
    Program("taskset", "util-linux", "frontline release test (per-core pinning)"),
    Program("ssh", "openssh-client", "Ansible's transport to lab hosts and VMs"),
    Program("ssh-keygen", "openssh-client", "lab and VM host keys"),
    Program("curl", "curl", "lab HTTP checks, provisiond lab test"),
    Program("git", "git", "golden-file cleanliness check"),
    Program("tar", "tar", "image build"),
    Program("systemctl", "systemd", "disabling the system-wide bird and nginx units"),
    Program("bird", "bird2", "syntax checks of rendered BIRD configs, lab routers"),
    Program("birdc", "bird2", "lab route inspection"),
    Program("podman", "podman", "the lab PoP's containers, Molecule"),
    Program("runc", "runc", "podman's runtime (crun fails on this cgroup layout)"),
    Program("newuidmap", "uidmap", "podman"),
    Program("/usr/lib/podman/netavark", "netavark", "podman's network backend"),
    Program("/usr/lib/podman/aardvark-dns", "aardvark-dns", "podman's DNS on lab networks"),
    Program("iptables", "iptables", "netavark sets up its firewall rules with it"),
    Program("nft", "nftables", "the lab's forwarding guard, fault injection"),
    Program("mmdebstrap", "mmdebstrap", "the project's Debian image"),
    Program("zstd", "zstd", "image compression"),
    Program("cpio", "cpio", "initramfs and agents archive"),
    Program("busybox", "busybox", "tiny HTTP services in lab tests"),
    Program("nginx", "nginx-light", "frontline tests and bench/upgrade.py"),
    Program("dnsmasq", "dnsmasq-base", "provisiond's DHCP/TFTP"),
    Program("qemu-system-x86_64", "qemu-system-x86", "the VM proofs (bonds, IRQs, zero-touch provisioning)"),
)


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "LC_ALL": "C"}
    )


def _which(name: str) -> str | None:
    if name.startswith("/"):
        return name if os.access(name, os.X_OK) else None
    # sbin is not on every user's PATH; the programs are still there
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(name, path=path)


def check_programs(which: Callable[[str], str | None] | None = None) -> list[Finding]:
    which = which or _which
    found = []
    for prog in PROGRAMS:
        where = which(prog.name)
        fix = "" if where else f"apt-get install {prog.package}  (or: make setup)"
        found.append(
            Finding(f"program {prog.name}", bool(where), where or f"missing; needed for {prog.needed_by}", fix)
        )
    return found


def check_root(euid: int | None = None) -> Finding:
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return Finding("root", True, "running as root")
    return Finding("root", False, f"running as uid {euid}; the labs create namespaces and containers", "run as root")


def check_python() -> Finding:
    v = sys.version_info
    ok = (v.major, v.minor) == (3, 11)
    detail = f"Python {v.major}.{v.minor}.{v.micro}"
    return Finding("python", ok, detail, "" if ok else "use Python 3.11 (ansible-core 2.19 is pinned for it)")


# One throwaway network namespace (it dies with the shell): every kernel feature the labs use.
_KERNEL_PROBES: tuple[tuple[str, str], ...] = (
    ("network namespaces", "true"),
    ("veth", "ip link add dp-a type veth peer name dp-b"),
    ("bridge", "ip link add dp-br type bridge"),
    ("vxlan", "ip link add dp-vx type vxlan id 7 dstport 4789 local 198.51.100.1"),
    ("nftables", "nft add table inet dp && nft add chain inet dp c '{ type filter hook forward priority 0; }'"),
)


def check_kernel(run: Runner = _run) -> list[Finding]:
    found = []
    for name, probe in _KERNEL_PROBES:
        if name != "network namespaces" and not _which(probe.split()[0]):
            found.append(Finding(f"kernel {name}", False, f"cannot test: {probe.split()[0]} is missing", "make setup"))
            continue
        try:
            done = run(["unshare", "--net", "sh", "-c", probe])
        except (OSError, subprocess.TimeoutExpired) as exc:
            found.append(Finding(f"kernel {name}", False, f"cannot test: {exc}", "run as root on Linux"))
            continue
        detail = "works" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]
        found.append(
            Finding(f"kernel {name}", done.returncode == 0, detail, "" if done.returncode == 0 else "a kernel with it")
        )
    tun = Path("/dev/net/tun")
    found.append(
        Finding(
            "kernel tun/tap",
            tun.exists(),
            str(tun) if tun.exists() else "/dev/net/tun is missing",
            "" if tun.exists() else "modprobe tun",
        )
    )
    return found


def check_podman(run: Runner = _run) -> list[Finding]:
    if not _which("podman"):
        return [Finding("podman backend", False, "podman is missing", "make setup")]
    try:
        done = run(["podman", "info", "--format", "{{.Host.NetworkBackend}}"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("podman backend", False, f"podman info failed: {exc}", "make setup")]
    backend = done.stdout.strip()
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return [Finding("podman backend", False, f"podman info: {err}", "make setup")]
    ok = backend == "netavark"
    fix = "" if ok else "make setup (writes /etc/containers/containers.conf.d/50-edgepop.conf)"
    return [Finding("podman backend", ok, f"network backend {backend or 'unknown'}", fix)]


def diagnose(run: Runner = _run) -> list[Finding]:
    findings = [check_root(), check_python(), *check_programs()]
    if os.geteuid() == 0 and _which("unshare"):
        findings += check_kernel(run)
    findings += check_podman(run)
    return findings


def _cmd_doctor(args: argparse.Namespace) -> int:
    findings = diagnose()
    missing = [f for f in findings if not f.ok]
    if args.json:
        print(json.dumps({"ok": not missing, "checks": [asdict(f) for f in findings]}, indent=2))
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            if f.ok and args.quiet:
                continue
            line = f"{'ok     ' if f.ok else 'MISSING'}  {f.check:<{width}}  {f.detail}"
            print(line + (f"\n         {'':<{width}}  fix: {f.fix}" if f.fix else ""))
        if missing:
            print(f"edgepop doctor: {len(missing)} of {len(findings)} checks failed", file=sys.stderr)
        else:
            print(f"edgepop doctor: all {len(findings)} checks passed")
    return EX_UNAVAILABLE if missing else EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check this machine has every program and kernel feature the labs and tests need")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only what is missing (and the count)")
    p.set_defaults(func=_cmd_doctor)
