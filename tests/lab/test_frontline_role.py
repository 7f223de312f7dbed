"""The frontline role on a box of the project's image (podman, systemd, SSH): one pinned instance
per core from the template unit, then a release of a new version core by core while a client inside
the box keeps requesting: no failed request, every core on the new version and pinned to its core, a
second run changes nothing, and a version that fails its health check is rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgepop.image import build_rootfs, import_container_image, podman_run_argv

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("EDGEPOP_IMAGE_CACHE", ROOT / ".cache" / "image"))
SUBNET = "203.0.113.232/29"
ADDRESS = "203.0.113.100"
CORES = [0, 1] if (os.cpu_count() or 1) >= 2 else [0]

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("podman", "runc", "mmdebstrap", "ssh", "ssh-keygen")):
    pytest.skip("needs root, podman, runc, mmdebstrap and ssh", allow_module_level=True)


def run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


class Box:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.name = f"edgepop-test-fl{uuid.uuid4().hex[:6]}"
        self.key = tmp / "id_ed25519"
        self.ip = ""

    def ssh(self, *argv: str, check: bool = True) -> str:
        return run("ssh", "-F", "none", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                   f"root@{self.ip}", *argv, check=check).stdout  # fmt: skip

    def play(self, version: str, **extra: Any) -> dict[str, Any]:
        variables = {
            "edgepop_device": {"hostname": "srv1", "services": [{"name": "http", "prefixes_v4": [f"{ADDRESS}/32"]}]},
            "frontline__version": version,
            "frontline__cores": CORES,
            "frontline__check_timeout_s": 5,
            **extra,
        }
        (self.tmp / "vars.json").write_text(json.dumps(variables))
        book = self.tmp / "play.yml"
        book.write_text("- hosts: all\n  gather_facts: false\n  roles: [{role: frontline}]\n")
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
               "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
               "ANSIBLE_HOST_KEY_CHECKING": "false"}  # fmt: skip
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", f"{self.ip},", "-u", "root",
             "--private-key", str(self.key), "-e", f"@{self.tmp / 'vars.json'}", str(book)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
        )  # fmt: skip
        start = done.stdout.find("{")
        assert start >= 0, done.stdout + done.stderr
        report, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
        stats: dict[str, Any] = report["stats"][self.ip]
        tasks = {t["task"]["name"]: t["hosts"].get(self.ip, {}) for t in report["plays"][0]["tasks"]}
        failed = {name: r.get("msg") or r for name, r in tasks.items() if r.get("failed")}
        return {"stats": stats, "tasks": tasks, "failed": failed}

    def versions(self) -> list[str]:
        """Each core's answer to its health check (tried a few times: a busy machine is slow)."""
        answers = []
        for core in CORES:
            url = f"http://127.0.0.1:{9100 + core}/health"
            answer = ""
            for _ in range(5):
                answer = self.ssh("curl", "-s", "-m", "3", url, check=False).strip()
                if answer:
                    break
                time.sleep(0.5)
            answers.append(answer)
        return answers

    def pinned(self) -> bool:
        for core in CORES:
            unit = f"edgepop-frontline@{core}.service"
            pids = self.ssh("systemctl", "show", "-p", "MainPID", "--value", unit).strip()
            allowed = self.ssh(f"for p in {pids} $(cat /proc/{pids}/task/*/children); do "
                               "grep Cpus_allowed_list /proc/$p/status; done").split()  # fmt: skip
            values = [v for v in allowed if v != "Cpus_allowed_list:"]
            if len(values) < 2 or any(v != str(core) for v in values):
                return False
        return True


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    tag = import_container_image(build_rootfs("container", CACHE_DIR))
    b = Box(tmp_path)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(b.key))
    run("podman", "network", "create", "--internal", "--subnet", SUBNET, b.name)
    try:
        b.ip = "203.0.113.234"
        run(*podman_run_argv(b.name, tag, network=b.name, ips=[b.ip], authorized_keys=b.key.with_suffix(".pub"),
                             sysctls=["net.ipv4.tcp_migrate_req=1"]))  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if b.ssh("systemctl", "is-system-running", check=False).strip() in ("running", "degraded"):
                break
            time.sleep(0.3)
        b.ssh("ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo")
        yield b
    finally:
        run("podman", "rm", "--force", "--time", "2", b.name, check=False)
        run("podman", "network", "rm", "--force", b.name, check=False)


