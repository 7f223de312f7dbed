"""bench/ahc.py drives the real anycast-healthchecker against a real BIRD, in a namespace the test makes.

BIRD reads the include anycast-healthchecker manages and imports its static anycast route through
the adapter's filter, so the route is in `show route` exactly while the prefix is in the constant.
The check is `test -e FLAG`: removing FLAG must make anycast-healthchecker rewrite the include
without the prefix and reconfigure BIRD; putting it back announces the prefix again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ahc

pytestmark = pytest.mark.lab

NS = "ahcprobe"
PREFIX = "203.0.113.100/32"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("bird", "birdc", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install bird2 iproute2)"
    if subprocess.run(["ip", "netns", "pids", NS], capture_output=True, check=False).returncode == 0:
        return f"network namespace {NS} already exists (another run?)"
    return None


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll until `predicate` holds; return how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ns_argv(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", NS, *argv]


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_check_failure_withdraws_and_recovery_announces(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        exe = ahc.ensure_installed(lambda _msg: None)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        pytest.skip(f"cannot install anycast-healthchecker into {ahc.AHC_VENV}: {exc}")

    birdc = shutil.which("birdc")
    assert birdc
    sock, bird_conf = tmp_path / "bird.ctl", tmp_path / "bird.conf"
    include = tmp_path / "ahc" / "anycast-prefixes.conf"
    include.parent.mkdir()
    include.write_text(ahc.initial_include(PREFIX))
    bird_conf.write_text(
        "log stderr all;\n"
        "router id 198.51.100.11;\n"
        + ahc.bird_filter_snippet(include)
        + "protocol device {}\n"
        + f"protocol static anycast_v4 {{ ipv4 {{ import filter ahc_export; }}; route {PREFIX} blackhole; }}\n"
    )
    flag = tmp_path / "healthy"
    flag.touch()
    config = ahc.write_config(
        tmp_path / "ahc",
        bird_socket=str(sock),
        birdc=birdc,
        bird_conf=include,
        prefix=PREFIX,
        check_cmd=f"test -e {flag}",
        interval_s=1,
        timeout_s=0.5,
        fail=1,
    )
    ahc_log = tmp_path / "ahc.log"

    def birdc_out(*cmd: str) -> str:
        argv = ns_argv(birdc, "-s", str(sock), *cmd)
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=5).stdout

    def announced() -> bool:
        return PREFIX in birdc_out("show", "route")

    def last_reconfiguration() -> str:
        match = re.search(r"^Last reconfiguration on (.+)$", birdc_out("show", "status"), re.MULTILINE)
        assert match, "no reconfiguration time in `show status`"
        return match.group(1)

    def logged(text: str) -> Callable[[], bool]:
        return lambda: text in ahc_log.read_text()

    bird = agent = None
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True)
    try:
        subprocess.run(ns_argv("ip", "link", "set", "lo", "up"), check=True)
        # the package checks the prefix is on `lo` before every check
        subprocess.run(ns_argv("ip", "addr", "add", PREFIX, "dev", "lo"), check=True)
        with open(tmp_path / "bird.log", "wb") as out:
            bird = subprocess.Popen(
                ns_argv("bird", "-f", "-c", str(bird_conf), "-s", str(sock), "-P", str(tmp_path / "bird.pid")),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for("BIRD announcing the initial include", announced)

        # the package's defaults are what the adapter says they are
        printed = subprocess.run([str(exe), "--print"], capture_output=True, text=True, check=True).stdout
        for key, value in ahc.DEFAULTS.items():
            assert re.search(rf"^check_{key} = {value:g}$", printed, re.MULTILINE), (key, printed)

        with open(ahc_log, "wb") as out:
            agent = subprocess.Popen(
                ns_argv(*ahc.argv(exe, config)), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for("the service UP", logged("changed to UP"))  # rise (default 2) passes at 1 s each
        assert agent.poll() is None, ahc_log.read_text()
        assert announced()
        before = last_reconfiguration()

        flag.unlink()
        took = wait_for("the prefix withdrawn", lambda: not announced(), timeout=5)
        assert took < 3.0, f"withdrawal took {took:.2f} s with interval 1 s, fail 1"
        text = include.read_text()
        assert PREFIX not in text and ahc.DUMMY_PREFIX in text, text
        assert f"define {ahc.VARIABLE} =" in text
        assert last_reconfiguration() != before
        wait_for("the reconfigure logged", logged("reconfigured BIRD daemon"), timeout=3)

        flag.touch()
        wait_for("the prefix announced again", announced, timeout=6)
        assert PREFIX in include.read_text()
        assert "ERROR" not in ahc_log.read_text(), ahc_log.read_text()

        # SIGTERM: exit 0 and the pidfile goes; it does not withdraw anything on the way out
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(5) == 0, ahc_log.read_text()
        assert not (config.parent / "anycast-healthchecker.pid").exists()
        assert announced()
    finally:
        stop(agent)
        stop(bird)
        pids = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True, check=False).stdout
        for pid in pids.split():  # whatever is left in our namespace (a check command, a birdc)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", NS], check=False, capture_output=True)
