"""The frontline cache tier (templates/frontline/cache-tier.conf.j2) in real NGINX: objects are owned
by servers chosen by consistent hashing of the URL; removing or adding a server moves only about
1/N of the keys, and only the keys that server loses or gains; the owner caches what it fetched.

One NGINX in a network namespace plays every server: each "server" is a loopback address it listens
on, so the owner of a request is the address it arrived at (X-Cache-Owner: $server_addr).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgepop.templating import render_template

pytestmark = pytest.mark.lab

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("nginx", "curl", "ip")):
    pytest.skip("needs root, nginx, curl and iproute2", allow_module_level=True)

KEYS = [f"/objects/{n}.bin" for n in range(400)]


class Tier:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ns = f"epfc{os.getpid() % 100000}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.exec("ip", "link", "set", "lo", "up")
        (workdir / "cache").mkdir()
        self.conf = workdir / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def exec(self, *argv: str) -> str:
        argv = ("ip", "netns", "exec", self.ns, *argv)
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def configure(self, owners: list[int]) -> None:
        servers = [{"name": f"srv{n}", "address": f"127.0.0.{10 + n}"} for n in owners]
        tier = render_template(
            "frontline/cache-tier.conf.j2", servers=servers, port=8080, cache_path=self.workdir / "cache",
            cache_size="16m", origin="http://127.0.0.1:8081", owner="$server_addr",
        )  # fmt: skip
        (self.workdir / "tier.conf").write_text(tier)
        self.conf.write_text(
            # the workers run as root here: the test's directories are private to root
            "user root;\nworker_processes 1;\ndaemon off;\n"
            f"error_log {self.workdir}/error.log warn;\npid {self.workdir}/nginx.pid;\n"
            "events { worker_connections 256; }\n"
            "http {\n  access_log off;\n"
            f"  client_body_temp_path {self.workdir}/tmp;\n"
            f"  include {self.workdir}/tier.conf;\n"
            '  server { listen 127.0.0.1:8081; location / { return 200 "$request_uri\\n"; } }\n'
            "  server { listen 127.0.0.1:80; location / { proxy_pass http://frontline_cache_owners; } }\n"
            "}\n"
        )
        subprocess.run(["nginx", "-t", "-q", "-c", str(self.conf)], check=True, capture_output=True)
        if self.proc is None:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "nginx", "-c", str(self.conf)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        else:
            self.exec("nginx", "-c", str(self.conf), "-s", "reload")
            time.sleep(1.0)  # the old worker finishes, the new one takes the listeners

    def owners(self) -> dict[str, str]:
        """Key -> the address of the server that owns it (one request per key)."""
        script = (
            "for k in " + " ".join(KEYS) + "; do "
            "printf '%s ' $k; curl -s -o /dev/null -D - -m 2 http://127.0.0.1$k | "
            "tr -d '\\r' | sed -n 's/^X-Cache-Owner: //p'; done"
        )
        out = self.exec("sh", "-c", script)
        return dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)

    def cache_status(self, key: str) -> str:
        out = self.exec("curl", "-s", "-o", "/dev/null", "-D", "-", "-m", "2", f"http://127.0.0.1:8080{key}")
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


@pytest.fixture
def tier(tmp_path: Path) -> Iterator[Tier]:
    (tmp_path / "tmp").mkdir()
    t = Tier(tmp_path)
    try:
        t.exec("ip", "addr", "add", "127.0.0.10/8", "dev", "lo")  # the owners' addresses are lo's
        yield t
    finally:
        t.close()
        assert t.ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def wait_ready(tier: Tier) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            tier.exec("curl", "-s", "-m", "1", "http://127.0.0.1/objects/probe")
            return
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    raise AssertionError("nginx did not answer")


def test_consistent_hashing_moves_only_the_keys_a_server_loses_or_gains(tier: Tier) -> None:
    tier.configure(list(range(8)))
    wait_ready(tier)
    before = tier.owners()
    assert len(before) == len(KEYS)
    spread = {owner: list(before.values()).count(owner) for owner in set(before.values())}
    assert len(spread) == 8 and min(spread.values()) >= len(KEYS) / 8 / 3, spread  # every server owns a share

    # a server leaves: only its keys move, to the others
    tier.configure([n for n in range(8) if n != 3])
    after = tier.owners()
    moved = {k for k in KEYS if after[k] != before[k]}
    assert moved == {k for k in KEYS if before[k] == "127.0.0.13"}, "a key of another server moved"
    assert 0.04 < len(moved) / len(KEYS) < 0.25, len(moved)

    # a server joins: only keys it gains move, and all of them to it
    tier.configure(list(range(9)))
    joined = tier.owners()
    gained = {k for k in KEYS if joined[k] != before[k] and before[k] != "127.0.0.13"}
    assert gained and all(joined[k] == "127.0.0.18" for k in gained)
    assert len(gained) / len(KEYS) < 0.25, len(gained)
    print(f"one of 8 leaves: {len(moved)}/{len(KEYS)} keys move; a 9th joins: {len(gained)} move to it")


def test_the_owner_caches_what_it_fetched(tier: Tier) -> None:
    tier.configure(list(range(4)))
    wait_ready(tier)

    def headers() -> dict[str, str]:
        out = tier.exec("curl", "-s", "-D", "-", "-o", "/dev/null", "-m", "2", "http://127.0.0.1/objects/cached.bin")
        return dict(line.strip().split(": ", 1) for line in out.splitlines() if ": " in line)

    first, second = headers(), headers()
    assert first["X-Cache-Status"] == "MISS" and second["X-Cache-Status"] == "HIT", (first, second)
    assert first["X-Cache-Owner"] == second["X-Cache-Owner"]
    assert [p for p in tier.workdir.joinpath("cache").rglob("*") if p.is_file()], "nothing was cached"
    assert "max_size=16m" in (tier.workdir / "tier.conf").read_text()
