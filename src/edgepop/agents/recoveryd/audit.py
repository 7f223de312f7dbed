"""The audit log: one JSON object per line for every decision and power action, with its reason and
the signals it was taken on, so an operator can reconstruct why a box lost power at 03:12.

Credentials never reach the file: the configuration's secret values are replaced wherever they
appear (a BMC or PDU error message may echo what it was sent, quoted or escaped), and the core never
holds them. `describe` is how any error of recoveryd becomes text: a validation error by its key
paths and messages only (pydantic's own text shows the offending input, which may be a password).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

MASK = "***"


def _escaped(text: str) -> set[str]:
    return {text, json.dumps(text)[1:-1], repr(text)[1:-1], text.encode("unicode_escape").decode()}


def _forms(secrets: Iterable[str]) -> list[str]:
    """Each secret as it may be shown: as is, JSON- or repr-escaped, and escaped twice (the repr of
    a JSON text, as a KeyError shows it); longest first, so a longer form is replaced whole."""
    out: set[str] = set()
    for secret in secrets:
        if secret:
            for once in _escaped(secret):
                out |= _escaped(once)
    return sorted((f for f in out if f), key=len, reverse=True)


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every occurrence of a secret replaced, through nested dicts and lists."""
    return _scrub(value, _forms(secrets))


def _scrub(value: Any, forms: list[str]) -> Any:
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, MASK)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, forms) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, forms) for v in value]
    return value


def describe(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """One line for an error, never showing a configuration value: a validation error as `key: what`
    per problem (pydantic's str() carries `input_value=...`), anything else scrubbed of `secrets`."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            parts.append(f"{where}: {err['msg']}")
        text = f"invalid {exc.title}: " + "; ".join(parts)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return str(scrub(" ".join(text.split()), secrets))


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
