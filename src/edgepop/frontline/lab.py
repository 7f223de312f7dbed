"""The frontline proxy on this machine, for the release test and `bench/upgrade.py`.

A network namespace holds the service address and NGINX (Debian's binary, the one the image
ships); a load generator inside it opens a new connection per request at a fixed rate; a sampler
reads every NGINX process of the namespace from /proc (resident memory, the CPUs each worker may
run on) until stopped. Each NGINX config is written here from the same few lines the role renders:
one worker, `reuseport` on the service address, a health listener per core.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgepop.frontline.release import cpus_allowed, rss_kib

SERVICE_V4 = "203.0.113.100"
HEALTH_BASE = 9100

LOAD_SCRIPT = r"""
import http.client, json, os, sys, time
address, rate, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ok = failed = 0
errors = {}
interval = 1.0 / rate
next_at = time.monotonic()
while not os.path.exists(stop):
    try:
        conn = http.client.HTTPConnection(address, 80, timeout=2)
        conn.request("GET", "/")
        body = conn.getresponse().read()
        conn.close()
        ok += 1
    except Exception as exc:
        failed += 1
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
print(json.dumps({"ok": ok, "failed": failed, "errors": errors}))
"""


def nginx_conf(
    workdir: Path, version: str, *, workers: int = 1, health_port: int | None, affinity: str = "", daemon: bool = False
) -> str:
    """An NGINX config: `workers` workers answering `frontline <version>` on the service address
    with reuseport, and a health listener on loopback when `health_port` is given. NGINX's own binary
    upgrade (USR2) works only for a daemonized master (`daemon=True`)."""
    health = (
        f'    server {{ listen 127.0.0.1:{health_port}; location /health {{ return 200 "{version}\\n"; }} }}\n'
        if health_port
        else ""
    )
    return (
        f"worker_processes {workers};\n"
        + (f"worker_cpu_affinity {affinity};\n" if affinity else "")
        + ("" if daemon else "daemon off;\n")
        + f"error_log {workdir}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {workdir}/tmp;\n"
        f'    server {{ listen {SERVICE_V4}:80 reuseport; location / {{ return 200 "frontline {version}\\n"; }} }}\n'
        f"{health}"
        "}\n"
    )


@dataclass
class FrontlineNs:
    """A namespace with the service address on lo and `tcp_migrate_req` on."""

    name: str
    inode: int = 0

    def __post_init__(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.exec("ip", "link", "set", "lo", "up")
        self.exec("ip", "addr", "add", f"{SERVICE_V4}/32", "dev", "lo")
        self.exec("sysctl", "-qw", "net.ipv4.tcp_migrate_req=1")
        self.inode = os.stat(f"/run/netns/{self.name}").st_ino

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(self, *argv: str) -> str:
        return subprocess.run(self.argv(*argv), check=True, capture_output=True, text=True).stdout

    def healthy(self, url: str, version: str) -> bool:
        done = subprocess.run(self.argv("curl", "-s", "-m", "1", url), capture_output=True, text=True, check=False)
        return done.returncode == 0 and version in done.stdout

    def nginx_pids(self) -> list[int]:
        """Every NGINX process in this namespace."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() != "nginx":
                    continue
                if os.stat(entry / "ns" / "net").st_ino == self.inode:
                    pids.append(int(entry.name))
        return pids

    def delete(self) -> None:
        for pid in self.nginx_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@dataclass
class Load:
    """A load generator in the namespace: `rate` new connections per second until stopped."""

    ns: FrontlineNs
    workdir: Path
    rate: float = 100.0
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Load:
        stop = self.workdir / "load.stop"
        with contextlib.suppress(FileNotFoundError):
            stop.unlink()
        self.proc = subprocess.Popen(
            self.ns.argv(sys.executable, "-c", LOAD_SCRIPT, SERVICE_V4, str(self.rate), str(stop)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        return self

    def stop(self) -> dict[str, object]:
        assert self.proc is not None
        (self.workdir / "load.stop").touch()
        out, err = self.proc.communicate(timeout=30)
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {err.strip()}")
        result: dict[str, object] = json.loads(out)
        return result

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Sampler:
    """Every `interval_s`: the summed resident memory of the namespace's NGINX processes, and whether
    two workers may run on the same CPU."""

    ns: FrontlineNs
    interval_s: float = 0.02
    samples: list[int] = field(default_factory=list)
    worker_rss: list[int] = field(default_factory=list)
    shared_core_samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = self.ns.nginx_pids()
        total = 0
        cores: dict[str, int] = {}
        for pid in pids:
            rss = rss_kib(pid)
            total += rss
            with contextlib.suppress(OSError):
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid in pids:  # a worker (its parent is an NGINX master)
                    self.worker_rss.append(rss)
                    allowed = cpus_allowed(pid)
                    cores[allowed] = cores.get(allowed, 0) + 1
        self.samples.append(total)
        if any(n > 1 for n in cores.values()):
            self.shared_core_samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval_s)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
