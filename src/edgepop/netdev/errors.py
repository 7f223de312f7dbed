"""The errors a push can end with, one class per thing an operator does something different about.

NAPALM, pyeapi, netmiko, PyEZ and paramiko each raise their own exceptions for the same event
(wrong password, nothing listening, someone else holding the configuration). `classify` maps them
once, by class and message, so the engine, the Ansible action and the CLI all say the same thing.
"""

from __future__ import annotations

import socket


class NetdevError(Exception):
    """A push failed. `committed` says whether anything reached the running config and stayed."""

    kind = "error"

    def __init__(self, host: str, message: str, *, committed: bool = False) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message
        self.committed = committed


class DeviceUnreachable(NetdevError):
    kind = "unreachable"


class AuthenticationFailed(NetdevError):
    kind = "auth"


class ConfigLocked(NetdevError):
    """Another session holds the configuration, or a confirmed commit is still pending."""

    kind = "locked"


class ConfigRejected(NetdevError):
    """The device refused lines of the candidate; the candidate was discarded, nothing committed."""

    kind = "rejected"


class PostCheckFailed(NetdevError):
    """The committed change broke a post-check and was rolled back (or is reverting on its timer)."""

    kind = "postcheck"


class CommitFailed(NetdevError):
    kind = "commit"


class InvalidRequest(NetdevError):
    kind = "invalid"


_AUTH_NAMES = {
    "ConnectAuthError",  # napalm, jnpr.junos
    "NetmikoAuthenticationException",
    "AuthenticationException",  # paramiko
    "BadAuthenticationType",
}
_UNREACHABLE_NAMES = {
    "ConnectionException",  # napalm
    "ConnectTimeoutError",
    "ConnectRefusedError",
    "ConnectUnknownHostError",
    "ConnectClosedError",
    "ConnectError",
    "ProbeError",
    "NetmikoTimeoutException",
    "NoValidConnectionsError",
    "SSHException",
}
_LOCK_NAMES = {"SessionLockedException", "LockError"}
_REJECT_NAMES = {"MergeConfigException", "ReplaceConfigException", "ConfigLoadError", "ConfigInvalidException"}
_AUTH_WORDS = ("unauthorized", "authentication failed", "401", "permission denied")


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def classify(host: str, exc: BaseException, doing: str) -> NetdevError:
    """The NetdevError for a vendor exception raised while `doing` (e.g. "connecting")."""
    if isinstance(exc, NetdevError):
        return exc
    names = _names(exc)
    text = str(exc) or type(exc).__name__
    where = f"{doing}: {text}"
    if names & _AUTH_NAMES:
        return AuthenticationFailed(host, f"authentication failed while {where}")
    if names & _LOCK_NAMES:
        return ConfigLocked(host, f"configuration is locked by another session while {where}")
    if names & _REJECT_NAMES:
        return ConfigRejected(host, f"device rejected the candidate while {where}")
    # pyeapi raises one ConnectionError for a refused socket and for HTTP 401 alike
    if "ConnectionError" in names and type(exc).__module__.startswith("pyeapi"):
        if any(word in text.lower() for word in _AUTH_WORDS):
            return AuthenticationFailed(host, f"authentication failed while {where}")
        return DeviceUnreachable(host, f"device unreachable while {where}")
    if names & _UNREACHABLE_NAMES or isinstance(exc, (OSError, socket.timeout, EOFError)):
        return DeviceUnreachable(host, f"device unreachable while {where}")
    return NetdevError(host, f"{type(exc).__name__} while {where}")
