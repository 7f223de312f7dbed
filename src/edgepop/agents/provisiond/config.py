"""provisiond's configuration: the plan rendered from the inventory (`provisiond.json`, the control
host's `provisioning` section) plus the few runtime settings of the box it runs on.

Unknown keys are errors, and every error names the file and the key. The call-home token is a
`SecretStr`: it never shows in `--print-config`, a repr or a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from edgepop.agents.common import ConfigError as ConfigError  # the agents' one error type, re-exported
from edgepop.agents.common import location
from edgepop.model.safe_yaml import UnreadableFile, YamlProblem, load_json_file
from edgepop.model.schema import MAC_RE


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Settings):
    version: str = Field(pattern=r"^[0-9A-Za-z._-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    public_key: str | None = None

    @property
    def pinned_sha256(self) -> str | None:
        """The manifest hash to insist on; all zeros (the lab's placeholder) pins nothing."""
        return None if set(self.sha256) == {"0"} else self.sha256


class NearestPop(_Settings):
    name: str
    url: str = Field(pattern=r"^https?://")


class DhcpPool(_Settings):
    start: str
    end: str


class DhcpHost(_Settings):
    hostname: str
    macs: list[str]
    address_v4: str | None = None


class KnownHost(_Settings):
    """A server of the inventory: every MAC it has, and the answer it gets when it calls home."""

    macs: list[str] = Field(min_length=1)
    identity: dict[str, Any]

    @field_validator("macs")
    @classmethod
    def _macs(cls, value: list[str]) -> list[str]:
        import re

        for mac in value:
            if not re.match(MAC_RE, mac):
                raise ValueError(f"{mac!r} is not a lower-case colon-separated MAC")
        return value


class Plan(_Settings):
    """The rendered `provisiond.json` (see edgepop.derive.derive_provisioning)."""

    pop: str
    boot_group: str
    network_v4: str
    server_url: str
    listen_port: int = Field(ge=1, le=65535)
    callhome_url: str
    callhome_token: SecretStr = Field(min_length=16)
    image: ImageSpec
    nearest_pops: list[NearestPop] = Field(default_factory=list)
    dhcp_pool: DhcpPool | None = None
    dhcp_hosts: list[DhcpHost] = Field(default_factory=list)
    hosts: list[KnownHost] = Field(default_factory=list)

    def mac_index(self) -> dict[str, int]:
        """MAC -> index into `hosts`."""
        return {mac: i for i, host in enumerate(self.hosts) for mac in host.macs}


class RateLimit(_Settings):
    """Per client address: `burst` call-home requests at once, refilled at `per_minute`."""

    burst: int = Field(default=10, ge=1, le=10000)
    per_minute: float = Field(default=30.0, gt=0, le=100000)


def load_plan(path: str | Path) -> Plan:
    name = str(path)
    try:
        raw = load_json_file(path)  # bounded: size, depth, UTF-8, duplicate keys, giant numbers; no FIFO wait
    except UnreadableFile as exc:
        raise ConfigError(name, [f"{name}: {exc.message}"]) from None
    except YamlProblem as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        raise ConfigError(name, [f"{name}: {where}{exc.message}"]) from None
    token = raw.get("callhome_token") if isinstance(raw, dict) else None
    if isinstance(token, str) and token.startswith("<vault:"):
        raise ConfigError(name, [f"{name}: callhome_token: still a {token} placeholder"])
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(name, [f"{name}: {location(err['loc'])}: {err['msg']}" for err in exc.errors()]) from None
