"""First contact with a factory-fresh device over an SSH CLI session (netmiko): turn on the API
that NAPALM needs, eAPI on EOS and NETCONF on Junos.

NAPALM's eos driver talks eAPI and its junos driver NETCONF; a new box serves neither, and the
console or SSH CLI is all there is. This is the one place a CLI session is the right tool: a few
config lines, a save or commit, and a check that the API is now on. Each function reads state
first and changes nothing when the API is already on; a refused line fails before anything is
saved or committed. Show commands here are parsed with TextFSM (ntc-templates), the way a CLI's
text should be read when no structured output is on offer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgepop.netdev.drivers import EOS_CLI_ERROR
from edgepop.netdev.errors import ConfigLocked, ConfigRejected, NetdevError, classify

EAPI_ON = ["management api http-commands", "protocol https", "no shutdown"]
NETCONF_ON = ["set system services netconf ssh"]
NETCONF_SHOW = "show configuration system services netconf | display set"
JUNOS_CLI_ERROR = r"syntax error|unknown command|(?m:^error:)"
"""What the Junos CLI prints for a refused line: netmiko raises on it."""


@dataclass
class BootstrapResult:
    host: str
    changed: bool
    enabled: bool
    """Whether the API (eAPI, NETCONF) is on once the call returns."""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def eapi_enabled(self) -> bool:
        return self.enabled


def _connect(host: str, device_type: str, address: str, username: str, password: str, port: int, timeout: int) -> Any:
    from netmiko import ConnectHandler

    try:
        return ConnectHandler(
            device_type=device_type,
            host=address,
            port=port,
            username=username,
            password=password,
            timeout=timeout,
            conn_timeout=timeout,
            auth_timeout=timeout,
        )
    except Exception as exc:
        raise classify(host, exc, "opening an SSH session") from exc


def _eapi_enabled(conn: Any) -> bool:
    raw = conn.send_command("show management api http-commands | json")
    try:
        return bool(json.loads(raw).get("enabled"))
    except (ValueError, AttributeError) as exc:
        raise NetdevError(conn.host, f"unexpected answer to show management api http-commands: {raw!r}") from exc


def show_version(conn: Any) -> dict[str, Any]:
    """`show version` parsed with ntc-templates' TextFSM template for the session's platform."""
    parsed = conn.send_command("show version", use_textfsm=True)
    if not isinstance(parsed, list) or not parsed:
        raise NetdevError(conn.host, f"show version did not parse: {parsed!r}")
    return dict(parsed[0])


@dataclass(frozen=True)
class _Api:
    """How one platform's API is found, switched on and confirmed over its CLI."""

    name: str
    device_type: str
    enable_mode: bool
    is_on: Callable[[Any], bool]
    switch_on: Callable[[str, Any], None]
    unconfirmed: str
    """What went wrong when the change was made but the API still does not show as on."""


def _enable(
    api: _Api, host: str, address: str, username: str, password: str, port: int, timeout: int, check: bool
) -> BootstrapResult:
    conn = _connect(host, api.device_type, address, username, password, port, timeout)
    try:
        if api.enable_mode:
            conn.enable()
        facts = show_version(conn)
        if api.is_on(conn):
            return BootstrapResult(host, changed=False, enabled=True, facts=facts)
        if check:
            return BootstrapResult(host, changed=True, enabled=False, facts=facts)
        api.switch_on(host, conn)
        if not api.is_on(conn):
            raise NetdevError(host, api.unconfirmed)
        return BootstrapResult(host, changed=True, enabled=True, facts=facts)
    except NetdevError:
        raise
    except Exception as exc:
        raise classify(host, exc, f"enabling {api.name}") from exc
    finally:
        conn.disconnect()


def _eapi_on(host: str, conn: Any) -> None:
    from netmiko import ConfigInvalidException

    try:
        conn.send_config_set(EAPI_ON, error_pattern=EOS_CLI_ERROR)
    except ConfigInvalidException as exc:
        conn.exit_config_mode()
        raise ConfigRejected(host, f"enabling eAPI was refused: {exc}") from exc
    conn.save_config()


def _netconf_enabled(conn: Any) -> bool:
    """Whether the committed config has `system services netconf ssh`."""
    lines = conn.send_command(NETCONF_SHOW).splitlines()
    if any(re.search(JUNOS_CLI_ERROR, line) for line in lines):
        raise NetdevError(conn.host, f"unexpected answer to {NETCONF_SHOW}: {lines!r}")
    return any(line.split()[:5] == ["set", "system", "services", "netconf", "ssh"] for line in lines)


def _netconf_on(host: str, conn: Any) -> None:
    from netmiko import ConfigInvalidException

    try:
        conn.send_config_set(NETCONF_ON, exit_config_mode=False, error_pattern=JUNOS_CLI_ERROR)
        conn.commit(and_quit=True)
    except (ConfigInvalidException, ValueError) as exc:
        _discard(conn)
        if "database locked" in str(exc):
            raise ConfigLocked(host, f"the configuration is locked by another session: {exc}") from exc
        raise ConfigRejected(host, f"enabling NETCONF was refused: {exc}") from exc


EAPI = _Api("eAPI", "arista_eos", True, _eapi_enabled, _eapi_on, "eAPI is configured but does not report enabled")
NETCONF = _Api(
    "NETCONF",
    "juniper_junos",
    False,
    _netconf_enabled,
    _netconf_on,
    "NETCONF is committed but the configuration does not show it",
)


def enable_eapi(
    host: str,
    address: str,
    username: str,
    password: str,
    *,
    port: int = 22,
    timeout: int = 30,
    check: bool = False,
) -> BootstrapResult:
    """Turn on eAPI (HTTPS) on an EOS switch reached over SSH; idempotent; `check` changes nothing."""
    return _enable(EAPI, host, address, username, password, port, timeout, check)


def enable_netconf(
    host: str,
    address: str,
    username: str,
    password: str,
    *,
    port: int = 22,
    timeout: int = 30,
    check: bool = False,
) -> BootstrapResult:
    """Turn on NETCONF over SSH on a Junos router reached over its SSH CLI; idempotent; `check`
    changes nothing. A `root` login on a factory-fresh box lands in the shell; netmiko starts the
    CLI from there. The change is committed (`commit and-quit`): Junos has no separate save."""
    return _enable(NETCONF, host, address, username, password, port, timeout, check)


def _discard(conn: Any) -> None:
    """Leave configuration mode without our uncommitted change in the shared candidate."""
    if conn.check_config_mode():
        conn.send_command("rollback 0", expect_string=r"#")
        conn.exit_config_mode()
