"""The versioned mapping: the relay's side (what changed, when to tell) and the host's (what to trust).

A mapping is `{epoch, version, complete, nexthops}`. `epoch` names one run of the relay (it changes
on restart); `version` counts content changes within that run, from 1, so `(epoch, version)` names
one content and a host can ask "anything newer than what I have?". `complete` is false until the
relay has read the switch's table once, and while it cannot read it: a host never applies an
incomplete mapping, it keeps the last good one. Next hops are `{provider, address, mac, table,
interface, port}`, sorted, so equal content is equal JSON.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mapping:
    epoch: str
    version: int
    complete: bool
    nexthops: tuple[tuple[tuple[str, Any], ...], ...] = ()
    changed_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "version": self.version,
            "complete": self.complete,
            "changed_at": self.changed_at,
            "nexthops": [dict(n) for n in self.nexthops],
        }

    @staticmethod
    def from_json(doc: Any) -> Mapping:
        """A mapping a relay sent (or the state file kept); ValueError when it is not one."""
        if not isinstance(doc, dict):
            raise ValueError("the mapping is not a JSON object")
        try:
            epoch, version, complete = str(doc["epoch"]), doc["version"], doc["complete"]
            items = doc["nexthops"]
        except KeyError as exc:
            raise ValueError(f"the mapping has no {exc.args[0]!r}") from None
        if not isinstance(version, int) or version < 0 or not isinstance(complete, bool) or not isinstance(items, list):
            raise ValueError("the mapping's version, complete or nexthops has the wrong type")
        nexthops = []
        for i, n in enumerate(items):
            if not isinstance(n, dict) or not {"provider", "address", "mac", "table"} <= set(n):
                raise ValueError(f"nexthops[{i}] lacks provider, address, mac or table")
            nexthops.append(tuple(sorted(n.items())))
        return Mapping(epoch, version, complete, tuple(nexthops), float(doc.get("changed_at", 0.0)))


def _freeze(nexthops: Iterable[dict[str, Any]]) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(sorted(tuple(sorted(n.items())) for n in nexthops))


@dataclass
class RelayState:
    """What the relay serves. `observe` is fed every reading of the switch's table; the version
    moves only when the content does. A provider that vanishes is dropped only after it has been
    missing for `remove_after_s` (a table read between an entry's refreshes must not flap every
    host); a new provider or a new MAC is taken at once."""

    remove_after_s: float = 0.5
    clock: Callable[[], float] = time.monotonic
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _current: dict[str, dict[str, Any]] = field(default_factory=dict)  # address -> next hop
    _missing_since: dict[str, float] = field(default_factory=dict)
    _mapping: Mapping | None = None

    def __post_init__(self) -> None:
        self._mapping = Mapping(self.epoch, 0, False)

    @property
    def mapping(self) -> Mapping:
        with self._cond:
            assert self._mapping is not None
            return self._mapping

    def observe(self, nexthops: Iterable[dict[str, Any]]) -> bool:
        """One complete reading; returns whether the served content changed."""
        now = self.clock()
        seen = {n["address"]: dict(n) for n in nexthops}
        with self._cond:
            for addr, nh in seen.items():
                self._current[addr] = nh
                self._missing_since.pop(addr, None)
            for addr in list(self._current):
                if addr in seen:
                    continue
                since = self._missing_since.setdefault(addr, now)
                if now - since >= self.remove_after_s:
                    del self._current[addr]
                    del self._missing_since[addr]
            return self._publish(complete=True)

    def source_failed(self) -> bool:
        """The table could not be read: the mapping is served as incomplete until the next reading."""
        with self._cond:
            return self._publish(complete=False)

    def pending_removals(self) -> bool:
        with self._cond:
            return bool(self._missing_since)

    def _publish(self, complete: bool) -> bool:
        assert self._mapping is not None
        frozen = _freeze(self._current.values())
        if frozen == self._mapping.nexthops and complete == self._mapping.complete:
            return False
        self._mapping = Mapping(self.epoch, self._mapping.version + 1, complete, frozen, time.time())
        self._cond.notify_all()
        return True

    def wait_newer(self, epoch: str | None, version: int | None, timeout: float) -> Mapping | None:
        """The mapping once it differs from (epoch, version), or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                assert self._mapping is not None
                m = self._mapping
                if epoch != m.epoch or version is None or m.version > version:
                    return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


@dataclass
class HostState:
    """What a host last applied, and the rule for taking a new mapping: complete, and newer than
    the last one (another epoch counts as newer: the relay restarted and counts from 1 again)."""

    applied: Mapping | None = None

    def wants(self, m: Mapping) -> bool:
        if not m.complete:
            return False
        if self.applied is None or m.epoch != self.applied.epoch:
            return True
        return m.version > self.applied.version