def test_install_then_release_core_by_core_under_load(box: Box) -> None:
    first = box.play("1")
    assert first["stats"]["failures"] == 0, first["failed"]
    assert box.versions() == ["1"] * len(CORES)
    assert box.pinned()

    # a client inside the box: 300 requests, a new connection each, while version 2 is released
    box.ssh(f"nohup sh -c 'for i in $(seq 300); do curl -s -m 5 -o /dev/null -w \"%{{http_code}}/%{{exitcode}}\\n\" "
            f"http://{ADDRESS}/; sleep 0.02; done > /tmp/load.log; touch /tmp/load.done' "
            ">/dev/null 2>&1 &")  # fmt: skip
    second = box.play("2")
    assert second["stats"]["failures"] == 0, second["failed"]
    released = second["tasks"][next(n for n in second["tasks"] if n.startswith("frontline : Move every core"))]
    assert [c["core"] for c in released["cores"]] == CORES
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "yes" not in box.ssh("test -e /tmp/load.done && echo yes", check=False):
        time.sleep(0.5)
    codes = box.ssh("cat", "/tmp/load.log").split()
    # each line: HTTP status/curl exit code (7 refused, 28 timed out, 52/56 reset or empty)
    assert len(codes) == 300 and set(codes) == {"200/0"}, {c: codes.count(c) for c in set(codes)}
    assert box.versions() == ["2"] * len(CORES)
    assert box.pinned()

    again = box.play("2")
    assert again["stats"]["changed"] == 0, again


def test_a_version_failing_its_health_check_is_rolled_back(box: Box) -> None:
    assert box.play("1")["stats"]["failures"] == 0
    # version 3 listens on the port sshd holds: it passes `nginx -t`, but its instances cannot start
    broken = box.play("3", frontline__port=22)
    assert broken["stats"]["failures"] == 1
    assert "did not pass its health check" in next(iter(broken["failed"].values()))
    assert box.versions() == ["1"] * len(CORES)
    assert box.pinned()


def test_cache_tier_from_the_peers(box: Box) -> None:
    # srv1 is this box (its server-LAN address on lo); srv9 runs the service too but is down, so the
    # URLs it owns fall through to the next owner on the ring: every answer comes from srv1's cache.
    device = {
        "hostname": "srv1",
        "services": [{"name": "http", "prefixes_v4": [f"{ADDRESS}/32"]}],
        "peers": [
            {"name": "srv1", "address_v4": "127.0.0.41", "services": ["http", "dns"]},
            {"name": "srv9", "address_v4": "127.0.0.49", "services": ["http"]},
            {"name": "srv5", "address_v4": "127.0.0.45", "services": ["dns"]},
        ],
    }
    first = box.play("1", edgepop_device=device)
    assert first["stats"]["failures"] == 0, first["failed"]
    core_conf = box.ssh("cat", f"/etc/edgepop/frontline/1-{CORES[0]}.conf")
    assert "127.0.0.41:8081" in core_conf and "127.0.0.49:8081" in core_conf
    assert "127.0.0.45" not in core_conf  # not a server of the frontline's services
    assert box.ssh("systemctl", "is-active", "edgepop-frontline-cache.service").strip() == "active"

    def fetch(path: str) -> tuple[str, dict[str, str]]:
        out = box.ssh("curl", "-s", "-m", "5", "-D", "-", f"http://{ADDRESS}{path}")
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
        return body.strip(), {k.lower(): v for k, v in headers.items()}

    for n in range(8):
        path = f"/objects/{n}.bin"
        body, headers = fetch(path)
        assert body == f"object {path} from the origin stand-in on srv1", body
        assert (headers["x-served-by"], headers["x-cache-owner"]) == ("srv1", "srv1"), headers
        assert headers["x-cache-status"] == "MISS", headers
        assert fetch(path)[1]["x-cache-status"] == "HIT"
    assert box.ssh("find", "/var/cache/edgepop-frontline", "-type", "f").count("\n") >= 8
    assert fetch("/healthz")[0] == "ok"  # answered by the instance itself, never by the cache

    # the target groups the instances: stopping it stops them all, a restart brings them back
    box.ssh("systemctl", "stop", "edgepop-frontline.target")
    assert box.versions() == [""] * len(CORES)
    box.ssh("systemctl", "restart", "edgepop-frontline.target")
    assert box.versions() == ["1"] * len(CORES)
    assert box.play("1", edgepop_device=device)["stats"]["changed"] == 0
