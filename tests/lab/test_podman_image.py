"""Lab test: the edgepop image boots systemd in podman, answers SSH from the host, and runs BIRD.

This is the contract the lab PoP relies on: one container per box, systemd as PID 1, Ansible over
SSH straight from the host on an `--internal` podman network (nothing routes off the machine), and
BIRD able to install kernel routes. Builds the image on first use (about 35 s) and reuses the cache
under .cache/image afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgepop.image import build_rootfs, import_container_image, podman_run_argv

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("EDGEPOP_IMAGE_CACHE", REPO_ROOT / ".cache" / "image"))
PREFIX = "edgepop-test-"
# Candidate subnets for the test's own network; podman refuses one that a network or a host
# interface already uses, so a parallel lab run just moves to the next one.
SUBNETS = ("203.0.113.224/29", "203.0.113.232/29", "203.0.113.240/29", "203.0.113.248/29")
BOOT_TIMEOUT_S = 60.0
LAB_PACKAGES = "podman runc mmdebstrap uidmap zstd openssh-client"


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (podman with runc, mmdebstrap in root mode)"
    for tool in ("podman", "runc", "mmdebstrap", "zstd", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: apt-get install -y {LAB_PACKAGES}"
    return None


_REASON = _missing_prerequisite()
if _REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=_REASON))


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _wait_for(what: str, probe: Callable[[], str | None], timeout: float = BOOT_TIMEOUT_S) -> str:
    """Poll `probe` until it returns a value; fail with the last observation after `timeout`."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (OSError, subprocess.SubprocessError) as exc:
            result, last = None, str(exc)
        if result is not None:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


@pytest.fixture(scope="module")
def image_tag() -> str:
    return import_container_image(build_rootfs("container", CACHE_DIR))


@contextlib.contextmanager
def _internal_network(name: str) -> Iterator[ipaddress.IPv4Network]:
    created = None
    errors = []
    for subnet in SUBNETS:
        proc = _run("podman", "network", "create", "--internal", "--subnet", subnet, name, check=False)
        if proc.returncode == 0:
            created = ipaddress.IPv4Network(subnet)
            break
        errors.append(proc.stderr.strip())
    if created is None:
        pytest.fail(f"no free test subnet among {SUBNETS}: {errors}")
    try:
        yield created
    finally:
        _run("podman", "network", "rm", "--force", name, check=False)


def test_container_boots_systemd_serves_ssh_and_runs_bird(image_tag: str, tmp_path: Path) -> None:
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    key = tmp_path / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key))

    with _internal_network(name) as subnet:
        hosts = list(subnet.hosts())  # the first one is the host's bridge (podman's gateway)
        ip = str(hosts[1])
        ssh = ["ssh", "-F", "none", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", f"root@{ip}"]  # fmt: skip
        try:
            started = time.monotonic()
            pubkey = key.with_suffix(".pub")
            _run(*podman_run_argv(name, image_tag, network=name, ips=[ip], authorized_keys=pubkey))

            def system_state() -> str | None:
                proc = _run(*ssh, "systemctl", "is-system-running", check=False)
                state = proc.stdout.strip()
                return state if state in ("running", "degraded") else None

            state = _wait_for(f"sshd and systemd in {name} at {ip}", system_state)
            ready_s = time.monotonic() - started
            failed = _run(*ssh, "systemctl", "--failed", "--no-legend", "--plain").stdout
            assert state == "running", f"systemd is {state}; failed units:\n{failed}"
            assert _run(*ssh, "cat", "/proc/1/comm").stdout.strip() == "systemd"
            assert ready_s < BOOT_TIMEOUT_S

            version = _run(*ssh, "bird", "--version")
            assert "BIRD version 2." in version.stdout + version.stderr

            # BIRD starts with its own socket, answers on it, and (NET_ADMIN) installs a kernel route.
            conf = (
                f"router id {ip};\n"
                "protocol device {}\n"
                "protocol static anycast { ipv4; route 203.0.113.128/25 via " + str(hosts[0]) + "; }\n"
                "protocol kernel { ipv4 { export all; }; }\n"
            )
            _run(*ssh, "mkdir -p /run/edgepop && cat > /run/edgepop/bird.conf", input=conf)
            _run(*ssh, "bird", "-c", "/run/edgepop/bird.conf", "-s", "/run/edgepop/bird.ctl",
                 "-P", "/run/edgepop/bird.pid")  # fmt: skip

            def bird_up() -> str | None:
                out = _run(*ssh, "birdc", "-s", "/run/edgepop/bird.ctl", "show", "status", check=False).stdout
                return out if "Daemon is up and running" in out else None

            _wait_for("birdc show status", bird_up, timeout=15)

            def kernel_route() -> str | None:
                out = _run(*ssh, "ip", "route", "show", "proto", "bird").stdout
                return out if "203.0.113.128/25" in out else None

            _wait_for("BIRD's route in the kernel table", kernel_route, timeout=15)
        finally:
            _run("podman", "rm", "--force", "--time", "5", name, check=False)
