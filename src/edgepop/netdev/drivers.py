"""Open NAPALM drivers for a device, and make EOS over SSH report rejected lines.

NAPALM's `eos` driver over the SSH transport sends the candidate with netmiko's
`send_config_set` and never looks at what the CLI answered, so a candidate whose every line was
refused with "% Invalid input" loads, diffs empty or partial, and commits "successfully". eAPI
raises on the first refused line. `guard_eos_ssh` closes that gap: it makes the driver's netmiko
session check each line's echo for EOS's error markers, so the driver's own error path runs
(abort the session, raise MergeConfigException/ReplaceConfigException) before anything is
committed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edgepop.netdev.push import Driver

Platform = Literal["eos", "junos"]

EOS_CLI_ERROR = r"% ?(?:Invalid input|Incomplete command|Ambiguous command|Unrecognized command|Error)"
"""What EOS prints in front of a line it refused."""


@dataclass(frozen=True)
class Target:
    """How to reach one device's management plane."""

    host: str
    platform: Platform
    address: str
    username: str
    password: str = field(repr=False, default="")
    port: int | None = None
    transport: str | None = None
    """EOS: https (eAPI, the default), http or ssh. Junos: always NETCONF over SSH."""
    timeout: int = 30
    optional_args: dict[str, Any] = field(default_factory=dict)


# pyeapi logs every socket error with a full traceback at ERROR level before raising it; the raised
# error is what we report (as DeviceUnreachable/AuthenticationFailed), once and readably.
logging.getLogger("pyeapi.eapilib").setLevel(logging.CRITICAL)


def guard_eos_ssh(driver: Any) -> None:
    """Make the EOS driver's SSH session raise on a refused config line (see the module docstring)."""
    session = driver.device
    original = session.send_config_set

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        from netmiko import ConfigInvalidException

        kwargs.setdefault("error_pattern", EOS_CLI_ERROR)
        try:
            return original(*args, **kwargs)
        except ConfigInvalidException:
            # netmiko stops in the middle of the session's config mode; NAPALM's discard that
            # follows is an exec command and expects the exec prompt
            session.exit_config_mode()
            raise

    session.send_config_set = checked


def opener(target: Target) -> Callable[[], Driver]:
    """A function that opens a new connection to `target` each time it is called."""

    def open_driver() -> Driver:
        from napalm import get_network_driver

        args = dict(target.optional_args)  # drivers pop what they read: a fresh dict per connection
        if target.port:
            args["port"] = target.port
        if target.platform == "eos" and target.transport:
            args["transport"] = target.transport
        driver = get_network_driver(target.platform)(
            target.address, target.username, target.password, timeout=target.timeout, optional_args=args
        )
        driver.open()
        if target.platform == "eos" and getattr(driver, "transport", None) == "ssh":
            guard_eos_ssh(driver)
        return driver  # type: ignore[no-any-return]

    return open_driver
