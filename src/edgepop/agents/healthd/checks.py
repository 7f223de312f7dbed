"""The health checks: each proves one service alive the way a client would see it, within a timeout.

A check never raises: whatever goes wrong is a failed result with a one-line reason, so the state
machine deals only in pass/fail. Every check is a blocking call bounded by its timeout; healthd runs
them on worker threads.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgepop.agents.healthd.config import ServiceConfig
from edgepop.agents.healthd.dnswire import RCODES, DnsWireError, build_query, parse_reply
from edgepop.model.schema import DnsCheck, ExecCheck, HttpCheck, ProcessCheck, TcpCheck


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    duration_s: float = 0.0


Probe = Callable[[], CheckResult]
_C_ENV = {**os.environ, "LC_ALL": "C"}


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _timed(fn: Callable[[], tuple[bool, str]]) -> CheckResult:
    started = time.monotonic()
    try:
        ok, detail = fn()
    except (OSError, http.client.HTTPException, DnsWireError, ValueError, subprocess.SubprocessError) as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return CheckResult(ok, detail, time.monotonic() - started)


def http_probe(address: str, check: HttpCheck) -> Probe:
    host_header = check.host or (f"[{address}]" if ":" in address else address)

    def run() -> tuple[bool, str]:
        conn = http.client.HTTPConnection(address, check.port, timeout=check.timeout_s)
        try:
            conn.request("GET", check.path, headers={"Host": host_header, "User-Agent": "edgepop-healthd"})
            resp = conn.getresponse()
            resp.read(65536)
        finally:
            conn.close()
        if resp.status != check.expect_status:
            return False, f"HTTP {resp.status}, expected {check.expect_status}"
        return True, f"HTTP {resp.status}"

    return lambda: _timed(run)


def tcp_probe(address: str, check: TcpCheck) -> Probe:
    def run() -> tuple[bool, str]:
        with socket.create_connection((address, check.port), timeout=check.timeout_s):
            return True, "connected"

    return lambda: _timed(run)


def dns_probe(address: str, check: DnsCheck) -> Probe:
    want = RCODES[check.expect_rcode]

    def run() -> tuple[bool, str]:
        query = build_query(secrets.randbits(16), check.query, check.qtype)
        deadline = time.monotonic() + check.timeout_s
        with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
            sock.connect((address, check.port))
            sock.send(query)
            while True:  # a stray datagram (an earlier, late reply) does not fail the check
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no reply within {check.timeout_s:g} s")
                sock.settimeout(remaining)
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    raise TimeoutError(f"no reply within {check.timeout_s:g} s") from None
                try:
                    header = parse_reply(data, query)
                except DnsWireError:
                    continue
                if header.rcode != want:
                    return False, f"rcode {header.rcode_name}, expected {check.expect_rcode}"
                return True, f"rcode {header.rcode_name}, {header.answers} answers"

    return lambda: _timed(run)


def _run_argv(argv: list[str], timeout: float) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_C_ENV,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return False, f"exit {proc.returncode} {tail[0]}".strip()
    return True, "exit 0"


def process_probe(unit: str, check: ProcessCheck) -> Probe:
    return lambda: _timed(lambda: _run_argv(["systemctl", "is-active", "--quiet", unit], check.timeout_s))


def exec_probe(check: ExecCheck) -> Probe:
    return lambda: _timed(lambda: _run_argv(list(check.command), check.timeout_s))


def make_probe(service: ServiceConfig) -> Probe:
    """The probe for one service, from its configuration."""
    check = service.check
    if isinstance(check, HttpCheck):
        return http_probe(service.address, check)
    if isinstance(check, TcpCheck):
        return tcp_probe(service.address, check)
    if isinstance(check, DnsCheck):
        return dns_probe(service.address, check)
    if isinstance(check, ProcessCheck):
        assert service.unit is not None  # the configuration insists on it
        return process_probe(service.unit, check)
    return exec_probe(check)
