"""The audit log: one JSON object per line for every decision and power action, with its reason and
the signals it was taken on, so an operator can reconstruct why a box lost power at 03:12.

Credentials never reach the file: the configuration's secret values are replaced wherever they
appear (a BMC or PDU error message may echo what it was sent), and the core never holds them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MASK = "***"


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every occurrence of a secret replaced, through nested dicts and lists."""
    secrets = [s for s in secrets if s]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class AuditLog:
    """Appends records to `path` (created 0640 with its directory); thread-safe, flushed per line."""

    def __init__(self, path: str | Path, secrets: Iterable[str], wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.secrets = list(secrets)
        self.wall = wall
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": iso(self.wall()), **scrub(record, self.secrets)}, sort_keys=False, default=str)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """Every record of an audit log, oldest first (for tests and operators' scripts)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
