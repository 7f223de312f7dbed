"""healthd against a real BIRD and a real service, in a network namespace the test makes.

busybox httpd on the anycast address is the service; BIRD has one static protocol per service. The
httpd is killed: healthd must withdraw that service's protocol (only that one), restart the httpd with
its exec restart command, and announce it again once it passes. BIRD stops, the service fails
meanwhile, BIRD comes back with every protocol enabled: healthd must reconnect and withdraw the failed
service again. SIGTERM: healthd withdraws everything and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from edgepop.bird.control import BirdControl, BirdUnavailable

pytestmark = pytest.mark.lab

ADDR = "203.0.113.100"
DNS_ADDR = "203.0.113.101"

BIRD_CONF = f"""\
log stderr all;
router id 198.51.100.11;
protocol device {{}}
protocol static static_http_v4 {{ ipv4; route {ADDR}/32 blackhole; }}
protocol static static_dns_v4 {{ ipv4; route {DNS_ADDR}/32 blackhole; }}
"""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("bird", "busybox", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install bird2 busybox iproute2)"
    return None


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll until `predicate` holds; return how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


class Ns:
    def __init__(self, name: str) -> None:
        self.name = name

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, *argv: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        return subprocess.Popen(self.argv(*argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def enabled(bird: BirdControl, name: str) -> bool | None:
    try:
        protos = bird.show_protocols()
    except BirdUnavailable:
        return None
    return protos[name].state == "up" if name in protos else None


def test_service_failure_restart_bird_restart_and_drain(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    ns = Ns(f"edgepop-hd-{os.getpid()}")
    www = tmp_path / "www"
    www.mkdir()
    (www / "healthz").write_text("ok\n")
    conf, sock = tmp_path / "bird.conf", tmp_path / "bird.ctl"
    conf.write_text(BIRD_CONF)
    hd_conf = tmp_path / "healthd.yml"
    hd_log = tmp_path / "healthd.log"
    httpd_argv = ["busybox", "httpd", "-p", f"{ADDR}:80", "-h", str(www)]
    check = {"interval_s": 0.2, "timeout_s": 0.15, "rise": 2, "fall": 2}
    hd_conf.write_text(
        yaml.safe_dump(
            {
                "hostname": "srv-test",
                "bird": {"socket": str(sock), "poll_interval_s": 0.2},
                "state_file": str(tmp_path / "healthd-state.json"),
                "services": [
                    {
                        "name": "http",
                        "protocols": ["static_http_v4"],
                        "address": ADDR,
                        "check": {"type": "http", "port": 80, "path": "/healthz", **check},
                        "fast_interval_s": 0.05,
                        # busybox httpd forks into the background: the command returns at once
                        "restart": {"command": httpd_argv, "timeout_s": 5, "retry_s": 2},
                    },
                    {
                        "name": "dns",
                        "protocols": ["static_dns_v4"],
                        "address": DNS_ADDR,
                        "check": {"type": "exec", "command": ["true"], **check},
                    },
                ],
            }
        )
    )
    bird = healthd = httpd = None
    control = BirdControl(str(sock), timeout=2)
    run("ip", "netns", "add", ns.name)
    try:
        run(*ns.argv("ip", "link", "set", "lo", "up"))
        run(*ns.argv("ip", "addr", "add", f"{ADDR}/32", "dev", "lo"))
        run(*ns.argv("ip", "addr", "add", f"{DNS_ADDR}/32", "dev", "lo"))
        bird_argv = ("bird", "-f", "-c", str(conf), "-s", str(sock), "-P", str(tmp_path / "bird.pid"))
        bird = ns.popen(*bird_argv, log=tmp_path / "bird.log")
        httpd = ns.popen(*httpd_argv, "-f")  # the first one in the foreground: the test kills it
        wait_for("BIRD's static protocols", lambda: enabled(control, "static_http_v4") is True)
        healthd = ns.popen(sys.executable, "-m", "edgepop.agents.healthd", "--config", str(hd_conf), log=hd_log)

        def logged(text: str, times: int = 1) -> Callable[[], bool]:
            return lambda: hd_log.read_text().count(text) >= times

        wait_for("healthd adopting the services", logged('msg="adopted as announced" host=srv-test service=dns'))
        assert enabled(control, "static_http_v4") is True  # adopted, not flapped

        # the service dies: only its protocol goes, within fall x fast interval plus a poll
        httpd.kill()
        httpd.wait()
        took = wait_for("http withdrawn", lambda: enabled(control, "static_http_v4") is False, timeout=5)
        assert took < 2.0, f"withdrawal took {took:.2f} s"
        assert enabled(control, "static_dns_v4") is True
        # healthd restarts it with the exec command, and announces it after `rise` passes
        wait_for("http announced again", lambda: enabled(control, "static_http_v4") is True, timeout=10)
        log = hd_log.read_text()
        assert "msg=restarting host=srv-test service=http" in log
        assert log.index("msg=withdrawn") < log.index("msg=restarting")

        # BIRD goes away, and the service fails while it is gone: nothing can be withdrawn. When
        # BIRD is back (every protocol enabled from its config), healthd withdraws it at once.
        stop(bird)
        wait_for("healthd noticing BIRD is gone", logged('msg="BIRD unavailable; will retry"'))
        (www / "healthz").unlink()  # now the check gets 404: a restart does not help
        wait_for("http down", logged('msg="service down: withdrawing its routes"', times=2))
        bird = ns.popen(*bird_argv, log=tmp_path / "bird2.log")
        wait_for("BIRD back", lambda: enabled(control, "static_dns_v4") is True)
        wait_for("http withdrawn again", lambda: enabled(control, "static_http_v4") is False, timeout=3)
        assert logged("BIRD restarted or reconfigured: re-asserting")()
        (www / "healthz").write_text("ok\n")
        wait_for("http back", lambda: enabled(control, "static_http_v4") is True)

        # SIGTERM: a drain, then exit 0
        healthd.send_signal(signal.SIGTERM)
        assert healthd.wait(10) == 0, hd_log.read_text()
        assert enabled(control, "static_http_v4") is False
        assert enabled(control, "static_dns_v4") is False
    finally:
        control.close()
        stop(healthd)
        stop(httpd)
        stop(bird)
        for pid in ns.pids():  # the httpd healthd started, and anything else left in our namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns.name], check=False, capture_output=True)
