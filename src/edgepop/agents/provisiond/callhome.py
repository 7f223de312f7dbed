"""The call-home decision, apart from HTTP: who is this box, given the MACs it reports?

A box proves which MAC it booted from with that MAC's secret, HMAC-SHA256(PoP token, MAC), which
provisiond put in the call-home settings of that MAC's boot (see docs/provisioning.md for who may
fetch them). The PoP token itself is never sent anywhere. Then:

- the boot MAC and every other known MAC it reports belong to one inventory server: it is that
  server (MACs the inventory does not list, e.g. a port nobody cabled, are reported back as
  `unlisted`);
- known MACs of two servers: refused, a swapped NIC or a cloned MAC needs a human;
- known MACs, but it booted from one the inventory does not list: refused. Its secret says nothing
  about the other MACs, and a secret of an unknown MAC is easy to get, so it must not buy an identity;
- no known MAC: it gets nothing and waits in the pending queue for `edgepop inventory adopt`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgepop.agents.provisiond.config import Plan

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_MACS = 64
SECRET_CONTEXT = b"edgepop-callhome-v1\0"


class BadRequest(ValueError):
    """The body is not a call-home request; the message says what is wrong."""


def normalise_mac(mac: str) -> str:
    """`AA-BB-CC-DD-EE-FF` or `aa:bb:...` as the inventory writes MACs: lower case, colons."""
    return mac.strip().lower().replace("-", ":")


def box_secret(token: str, mac: str) -> str:
    """The per-box call-home secret: HMAC-SHA256 keyed with the PoP token over the normalised MAC.

    Knowing one box's secret tells nothing about the token or any other box's secret."""
    message = SECRET_CONTEXT + normalise_mac(mac).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def _mac(value: object) -> str:
    if not isinstance(value, str) or not _MAC.match(value.lower()):
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise BadRequest(f"{shown!r} is not a MAC address")
    return value.lower()


def parse_request(body: Any) -> tuple[str, list[str]]:
    """(boot MAC, reported MACs lower-cased and de-duplicated) from `{"mac": ..., "macs": [...]}`."""
    if not isinstance(body, dict) or not isinstance(body.get("macs"), list):
        raise BadRequest('expected a JSON object {"mac": "aa:bb:cc:dd:ee:ff", "macs": ["aa:bb:cc:dd:ee:ff", ...]}')
    macs = body["macs"]
    if not macs or len(macs) > MAX_MACS:
        raise BadRequest(f"expected 1 to {MAX_MACS} MACs, got {len(macs)}")
    out: list[str] = []
    for mac in macs:
        mac = _mac(mac)
        if mac not in out:
            out.append(mac)
    if "mac" not in body:
        raise BadRequest('"mac" is missing: the MAC this box booted from, whose secret it sends')
    boot = _mac(body["mac"])
    if boot not in out:
        raise BadRequest(f'"mac" {boot} is not one of "macs"')
    return boot, out


def secret_ok(given: str | None, token: str, mac: str) -> bool:
    """Constant-time comparison with the MAC's secret, so a guess learns nothing from the timing."""
    return hmac.compare_digest((given or "").encode(), box_secret(token, mac).encode())


@dataclass(frozen=True)
class Decision:
    status: str  # known | pending | conflict | unlisted_boot
    host: str | None = None
    identity: dict[str, Any] | None = None
    unlisted: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


def decide(plan: Plan, boot_mac: str, macs: list[str]) -> Decision:
    """What the box that booted from `boot_mac` (authenticated) and reports `macs` is told."""
    index = plan.mac_index()
    matched = sorted({index[m] for m in macs if m in index})
    if not matched:
        return Decision("pending")
    names = [str(plan.hosts[i].identity.get("hostname")) for i in matched]
    if len(matched) > 1:
        return Decision("conflict", hosts=names)
    if boot_mac not in index:
        return Decision("unlisted_boot", names[0], hosts=names)
    host = plan.hosts[matched[0]]
    return Decision("known", names[0], host.identity, unlisted=[m for m in macs if m not in index])


class RateLimiter:
    """A token bucket per client address: `burst` requests at once, `per_minute` sustained."""

    MAX_CLIENTS = 10000

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
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.MAX_CLIENTS:
            # forget clients whose bucket is full again: they start from a full bucket anyway
            refill = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
        return (True, 0.0) if allowed else (False, (1.0 - tokens) / self.rate)
