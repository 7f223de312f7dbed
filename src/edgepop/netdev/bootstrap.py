"""First contact with a factory-fresh EOS switch: turn on eAPI over an SSH CLI session (netmiko).

NAPALM's eos driver talks eAPI, which a new switch does not serve yet; the console or SSH CLI is
all there is. This is the one place a CLI session is the right tool: three config lines, a save,
and a check that the API now runs. It reads state first and changes nothing when eAPI is already
on; a refused line fails before anything is saved. Show commands here are parsed with TextFSM
(ntc-templates), the way a CLI's text should be read when no JSON is on offer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edgepop.netdev.drivers import EOS_CLI_ERROR
from edgepop.netdev.errors import ConfigRejected, NetdevError, classify

EAPI_ON = ["management api http-commands", "protocol https", "no shutdown"]


@dataclass
class BootstrapResult:
    host: str
    changed: bool
    eapi_enabled: bool
    facts: dict[str, Any] = field(default_factory=dict)


def _eapi_enabled(conn: Any) -> bool:
    raw = conn.send_command("show management api http-commands | json")
    try:
        return bool(json.loads(raw).get("enabled"))
    except (ValueError, AttributeError) as exc:
        raise NetdevError(conn.host, f"unexpected answer to show management api http-commands: {raw!r}") from exc


def show_version(conn: Any) -> dict[str, Any]:
    """`show version` parsed with ntc-templates' TextFSM template for arista_eos."""
    parsed = conn.send_command("show version", use_textfsm=True)
    if not isinstance(parsed, list) or not parsed:
        raise NetdevError(conn.host, f"show version did not parse: {parsed!r}")
    return dict(parsed[0])


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
    from netmiko import ConfigInvalidException, ConnectHandler

    try:
        conn = ConnectHandler(
            device_type="arista_eos",
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
    try:
        conn.enable()
        facts = show_version(conn)
        if _eapi_enabled(conn):
            return BootstrapResult(host, changed=False, eapi_enabled=True, facts=facts)
        if check:
            return BootstrapResult(host, changed=True, eapi_enabled=False, facts=facts)
        try:
            conn.send_config_set(EAPI_ON, error_pattern=EOS_CLI_ERROR)
        except ConfigInvalidException as exc:
            conn.exit_config_mode()
            raise ConfigRejected(host, f"enabling eAPI was refused: {exc}") from exc
        conn.save_config()
        if not _eapi_enabled(conn):
            raise NetdevError(host, "eAPI is configured but does not report enabled")
        return BootstrapResult(host, changed=True, eapi_enabled=True, facts=facts)
    except NetdevError:
        raise
    except Exception as exc:
        raise classify(host, exc, "enabling eAPI") from exc
    finally:
        conn.disconnect()
