"""Boxes that called home with MACs the inventory does not know, for the operator to adopt.

One JSON document keyed by the box's MACs (sorted, comma-joined): a box that calls again updates its
entry instead of adding one. Written atomically (edgepop.agents.statefile) under a lock, since the
operator's `adopt` removes entries while provisiond adds them. The queue is bounded: anyone on the
boot network can make up MACs, so past MAX_ENTRIES the entry seen least recently is dropped (a real
box calls again every 30 s and comes straight back). A bad file is moved aside, never a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgepop.agents.statefile import StateShapeError, Warn, read_json, write_json

log = logging.getLogger("provisiond.pending")
MAX_ENTRIES = 1000
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
Entries = dict[str, dict[str, Any]]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shape(doc: object) -> Entries:
    """The queue as written by `record`: {key: {"macs": [MAC, ...], ...}}; anything else is corrupt."""
    if not isinstance(doc, dict):
        raise StateShapeError(f"expected an object of entries, got {type(doc).__name__}")
    for key, entry in doc.items():
        macs = entry.get("macs") if isinstance(entry, dict) else None
        if not isinstance(macs, list) or not macs or not all(isinstance(m, str) and _MAC.match(m) for m in macs):
            raise StateShapeError(f"entry {key[:40]!r}: expected an object with a list of MACs")
    return dict(doc)


def _read(path: Path, warn: Warn) -> Entries:
    return read_json(path, _shape, warn) or {}


def read(path: Path, warn: Warn = log.warning) -> Entries:
    """Every queued box; a bad file is moved aside (and `warn` told) and reads as an empty queue."""
    if not path.parent.is_dir():
        return {}
    try:
        with _locked(path):
            return _read(path, warn)
    except PermissionError:  # an operator who may read the state directory but not lock in it
        return _read(path, warn)


def record(path: Path, macs: list[str], client: str, now: float | None = None) -> dict[str, Any]:
    """Add or refresh the entry of a box with these MACs; return it."""
    now = time.time() if now is None else now
    key = ",".join(sorted(macs))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    with _locked(path):
        data = _read(path, log.warning)
        entry = data.get(key) or {"macs": sorted(macs), "first_seen": stamp, "calls": 0}
        calls = entry.get("calls")
        entry.update(last_seen=stamp, client=client, calls=(calls if isinstance(calls, int) else 0) + 1)
        data[key] = entry
        if len(data) > MAX_ENTRIES:
            by_age = sorted(data, key=lambda k: str(data[k].get("last_seen")))
            for old in by_age[: len(data) - MAX_ENTRIES]:
                log.warning(
                    "pending queue full (%d boxes): dropped %s, last seen %s",
                    MAX_ENTRIES,
                    old,
                    data[old].get("last_seen"),
                )
                del data[old]
        write_json(path, data, 0o640)
    return entry


def find(path: Path, mac: str) -> dict[str, Any] | None:
    """The entry that holds `mac`, if any."""
    return next((e for e in read(path).values() if mac in e.get("macs", [])), None)


def remove(path: Path, mac: str) -> dict[str, Any] | None:
    """Drop the entry holding `mac` (after the box was adopted); return it."""
    with _locked(path):
        data = _read(path, log.warning)
        for key, entry in data.items():
            if mac in entry.get("macs", []):
                del data[key]
                write_json(path, data, 0o640)
                return entry
    return None
