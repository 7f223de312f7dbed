"""The healthd process end to end without root: `python -m edgepop.agents.healthd` against a fake
BIRD control socket that keeps protocol state and answers in BIRD 2's recorded format. SIGHUP
reloads, SIGTERM withdraws everything and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

HEADER = "2002-Name       Proto      Table      State  Since         Info\n"
STATUS = (
    "1000-BIRD 2.0.12\n1011-Router ID is 198.51.100.11\n Current server time is 2026-11-22 04:56:08.625\n"
    " Last reboot on 2026-11-22 04:56:07.393\n Last reconfiguration on 2026-11-22 04:56:07.393\n"
    "0013 Daemon is up and running\n"
)


class StatefulBird:
    """Enough of BIRD's control socket for healthd: show status/protocols, enable, disable."""

    def __init__(self, path: str, protocols: list[str]) -> None:
        self.enabled = dict.fromkeys(protocols, True)
        self.commands: list[str] = []
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(path)
        self._srv.listen(4)
        self._srv.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reply(self, cmd: str) -> str:
        if cmd == "show status":
            return STATUS
        if cmd == "show protocols":
            rows = [
                f"{n} Static     master4    {'up' if on else 'down'}   04:56:07.393  " for n, on in self.enabled.items()
            ]
            return HEADER + "".join(f"{'1002-' if i == 0 else ' '}{r}\n" for i, r in enumerate(rows)) + "0000 \n"
        verb, _, name = cmd.partition(" ")
        name = name.strip('"')
        if verb in ("enable", "disable") and name in self.enabled:
            self.commands.append(f"{verb} {name}")
            want = verb == "enable"
            code = (11 if want else 9) if self.enabled[name] != want else (10 if want else 8)
            self.enabled[name] = want
            return f"{code:04d}-{name}: {verb}d\n0000 \n"
        return "8003 No protocols match\n"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            buf = b""
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    conn.sendall(self.reply(line.decode()).encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._srv.close()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def service(name: str, flag: Path) -> dict[str, Any]:
    return {
        "name": name,
        "protocols": [f"static_{name}_v4"],
        "address": "203.0.113.100",
        "check": {
            "type": "exec",
            "command": ["test", "-e", str(flag)],
            "interval_s": 0.1,
            "timeout_s": 0.1,
            "rise": 2,
            "fall": 2,
        },
    }


@pytest.fixture
def bird(tmp_path: Path) -> Iterator[StatefulBird]:
    fake = StatefulBird(str(tmp_path / "bird.ctl"), ["static_http_v4", "static_dns_v4"])
    try:
        yield fake
    finally:
        fake.close()


def test_daemon_withdraws_reloads_and_drains_on_sigterm(tmp_path: Path, bird: StatefulBird) -> None:
    flag = tmp_path / "healthy"
    flag.touch()
    conf = tmp_path / "healthd.yml"
    base = {
        "hostname": "srv1",
        "bird": {"socket": str(tmp_path / "bird.ctl"), "poll_interval_s": 0.1},
        "state_file": str(tmp_path / "state.json"),
    }
    conf.write_text(yaml.safe_dump({**base, "services": [service("http", flag)]}))
    log = tmp_path / "healthd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgepop.agents.healthd", "--config", str(conf)], stdout=out, stderr=out
        )
    try:
        wait_for("adoption", lambda: 'msg="adopted as announced"' in log.read_text())
        flag.unlink()
        wait_for("withdrawal", lambda: bird.commands == ["disable static_http_v4"])
        flag.touch()
        wait_for("announcement", lambda: bird.commands[-1:] == ["enable static_http_v4"])
        # SIGHUP: a broken file is refused, the running config stays; a good one adds dns
        conf.write_text("services: [\n")
        proc.send_signal(signal.SIGHUP)
        wait_for("refusal", lambda: "reload refused" in log.read_text())
        conf.write_text(yaml.safe_dump({**base, "services": [service("http", flag), service("dns", flag)]}))
        proc.send_signal(signal.SIGHUP)
        wait_for("reload", lambda: 'msg="configuration reloaded" host=srv1 services=http,dns' in log.read_text())
        wait_for("dns adopted", lambda: 'msg="adopted as announced" host=srv1 service=dns' in log.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text()
        assert bird.enabled == {"static_http_v4": False, "static_dns_v4": False}
        assert (tmp_path / "state.json").read_text().count("static_") == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
