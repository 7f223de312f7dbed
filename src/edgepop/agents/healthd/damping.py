"""Flap damping for one service, after BGP route-flap damping (RFC 2439) but counted on withdrawals.

A service that keeps failing and recovering would otherwise move its traffic back and forth every
few seconds; each move breaks the connections that were on the way. Every withdrawal adds a fixed
penalty that decays exponentially; once the penalty crosses `suppress`, the service stays withdrawn,
however healthy its checks, until the penalty has decayed below `reuse`.
"""

from __future__ import annotations

import math

from edgepop.agents.healthd.config import Damping


class FlapDamper:
    def __init__(self, settings: Damping) -> None:
        self.settings = settings
        self._penalty = 0.0
        self._at = 0.0
        self._suppressed = False

    def penalty(self, now: float) -> float:
        if self._penalty == 0.0:
            return 0.0
        decay: float = 0.5 ** (max(0.0, now - self._at) / self.settings.half_life_s)
        return self._penalty * decay

    def withdrawn(self, now: float) -> None:
        """Count one withdrawal caused by a failure."""
        if not self.settings.enabled:
            return
        self._penalty = min(self.settings.max_penalty, self.penalty(now) + self.settings.penalty)
        self._at = now
        if self._penalty >= self.settings.suppress:
            self._suppressed = True

    def suppressed(self, now: float) -> bool:
        if self._suppressed and self.penalty(now) < self.settings.reuse:
            self._suppressed = False
        return self._suppressed

    def reuse_at(self, now: float) -> float | None:
        """When a suppressed service may be announced again (None: it is not suppressed)."""
        if not self.suppressed(now):
            return None
        current = self.penalty(now)
        return now + self.settings.half_life_s * math.log2(current / self.settings.reuse) + 1e-3
