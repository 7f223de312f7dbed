"""recoveryd's probes, status text and command line, without a PoP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepop.agents.recoveryd.daemon import healthd_probe, reach_probe
from edgepop.agents.recoveryd.status import metrics_text

PASSWORD = "cli-bmc-pw-31"


@pytest.fixture
def healthd_status() -> Iterator[tuple[str, dict[str, Any]]]:
    report: dict[str, Any] = {"services": {"http": {"health": "up"}, "dns": {"health": "up"}}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(report).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/status", report
    finally:
        server.shutdown()
        server.server_close()


def test_reach_counts_an_accept_and_a_refusal_as_alive() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert reach_probe("127.0.0.1", port, 0.5) is True
    assert reach_probe("127.0.0.1", port, 0.5) is True, "refused: the kernel answered"


def test_healthd_probe_answers_and_green(healthd_status: tuple[str, dict[str, Any]]) -> None:
    url, report = healthd_status
    assert healthd_probe(url, 1.0) == (True, True)
    report["services"]["dns"]["health"] = "down"
    assert healthd_probe(url, 1.0) == (True, False)
    report["services"] = {}
    assert healthd_probe(url, 1.0) == (True, False), "no service at all is not green"


def test_healthd_probe_silent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert healthd_probe(f"http://127.0.0.1:{port}/status", 0.5) == (False, False)


def test_metrics_text() -> None:
    snap = {
        "in_flight": 1,
        "down": 2,
        "servers": {
            "srv1": {
                "state": "cycling",
                "signals": {"bgp": None, "reach": False, "healthd": False, "green": False},
                "attempts_total": 1,
                "failures_total": 0,
                "recoveries_total": 0,
            }
        },
    }
    text = metrics_text(snap)
    assert 'edgepop_recoveryd_server_state{server="srv1",state="cycling"} 1' in text
    assert 'edgepop_recoveryd_server_state{server="srv1",state="healthy"} 0' in text
    assert 'signal="bgp"' not in text and 'edgepop_recoveryd_signal_ok{server="srv1",signal="reach"} 0' in text
    assert "edgepop_recoveryd_in_flight 1" in text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgepop.agents.recoveryd", *args], capture_output=True, text=True, check=False
    )


def test_cli_check_and_print_config_mask_credentials(tmp_path: Path) -> None:
    conf = tmp_path / "recoveryd.yml"
    data = {
        "pop": "lab1",
        "dry_run": True,
        "servers": [
            {
                "name": "srv1",
                "reach": {"address": "198.51.100.11"},
                "ipmi": {"address": "203.0.113.21", "username": "admin", "password": PASSWORD},
            }
        ],
    }
    conf.write_text(yaml.safe_dump(data))
    check = _cli("--check-config", "--config", str(conf))
    assert check.returncode == 0 and "OK (1 servers, 0 PDUs, dry run)" in check.stdout
    printed = _cli("--print-config", "--config", str(conf))
    assert printed.returncode == 0 and PASSWORD not in printed.stdout and "'**********'" in printed.stdout

    data["servers"][0]["ipmi"]["pasword"] = "typo"  # type: ignore[index]
    conf.write_text(yaml.safe_dump(data))
    bad = _cli("--check-config", "--config", str(conf))
    assert bad.returncode == 78
    assert f"{conf}: servers[0].ipmi.pasword: Extra inputs are not permitted" in bad.stderr
    assert PASSWORD not in bad.stderr
    assert _cli("--check-config", "--config", str(tmp_path / "missing.yml")).returncode == 66


def _daemon_config(tmp_path: Path, **extra: Any) -> Any:
    from edgepop.agents.recoveryd.config import parse_config

    data = {
        "pop": "lab1",
        "audit_log": str(tmp_path / "audit.jsonl"),
        "state_file": str(tmp_path / "state.json"),
        "router": {"socket": str(tmp_path / "no-router.ctl"), "timeout_s": 0.2},
        "servers": [
            {
                "name": "srv1",
                "reach": {"address": "127.0.0.1", "port": 9},
                "ipmi": {"address": "127.0.0.1", "username": "admin", "password": PASSWORD},
            }
        ],
        **extra,
    }
    return parse_config(data, "recoveryd.yml")


def test_dry_run_audits_the_power_action_and_switches_nothing(tmp_path: Path) -> None:
    from edgepop.agents.recoveryd.audit import read_audit
    from edgepop.agents.recoveryd.core import Action
    from edgepop.agents.recoveryd.daemon import Daemon

    daemon = Daemon(_daemon_config(tmp_path, dry_run=True))
    daemon.execute([Action("power_cycle", "srv1", "dead: reach, healthd failing", method="ipmi")])
    assert daemon.results.get(timeout=5) == ("srv1", "ipmi", True, "dry run: not carried out")
    assert [r["action"] for r in read_audit(tmp_path / "audit.jsonl")] == ["would_ipmi_cycle"]


def test_held_sessions_survive_a_restart(tmp_path: Path) -> None:
    from edgepop.agents.recoveryd.audit import read_audit
    from edgepop.agents.recoveryd.daemon import Daemon

    (tmp_path / "state.json").write_text(json.dumps({"held": ["srv1", "gone"]}))
    daemon = Daemon(_daemon_config(tmp_path))
    assert daemon.core.servers["srv1"].state == "verify"
    assert [r["action"] for r in read_audit(tmp_path / "audit.jsonl")] == ["adopted_held"]
    daemon.core.servers["srv1"].state = "healthy"  # released
    daemon._save_held()
    assert json.loads((tmp_path / "state.json").read_text()) == {"held": []}
