"""healthd's configuration, CLI, checks (against real local servers), DNS wire format, status endpoint."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepop.agents.common import ConfigError, StatusServer
from edgepop.agents.healthd.checks import make_probe
from edgepop.agents.healthd.cli import main
from edgepop.agents.healthd.config import load_config, parse_config
from edgepop.agents.healthd.dnswire import DnsWireError, build_query, parse_reply
from edgepop.agents.healthd.status import PeerPoller, metrics_text

GOOD: dict[str, Any] = {
    "hostname": "srv1",
    "bird": {"socket": "/run/bird/bird.ctl"},
    "services": [
        {
            "name": "http",
            "protocols": ["static_http_v4"],
            "address": "127.0.0.1",
            "unit": "nginx.service",
            "check": {"type": "http", "port": 80, "path": "/healthz", "interval_s": 1.0, "timeout_s": 0.5},
            "restart": {"command": ["systemctl", "restart", "nginx.service"]},
        }
    ],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "healthd.yml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- configuration and CLI ----------------------------------------------------------------------


def test_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["services"][0]["check"]["port"] = 70000
    bad["services"][0]["protocls"] = []
    bad["damping"] = {"reuse": 5000}
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, bad))
    text = str(exc.value)
    path = str(tmp_path / "healthd.yml")
    assert f"{path}: services[0].check.http.port:" in text
    assert f"{path}: services[0].protocls: Extra inputs are not permitted" in text
    assert f"{path}: damping: Value error, need reuse < suppress" in text
    assert len(exc.value.errors) == 3  # all at once


def test_config_cross_checks() -> None:
    two = json.loads(json.dumps(GOOD))
    two["services"].append({**two["services"][0], "name": "http2"})
    with pytest.raises(ConfigError, match="protocols claimed by two services: static_http_v4"):
        parse_config(two, "x.yml")
    proc = json.loads(json.dumps(GOOD))
    proc["services"][0]["check"] = {"type": "process"}
    del proc["services"][0]["unit"]
    with pytest.raises(ConfigError, match="a process check needs `unit`"):
        parse_config(proc, "x.yml")
    with pytest.raises(ConfigError, match="not BIRD protocol names"):
        parse_config({**GOOD, "services": [{**GOOD["services"][0], "protocols": ["a; b"]}]}, "x.yml")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "h.yml"
    path.write_text("hostname: srv1\nservices: [\n")
    with pytest.raises(ConfigError, match=r"h\.yml: line \d+, column \d+: not valid YAML"):
        load_config(path)


def test_cli_check_and_print_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, GOOD)
    assert main(["--config", str(good), "--check-config"]) == os.EX_OK
    assert main(["--config", str(good), "--print-config"]) == os.EX_OK
    printed = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert printed["withdraw_on_exit"] is True and printed["damping"]["half_life_s"] == 60.0
    bad = write(tmp_path, {**GOOD, "withdraw_on_exit": "maybe"})
    assert main(["--config", str(bad), "--check-config"]) == os.EX_CONFIG
    assert "withdraw_on_exit" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "none.yml"), "--check-config"]) == os.EX_NOINPUT
    with pytest.raises(SystemExit) as usage:
        main(["--bogus"])
    assert usage.value.code == os.EX_USAGE


def test_module_runs_with_python_m(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "edgepop.agents.healthd", "--config", str(good), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK (1 services)" in proc.stdout


# --- checks ---------------------------------------------------------------------------------------


class _Http(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def service(check: dict[str, Any], **extra: Any) -> Any:
    check = {"interval_s": 2.0, **check}
    data = {**GOOD, "services": [{**GOOD["services"][0], "check": check, **extra}]}
    return parse_config(data, "x.yml").services[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_check(http_server: int) -> None:
    ok = make_probe(service({"type": "http", "port": http_server, "path": "/healthz", "timeout_s": 0.5}))()
    assert ok.ok and ok.detail == "HTTP 200"
    wrong = make_probe(service({"type": "http", "port": http_server, "path": "/other", "timeout_s": 0.5}))()
    assert not wrong.ok and wrong.detail == "HTTP 503, expected 200"
    refused = make_probe(service({"type": "http", "port": free_port(), "timeout_s": 0.5}))()
    assert not refused.ok and "ConnectionRefused" in refused.detail


def test_tcp_check(http_server: int) -> None:
    assert make_probe(service({"type": "tcp", "port": http_server, "timeout_s": 0.5}))().ok
    assert not make_probe(service({"type": "tcp", "port": free_port(), "timeout_s": 0.5}))().ok


def test_exec_and_process_checks() -> None:
    assert make_probe(service({"type": "exec", "command": ["true"]}))().ok
    failed = make_probe(service({"type": "exec", "command": ["sh", "-c", "echo broken >&2; exit 3"]}))()
    assert not failed.ok and failed.detail == "exit 3 broken"
    slow = make_probe(service({"type": "exec", "command": ["sleep", "5"], "timeout_s": 0.2}))()
    assert not slow.ok and "timed out" in slow.detail and slow.duration_s < 2
    missing = make_probe(service({"type": "exec", "command": ["/nonexistent/check"]}))()
    assert not missing.ok and "FileNotFoundError" in missing.detail
    unit = make_probe(service({"type": "process", "timeout_s": 1.0}, unit="edgepop-no-such-unit.service"))()
    assert not unit.ok


def _dns_server(rcode: int, wrong_id_first: bool) -> tuple[socket.socket, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        data, peer = sock.recvfrom(512)
        qid = struct.unpack("!H", data[:2])[0]
        if wrong_id_first:  # a stray reply first: the check must wait for its own
            sock.sendto(struct.pack("!HHHHHH", qid ^ 1, 0x8400, 1, 0, 0, 0) + data[12:], peer)
        header = struct.pack("!HHHHHH", qid, 0x8400 | rcode, 1, 1 if rcode == 0 else 0, 0, 0)
        sock.sendto(header + data[12:], peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock, thread


@pytest.mark.parametrize(
    ("rcode", "expect", "ok"), [(0, "NOERROR", True), (3, "NOERROR", False), (3, "NXDOMAIN", True)]
)
def test_dns_check(rcode: int, expect: str, ok: bool) -> None:
    sock, thread = _dns_server(rcode, wrong_id_first=True)
    try:
        port = sock.getsockname()[1]
        check = {"type": "dns", "port": port, "query": "health.lab1.example", "expect_rcode": expect, "timeout_s": 1}
        result = make_probe(service(check))()
        assert result.ok is ok, result.detail
    finally:
        thread.join(2)
        sock.close()


def test_dns_check_times_out_without_an_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        check = {"type": "dns", "port": silent.getsockname()[1], "query": "x.example", "timeout_s": 0.2}
        result = make_probe(service(check))()
    assert not result.ok and "no reply" in result.detail


def test_dns_wire_format() -> None:
    query = build_query(0x1234, "health.lab1.example", "AAAA")
    assert query == (
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06health\x04lab1\x07example\x00\x00\x1c\x00\x01"
    )
    reply = b"\x12\x34\x84\x03\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:]
    header = parse_reply(reply, query)
    assert header.rcode_name == "NXDOMAIN" and not header.truncated
    with pytest.raises(DnsWireError, match="does not match"):
        parse_reply(b"\x00\x01" + reply[2:], query)
    with pytest.raises(DnsWireError, match="QR bit"):
        parse_reply(reply[:2] + b"\x04\x03" + reply[4:], query)
    with pytest.raises(DnsWireError, match="different question"):
        parse_reply(reply[:13] + b"X" + reply[14:], query)


# --- status endpoint and peers ----------------------------------------------------------------


def snapshot(health: str = "up", announced: bool = True, load: float = 0.2) -> dict[str, Any]:
    return {
        "hostname": "srv2",
        "bird_up": True,
        "load": load,
        "services": {
            "http": {
                "health": health,
                "wanted": announced,
                "announced": announced,
                "held_by_safety": False,
                "shed": False,
                "drained": False,
                "suppressed": False,
                "penalty": 0.0,
                "protocols": {"static_http_v4": announced},
                "last_check": {"ok": health == "up", "detail": "HTTP 200", "duration_s": 0.0012},
                "checks_ok": 5,
                "checks_failed": 1,
                "transitions": 2,
                "withdrawals": 1,
                "announcements": 1,
                "restarts": 1,
            }
        },
    }


def test_metrics_text() -> None:
    text = metrics_text(snapshot())
    assert 'edgepop_healthd_service_up{service="http"} 1' in text
    assert 'edgepop_healthd_check_duration_seconds{service="http"} 0.0012' in text
    assert 'edgepop_healthd_checks_total{service="http",result="failed"} 1' in text
    assert 'edgepop_healthd_transitions_total{service="http"} 2' in text
    assert "edgepop_healthd_bird_up 1" in text


def test_status_endpoint_and_peer_poller() -> None:
    current = {"snap": snapshot()}
    server = StatusServer("127.0.0.1", 0, lambda: current["snap"], metrics_text)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/status", timeout=2) as resp:
            assert json.loads(resp.read())["services"]["http"]["health"] == "up"
        with urllib.request.urlopen(f"{base}/metrics", timeout=2) as resp:
            assert b"edgepop_healthd_service_announced" in resp.read()
        from edgepop.agents.healthd.config import Peer

        dead = f"http://127.0.0.1:{free_port()}/status"
        poller = PeerPoller(
            [Peer(name="srv2", url=f"{base}/status"), Peer(name="srv3", url=dead)],
            interval_s=1,
            timeout_s=0.5,
            stale_after_s=5,
        )
        poller.poll_once()
        now = time.monotonic()
        assert poller.service_counts("http", now) == (1, 0)  # the dead peer counts as unknown
        assert poller.with_room("http", now, below=0.7) == 1
        assert poller.with_room("http", now, below=0.1) == 0
        assert poller.service_counts("http", now + 10) == (0, 0)  # stale
        current["snap"] = snapshot(health="down", announced=False)
        poller.poll_once()
        assert poller.service_counts("http", time.monotonic()) == (0, 1)
    finally:
        server.stop()


def test_file_load_reads_the_first_number_and_fails_safe(tmp_path: Path) -> None:
    from edgepop.agents.healthd.adapters import file_load

    path = tmp_path / "load"
    read = file_load(str(path))
    assert read() == 0.0  # missing: not overloaded
    path.write_text("0.93 busy share\n")
    assert read() == pytest.approx(0.93)
    path.write_text("garbage 5\n")
    assert read() == 0.0
