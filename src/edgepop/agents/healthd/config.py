"""healthd's configuration: one YAML file, rendered by the `healthd` role from the derived services.

Every object forbids unknown keys, so a typo is an error at load (and at `--check-config`, which the
role runs before it installs a new file) instead of a setting that silently does nothing. The check
definitions are the inventory's own (`edgepop.model.schema`), so the agent and the data model cannot
disagree about what a check means.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgepop.agents.common import dump_yaml, load_yaml, parse_model
from edgepop.model.schema import Check, Port

_PROTOCOL_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BirdSettings(_Settings):
    """How healthd reaches BIRD, and how often it compares BIRD's state with what it wants."""

    socket: str = Field(default="/run/bird/bird.ctl", min_length=1, description="BIRD's control socket")
    timeout_s: float = Field(default=2.0, gt=0, le=30, description="seconds to wait for one reply")
    poll_interval_s: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="seconds between reconciliations: a `configure` or restart of BIRD re-enables every "
        "protocol, and healthd withdraws a failed service again within this time",
    )


class Restart(_Settings):
    """How a failed service is restarted while its routes are withdrawn."""

    command: list[str] = Field(min_length=1, description="argv, no shell")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="seconds before the command is killed")
    retry_s: float = Field(default=10.0, gt=0, le=3600, description="restart again after this long while still down")
    max_attempts: int = Field(default=3, ge=1, le=100, description="restarts per outage, then healthd only waits")


class Damping(_Settings):
    """Flap damping: every withdrawal adds `penalty`, which halves every `half_life_s`. Above `suppress`
    the service is not announced again, however healthy, until the penalty decays below `reuse`."""

    enabled: bool = True
    penalty: float = Field(default=1000.0, gt=0)
    suppress: float = Field(default=2500.0, gt=0)
    reuse: float = Field(default=750.0, gt=0)
    half_life_s: float = Field(default=60.0, gt=0, le=86400)
    max_penalty: float = Field(default=6000.0, gt=0, description="cap, so a long flapping spell ends in bounded time")

    @model_validator(mode="after")
    def _order(self) -> Damping:
        if not self.reuse < self.suppress <= self.max_penalty:
            raise ValueError(
                f"need reuse < suppress <= max_penalty, got {self.reuse}, {self.suppress}, {self.max_penalty}"
            )
        return self


class ServiceConfig(_Settings):
    """One anycast service on this server: its check, its BIRD protocols, how to restart it."""

    name: str = Field(min_length=1)
    protocols: list[str] = Field(min_length=1, description="BIRD static protocols carrying its routes")
    address: str = Field(description="address the check targets: the service's own anycast address")
    unit: str | None = Field(default=None, description="systemd unit (the `process` check asks it)")
    check: Check
    fast_interval_s: float | None = Field(
        default=None, gt=0, description="recheck this soon after a failure, until `fall` is reached"
    )
    restart: Restart | None = Field(default=None, description="restart while withdrawn; none: only wait")
    shed: bool = Field(default=False, description="may be withdrawn to shed load (in the order listed)")

    @field_validator("protocols")
    @classmethod
    def _protocol_names(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not re.match(_PROTOCOL_RE, p)]
        if bad:
            raise ValueError(f"not BIRD protocol names: {', '.join(bad)}")
        if len(set(value)) != len(value):
            raise ValueError("a protocol is listed twice")
        return value

    @field_validator("address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))

    @model_validator(mode="after")
    def _consistent(self) -> ServiceConfig:
        if self.check.type == "process" and not self.unit:
            raise ValueError("a process check needs `unit`")
        if self.fast_interval_s is not None and self.fast_interval_s > self.check.interval_s:
            raise ValueError(f"fast_interval_s ({self.fast_interval_s}) exceeds check.interval_s")
        return self


class Peer(_Settings):
    """Another server of the PoP, as healthd reaches its status endpoint."""

    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^http://", description="its status URL, e.g. http://198.51.100.42:9180/status")


class StatusSettings(_Settings):
    """The status endpoint: JSON for peers (`/status`) and Prometheus text (`/metrics`)."""

    listen: str | None = Field(default=None, description="address to listen on; none: no endpoint")
    port: Port = 9180

    @field_validator("listen")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_address(value))


class Safety(_Settings):
    """PoP-wide safety: a check failing on most of the PoP at once is a shared dependency, not the
    servers; healthd then keeps the routes (and does not restart) and alerts loudly."""

    enabled: bool = True
    floor: int = Field(default=1, ge=0, description="other servers that must keep announcing a service")
    max_failing_fraction: float = Field(
        default=0.5, gt=0, le=1, description="withdraw only while at most this share of known servers fails"
    )
    peer_interval_s: float = Field(default=1.0, gt=0, le=60)
    peer_timeout_s: float = Field(default=0.5, gt=0, le=10)
    stale_after_s: float = Field(default=5.0, gt=0, le=600, description="older peer reports count as unknown")


class LoadShedding(_Settings):
    """Withdraw `shed: true` services one at a time while this server is overloaded and peers have room."""

    enabled: bool = False
    high: float = Field(default=0.9, gt=0, description="shed above this load (1-minute load average per CPU)")
    low: float = Field(default=0.6, gt=0, description="take shed services back below this load")
    peer_room: float = Field(default=0.7, gt=0, description="a peer below this load has room for more")
    step_s: float = Field(default=30.0, gt=0, description="at most one shed or restore per step")
    load_file: str | None = Field(
        default=None,
        min_length=1,
        description="read the load from this file's first number (e.g. what the proxy writes: its busy "
        "share) instead of the 1-minute load average per CPU; unreadable counts as not overloaded",
    )

    @model_validator(mode="after")
    def _order(self) -> LoadShedding:
        if not self.low < self.high:
            raise ValueError(f"need low < high, got {self.low} and {self.high}")
        return self


class HealthdConfig(_Settings):
    hostname: str = Field(min_length=1)
    bird: BirdSettings = BirdSettings()
    withdraw_on_exit: bool = Field(default=True, description="SIGTERM withdraws every route healthd announced")
    state_file: str = Field(default="/run/edgepop/healthd.json", description="what healthd withdrew, across restarts")
    drain_file: str = Field(
        default="/run/edgepop/drain",
        min_length=1,
        description="services named here (one per line; `all`: every one) are withdrawn and kept so until "
        "their line is gone: how `drain.yml` drains a server without fighting the agent",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    status: StatusSettings = StatusSettings()
    peers: list[Peer] = []
    safety: Safety = Safety()
    load_shedding: LoadShedding = LoadShedding()
    damping: Damping = Damping()
    services: list[ServiceConfig] = []

    @model_validator(mode="after")
    def _unique(self) -> HealthdConfig:
        names = [s.name for s in self.services]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"services listed twice: {', '.join(dup)}")
        protocols = [p for s in self.services for p in s.protocols]
        dup = sorted({p for p in protocols if protocols.count(p) > 1})
        if dup:
            raise ValueError(f"protocols claimed by two services: {', '.join(dup)}")
        return self


def parse_config(data: object, path: str) -> HealthdConfig:
    """Validate already-loaded YAML; every error names the file and the key (never a value)."""
    return parse_model(HealthdConfig, data, path)


def load_config(path: str | Path) -> HealthdConfig:
    return parse_config(load_yaml(path), str(path))


def dump_config(config: HealthdConfig) -> str:
    """The effective configuration, defaults filled in (`--print-config`)."""
    return dump_yaml(config.model_dump(mode="json"))
