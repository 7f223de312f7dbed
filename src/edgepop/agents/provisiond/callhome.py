"""The call-home decision, apart from HTTP: who is this box, given the MACs it reports?

- every known MAC it reports belongs to one inventory server: it is that server (MACs the
  inventory does not list, e.g. a port nobody cabled, are reported back as `unlisted`);
- known MACs of two servers: refused, a swapped NIC or a cloned MAC needs a human;
- no known MAC: it gets nothing and waits in the pending queue for `edgepop inventory adopt`.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgepop.agents.provisiond.config import Plan

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_MACS = 64


class BadRequest(ValueError):
    """The body is not a call-home request; the message says what is wrong."""


def parse_request(body: Any) -> list[str]:
    """The reported MACs, lower-cased and de-duplicated, from `{"macs": [...]}`."""
    if not isinstance(body, dict) or not isinstance(body.get("macs"), list):
        raise BadRequest('expected a JSON object {"macs": ["aa:bb:cc:dd:ee:ff", ...]}')
    macs = body["macs"]
    if not macs or len(macs) > MAX_MACS:
        raise BadRequest(f"expected 1 to {MAX_MACS} MACs, got {len(macs)}")
    out: list[str] = []
    for mac in macs:
        if not isinstance(mac, str) or not _MAC.match(mac.lower()):
            raise BadRequest(f"{mac!r} is not a MAC address")
        if mac.lower() not in out:
            out.append(mac.lower())
    return out


def token_ok(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so a guess learns nothing from how long the answer took."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


@dataclass(frozen=True)
class Decision:
    status: str  # known | pending | conflict
    host: str | None = None
    identity: dict[str, Any] | None = None
    unlisted: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


def decide(plan: Plan, macs: list[str]) -> Decision:
    index = plan.mac_index()
    matched = sorted({index[m] for m in macs if m in index})
    if not matched:
        return Decision("pending")
    names = [str(plan.hosts[i].identity.get("hostname")) for i in matched]
    if len(matched) > 1:
        return Decision("conflict", hosts=names)
    host = plan.hosts[matched[0]]
    return Decision("known", names[0], host.identity, unlisted=[m for m in macs if m not in index])


class RateLimiter:
    """A token bucket per client address: `burst` requests at once, `per_minute` sustained."""

    def __init__(self, burst: int, per_minute: float, clock: Any = time.monotonic) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()  # the server answers each request in its own thread

    def allow(self, client: str) -> tuple[bool, float]:
        """(allowed, seconds until the next request would be)."""
        with self._lock:
            return self._allow(client)

    def _allow(self, client: str) -> tuple[bool, float]:
        now = self.clock()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return True, 0.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > 10000:  # forget idle clients rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}
        return False, (1.0 - tokens) / self.rate
