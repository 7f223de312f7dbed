"""arprelay's configuration: one YAML file per box, rendered by the `arprelay` role from the inventory.

`role: relay` on the box that reads the switch's table (the Linux switch itself, or a control server
polling an EOS switch's eAPI) and serves the mapping; `role: host` on every server. Unknown keys are
errors; the token and the eAPI password are `SecretStr` (masked in `--print-config`).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from edgepop.agents.common import ConfigError, dump_yaml, load_yaml, location
from edgepop.nexthop import DEFAULT_PROTO, DEFAULT_RULE_PRIORITY, DEFAULT_TABLE_MAX, DEFAULT_TABLE_MIN, Settings


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value))


IpAddress = Annotated[str, AfterValidator(_ip)]


class ProviderAddress(_Settings):
    """One provider address the relay follows, with the provider's routing table on the hosts."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    address: IpAddress
    table: int = Field(ge=1, le=0xFFFFFFFE)


class Eapi(_Settings):
    """How the relay reads an EOS switch: eAPI (JSON-RPC over HTTPS), polled."""

    url: str = Field(pattern=r"^https?://", description="e.g. https://203.0.113.67/command-api")
    username: str = Field(min_length=1)
    password: SecretStr
    verify_tls: bool = Field(default=True, description="check the switch's certificate")
    ca_file: str | None = Field(default=None, description="CA bundle for the switch's certificate")
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    vrf: str = "default"


class RelayConfig(_Settings):
    role: Literal["relay"]
    listen: IpAddress = Field(description="address the mapping is served on (the switch's LAN address)")
    port: int = Field(default=8790, ge=0, le=65535, description="0: any free port")
    token: SecretStr | None = Field(default=None, description="hosts must send it as a bearer token")
    source: Literal["netlink", "eapi"]
    eapi: Eapi | None = None
    poll_interval_ms: int = Field(default=200, ge=20, le=60000, description="eAPI: how often the table is read")
    resync_s: float = Field(default=5.0, gt=0, le=3600, description="netlink: full re-read besides the events")
    remove_after_s: float = Field(
        default=0.5, ge=0, le=300, description="a provider must be missing this long before it is removed"
    )
    max_wait_s: int = Field(default=60, ge=1, le=600, description="longest long-poll a host may ask for")
    providers: list[ProviderAddress] = Field(default_factory=list)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _source(self) -> RelayConfig:
        if self.source == "eapi" and self.eapi is None:
            raise ValueError("source eapi needs the eapi settings")
        tables: dict[int, str] = {}
        for p in self.providers:
            if tables.setdefault(p.table, p.name) != p.name:
                raise ValueError(f"table {p.table} is both {tables[p.table]}'s and {p.name}'s")
        return self


class HostConfig(_Settings):
    role: Literal["host"]
    relay_url: str = Field(pattern=r"^https?://", description="the relay's /v1/mapping URL")
    token: SecretStr | None = None
    ca_file: str | None = None
    interface: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,15}$", description="the server's interface toward the switch")
    local_v4: IpAddress | None = None
    local_v6: IpAddress | None = None
    proto: int = Field(default=DEFAULT_PROTO, ge=5, le=254)
    table_min: int = Field(default=DEFAULT_TABLE_MIN, ge=256)
    table_max: int = Field(default=DEFAULT_TABLE_MAX, le=0xFFFFFFFE)
    rule_priority: int = Field(default=DEFAULT_RULE_PRIORITY, ge=1, le=32765)
    long_poll_s: int = Field(default=25, ge=1, le=300)
    retry_s: float = Field(default=1.0, gt=0, le=300, description="wait after a failed request")
    state_file: str = Field(default="/var/lib/edgepop/arprelay.json", description="last good mapping, as applied")
    netns: str | None = Field(default=None, description="network namespace to program (a lab); default: own")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _local(self) -> HostConfig:
        if self.local_v4 is None and self.local_v6 is None:
            raise ValueError("a host needs local_v4, local_v6 or both (its own addresses toward the providers)")
        if self.local_v4 is not None and ":" in self.local_v4:
            raise ValueError(f"local_v4 {self.local_v4} is an IPv6 address")
        if self.local_v6 is not None and ":" not in self.local_v6:
            raise ValueError(f"local_v6 {self.local_v6} is an IPv4 address")
        if self.table_min > self.table_max:
            raise ValueError(f"table_min ({self.table_min}) is above table_max ({self.table_max})")
        return self

    @property
    def settings(self) -> Settings:
        return Settings(self.proto, self.table_min, self.table_max, self.rule_priority)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: RelayConfig | HostConfig = Field(discriminator="role")


Config = RelayConfig | HostConfig


def parse_config(data: object, path: str = "<config>") -> Config:
    """Validate already-loaded YAML (its `role` picks the model); every error names the file and the key."""
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path}: expected a mapping at the top level, got {type(data).__name__}"])
    try:
        return _File.model_validate({"config": data}).config
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            # drop the wrapper key and the discriminator's tag from the location
            loc = tuple(x for x in err["loc"][1:] if x not in ("relay", "host"))
            errors.append(f"{path}: {location(loc)}: {err['msg']}")
        raise ConfigError(path, errors) from None


def load_config(path: str) -> Config:
    return parse_config(load_yaml(path), path)


def dump_config(config: Config) -> str:
    """The effective configuration, defaults filled in, secrets masked (`--print-config`)."""
    return dump_yaml(config.model_dump(mode="json"))
