"""Boxes that called home with MACs the inventory does not know, for the operator to adopt.

One JSON document keyed by the box's MACs (sorted, comma-joined): a box that calls again updates its
entry instead of adding one. Written atomically under a lock, since the operator's `adopt` removes
entries while provisiond adds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return dict(data) if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def record(path: Path, macs: list[str], client: str, now: float | None = None) -> dict[str, Any]:
    """Add or refresh the entry of a box with these MACs; return it."""
    now = time.time() if now is None else now
    key = ",".join(sorted(macs))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    with _locked(path):
        data = read(path)
        entry = data.get(key) or {"macs": sorted(macs), "first_seen": stamp, "calls": 0}
        entry.update(last_seen=stamp, client=client, calls=int(entry["calls"]) + 1)
        data[key] = entry
        _write(path, data)
    return entry


def find(path: Path, mac: str) -> dict[str, Any] | None:
    """The entry that holds `mac`, if any."""
    return next((e for e in read(path).values() if mac in e.get("macs", [])), None)


def remove(path: Path, mac: str) -> dict[str, Any] | None:
    """Drop the entry holding `mac` (after the box was adopted); return it."""
    with _locked(path):
        data = read(path)
        for key, entry in data.items():
            if mac in entry.get("macs", []):
                del data[key]
                _write(path, data)
                return entry
    return None
