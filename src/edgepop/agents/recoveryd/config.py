"""recoveryd's configuration: one YAML file, rendered by the `recovery` role from the inventory.

Every object forbids unknown keys, so a typo is an error at load (and at `--check-config`, which the
role runs before it installs a new file). Credentials (BMC passwords, SNMP communities) are
`SecretStr`: they print as `**********` in `--print-config`, in reprs and in tracebacks, and the audit
log scrubs their values from anything a device answered.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from edgepop.agents.common import dump_yaml, load_yaml, parse_model

_OID_RE = r"^1(\.[0-9]+)+$"
_PROTOCOL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip(value: str) -> str:
    """The address in canonical form. The error never repeats the value: a password pasted one line
    too high must not show up in `--check-config` or the role's output."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address") from None


IpAddress = Annotated[str, AfterValidator(_ip)]


class Decision(_Settings):
    """When a server counts as dead, and how long each step of a recovery may take."""

    probe_interval_s: float = Field(default=2.0, gt=0, le=300, description="seconds between probe rounds")
    probe_timeout_s: float = Field(default=1.0, gt=0, le=60, description="seconds before one probe counts as failed")
    grace_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a signal counts against a server only after it has failed without a pass for this long",
    )
    min_signals: int = Field(default=2, ge=2, le=3, description="independent signals that must fail past grace")
    back_timeout_s: float = Field(
        default=300.0, gt=0, le=7200, description="seconds a cycled server has to answer again before the next method"
    )
    verify_passes: int = Field(default=3, ge=1, le=100, description="probe rounds in a row it must pass before release")
    verify_timeout_s: float = Field(
        default=600.0, gt=0, le=7200, description="seconds a server that answers has to verify green"
    )

    @model_validator(mode="after")
    def _timeout(self) -> Decision:
        if self.probe_timeout_s > self.probe_interval_s:
            raise ValueError(
                f"probe_timeout_s ({self.probe_timeout_s}) must not exceed probe_interval_s ({self.probe_interval_s})"
            )
        return self


class Limits(_Settings):
    """How much of the PoP recoveryd may have out of service by its own doing."""

    max_in_flight: int = Field(default=1, ge=1, le=64, description="power cycles under way at once")
    max_down_fraction: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="no new cycle while more than this share of the PoP's servers is down: a PoP-wide cause "
        "(a switch, the router, power) is not fixed by cycling servers",
    )


class Backoff(_Settings):
    """Per server: the wait before the next cycle grows with every cycle, so a server never loops."""

    initial_s: float = Field(default=900.0, gt=0, le=86400, description="wait after the first cycle")
    factor: float = Field(default=2.0, ge=1, le=10, description="each further cycle multiplies the wait")
    max_s: float = Field(default=86400.0, gt=0, le=604800, description="the longest wait")
    reset_after_s: float = Field(
        default=3600.0, gt=0, le=604800, description="healthy this long: the next death starts from initial_s again"
    )


class RouterSettings(_Settings):
    """Where recoveryd reads the BGP sessions of the servers and holds a recovering server's routes."""

    socket: str | None = Field(
        default="/run/bird/bird.ctl",
        min_length=1,
        description="the router's BIRD control socket; none: no BGP signal and no route hold",
    )
    timeout_s: float = Field(default=2.0, gt=0, le=30)
    hold_routes: bool = Field(
        default=True,
        description="disable the router's sessions to a dead server before cycling it and enable them only "
        "after it verified clean, so a half-booted server attracts no traffic",
    )

    @model_validator(mode="after")
    def _hold_needs_socket(self) -> RouterSettings:
        if self.hold_routes and self.socket is None:
            raise ValueError("hold_routes needs the router's socket")
        return self


class SnmpModel(_Settings):
    """How a PDU model switches an outlet: one integer OID per outlet (`<outlet_oid>.<outlet>`).

    The default is APC PowerNet's `sPDUOutletCtl` (PowerNet-MIB, 1.3.6.1.4.1.318.1.1.4.4.2.1.3): reading
    it gives 1 (on) or 2 (off), writing 1 switches on, 2 off, 3 reboots (off, delay, on).
    """

    outlet_oid: str = Field(default="1.3.6.1.4.1.318.1.1.4.4.2.1.3", pattern=_OID_RE)
    state_oid: str | None = Field(default=None, pattern=_OID_RE, description="read state here; none: outlet_oid")
    on: int = 1
    off: int = 2
    reboot: int | None = Field(default=3, description="one-shot cycle command; none: off, wait, on")
    state_on: int = 1
    state_off: int = 2


