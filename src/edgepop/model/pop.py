"""The validated PoP: what every later stage (derive, render, playbooks) works from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepop.model.schema import AnycastService, Control, Pop, Provider, Router, Server, Switch, natural_key


@dataclass(frozen=True)
class PopModel:
    """A whole PoP after validation. Device maps are in natural host-name order."""

    root: Path
    pop: Pop
    providers: list[Provider]
    services: list[AnycastService]
    routers: dict[str, Router]
    switches: dict[str, Switch]
    servers: dict[str, Server]
    controls: dict[str, Control]
    ansible_hosts: dict[str, str] = field(default_factory=dict)
    extra_vars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def service(self, name: str) -> AnycastService:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def provider_by_router(self, router: str) -> list[Provider]:
        return [p for p in self.providers if p.router == router]

    @property
    def hostnames(self) -> list[str]:
        names = [*self.routers, *self.switches, *self.servers, *self.controls]
        return sorted(names, key=natural_key)
