"""Jinja2 rendering of the shared templates (under the repository's templates/), and secret placeholders.

Kept apart from the model and derivation code so that the Ansible actions, which render in every
forked worker, import nothing heavier than Jinja2 (which Ansible has already loaded).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

SECRET_RE = re.compile(r"<vault:([^>]+)>")


def swap_secrets(text: str, value_of: Callable[[str], str]) -> tuple[str, bool]:
    """Replace each `<vault:EXPR>` placeholder with `value_of(EXPR)`; also say whether there was one.
    The Ansible actions call this with a lookup in the host's variables, just before writing."""
    found = False

    def swap(match: re.Match[str]) -> str:
        nonlocal found
        found = True
        return value_of(match.group(1))

    return SECRET_RE.sub(swap, text), found


class SecretUnresolved(LookupError):
    """A `<vault:EXPR>` placeholder whose expression has no value for this host."""

    def __init__(self, expr: str) -> None:
        super().__init__(f"secret {expr} has no value for this host")
        self.expr = expr


def secret_lookup(lookup: Callable[[str], object], seen: set[str] | None = None) -> Callable[[str], str]:
    """`value_of` for `swap_secrets` from a lookup of an expression in the host's variables.

    A value that is missing or still unresolved (a variable not set, a vault not opened: the result
    still holds `{{` or a placeholder) raises `SecretUnresolved` instead of being written; every value
    found is added to `seen`, for the callers that mask them in diffs.
    """

    def value_of(expr: str) -> str:
        value = lookup(expr)
        if value is None or "{{" in str(value) or str(value).startswith("<vault:"):
            raise SecretUnresolved(expr)
        if seen is not None:
            seen.add(str(value))
        return str(value)

    return value_of


def templates_dir() -> Path:
    """The shared templates: $EDGEPOP_TEMPLATES, else the repository's templates/ directory."""
    env = os.environ.get("EDGEPOP_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "templates"


def _ip(value: str) -> str:
    return str(ipaddress.ip_interface(value).ip)


def _prefixlen(value: str) -> int:
    return ipaddress.ip_interface(value).network.prefixlen


def _network(value: str) -> str:
    return str(ipaddress.ip_interface(value).network)


def _netmask(value: str) -> str:
    return str(ipaddress.ip_interface(value).network.netmask)


def _to_json(value: Any) -> str:
    """JSON without HTML escaping (unlike Jinja's tojson), so `<vault:...>` placeholders survive."""
    return json.dumps(value, indent=1)


def _ident(value: str) -> str:
    """A name usable as a BIRD/Junos identifier (letters, digits, underscore)."""
    return "".join(ch if ch.isalnum() else "_" for ch in value)


@lru_cache(maxsize=4)
def _environment(root: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(ip=_ip, prefixlen=_prefixlen, network=_network, netmask=_netmask, ident=_ident, to_json=_to_json)
    return env


def render_template(name: str, **context: Any) -> str:
    return _environment(str(templates_dir())).get_template(name).render(**context)