class PduConfig(_Settings):
    name: str = Field(min_length=1)
    address: IpAddress
    port: int = Field(default=161, ge=1, le=65535)
    community: SecretStr
    model: SnmpModel = SnmpModel()
    timeout_s: float = Field(default=2.0, gt=0, le=30)
    retries: int = Field(default=1, ge=0, le=5)
    off_s: float = Field(default=5.0, ge=0, le=120, description="outlet off this long when cycled as off + on")


class IpmiConfig(_Settings):
    address: IpAddress
    port: int = Field(default=623, ge=1, le=65535)
    username: str = Field(min_length=1)
    password: SecretStr
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="seconds for the whole action (login, status, cycle); the child process is killed then",
    )


class OutletRef(_Settings):
    pdu: str = Field(min_length=1)
    outlet: int = Field(ge=1, le=96)


class Reach(_Settings):
    """TCP to this address and port: an accept or a refusal both prove the box's kernel is alive."""

    address: IpAddress
    port: int = Field(default=22, ge=1, le=65535)


class ServerConfig(_Settings):
    name: str = Field(min_length=1)
    reach: Reach
    healthd_url: str | None = Field(default=None, pattern=r"^http://", description="its healthd /status")
    router_protocols: list[str] = Field(default_factory=list, description="the router's BGP sessions to it")
    ipmi: IpmiConfig | None = None
    pdu: OutletRef | None = None

    @field_validator("router_protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        bad = [str(i) for i, p in enumerate(value) if not _PROTOCOL_RE.match(p)]
        if bad:
            raise ValueError(f"not BIRD protocol names (letters, digits, _): items {', '.join(bad)}")
        return value


class StatusSettings(_Settings):
    listen: str | None = Field(default=None, description="address of /status and /metrics; none: no endpoint")
    port: int = Field(default=9181, ge=0, le=65535)

    @field_validator("listen")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else _ip(value)


class RecoverydConfig(_Settings):
    pop: str = Field(min_length=1)
    dry_run: bool = Field(
        default=False,
        description="decide and audit everything, but switch no power and hold no routes (`would_*` actions)",
    )
    decision: Decision = Decision()
    limits: Limits = Limits()
    backoff: Backoff = Backoff()
    router: RouterSettings = RouterSettings()
    audit_log: str = Field(default="/var/log/edgepop/recovery-audit.jsonl", min_length=1)
    state_file: str = Field(
        default="/var/lib/edgepop/recoveryd.json",
        min_length=1,
        description="the servers whose router sessions recoveryd holds, so a restart releases them only "
        "after they verify",
    )
    alert_command: list[str] | None = Field(
        default=None, min_length=1, description="argv run with the event as JSON on stdin; none: log only"
    )
    alert_timeout_s: float = Field(default=10.0, gt=0, le=300)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    status: StatusSettings = StatusSettings()
    pdus: list[PduConfig] = []
    servers: list[ServerConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RecoverydConfig:
        names = [s.name for s in self.servers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"servers listed twice: {', '.join(dup)}")
        pdus = {p.name for p in self.pdus}
        unknown = sorted({s.pdu.pdu for s in self.servers if s.pdu is not None and s.pdu.pdu not in pdus})
        if unknown:
            raise ValueError(f"servers refer to PDUs not listed under pdus: {', '.join(unknown)}")
        outlets = [(s.pdu.pdu, s.pdu.outlet) for s in self.servers if s.pdu is not None]
        shared = sorted({f"{p}:{o}" for p, o in outlets if outlets.count((p, o)) > 1})
        if shared:
            raise ValueError(f"outlets shared by two servers: {', '.join(shared)}")
        return self

    def secrets(self) -> list[str]:
        """Every credential's value: what the audit log and the logs must never show."""
        out = [s.ipmi.password.get_secret_value() for s in self.servers if s.ipmi is not None]
        out += [p.community.get_secret_value() for p in self.pdus]
        return [s for s in out if s]


def parse_config(data: object, path: str) -> RecoverydConfig:
    """Validate already-loaded YAML; every error names the file and the key (never a value)."""
    return parse_model(RecoverydConfig, data, path)


def load_config(path: str | Path) -> RecoverydConfig:
    return parse_config(load_yaml(path), str(path))


def dump_config(config: RecoverydConfig) -> str:
    """The effective configuration, defaults filled in, credentials masked (`--print-config`). The
    alert command's arguments are masked too: a webhook URL or an `Authorization:` header in them is
    a credential; the program it runs is shown."""
    doc = config.model_dump(mode="json")
    if doc.get("alert_command"):
        doc["alert_command"] = [doc["alert_command"][0], *(["**********"] * (len(doc["alert_command"]) - 1))]
    return dump_yaml(doc)
