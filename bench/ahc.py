"""Adapter for running anycast-healthchecker (unixsurfer's, from PyPI) against a BIRD 2 daemon.

bench/failover.py uses it as the agent to compare our own against. It lives in its own venv
(`AHC_VENV`, pinned by bench/requirements-failover.txt) and is only driven from outside: we write its
INI config, a BIRD include file, and start it as a foreground process.

How it drives BIRD: one thread per service check runs `check_cmd` (no shell) every `check_interval`;
after `check_fail` failures in a row (or `check_rise` passes) the main thread rewrites `bird_conf`
atomically as `define ACAST_PS_ADVERTISE = [ <dummy>, <prefixes up> ];` and runs
`bird_reconfigure_cmd` (here `birdc -s SOCKET configure`, 2 s timeout, fixed in the package). BIRD's
filters decide what the constant means; `bird_filter_snippet` gives the usual export filter. Before
each check it also runs `/sbin/ip address show dev <interface> to <prefix>`: a prefix that is not
assigned to the interface (default `lo`) is DOWN whatever the check says.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AHC_VENV = ROOT / ".cache" / "bench" / "ahc-venv"
REQUIREMENTS = ROOT / "bench" / "requirements-failover.txt"

# anycast_healthchecker/__init__.py DEFAULT_OPTIONS of 0.9.10 (`anycast-healthchecker -p` prints them)
DEFAULTS: dict[str, float] = {"interval": 10.0, "timeout": 2.0, "rise": 2.0, "fail": 2.0}

VARIABLE = "ACAST_PS_ADVERTISE"
VARIABLE6 = "ACAST6_PS_ADVERTISE"
# Always in the constant, never announced. The package's own v4 default (10.189.200.255/32) is not a
# documentation address, so both are set explicitly.
DUMMY_PREFIX = "198.51.100.255/32"
DUMMY_PREFIX6 = "2001:db8:ffff::1/128"
SERVICE = "bench"
CONFIG_NAME = "anycast-healthchecker.conf"
CHECKS_DIR = "anycast-healthchecker.d"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    return pins


def _installed() -> dict[str, str]:
    paths = [str(p) for p in AHC_VENV.glob("lib/python3*/site-packages")]
    if not paths:
        return {}
    return {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions(path=paths)}


def ensure_installed(log: Callable[[str], object]) -> Path:
    """Create AHC_VENV and install the pinned requirements unless they already are; return the executable."""
    exe = AHC_VENV / "bin" / "anycast-healthchecker"
    pins = _pins()
    installed = _installed()
    if exe.exists() and all(installed.get(name) == version for name, version in pins.items()):
        return exe
    python = AHC_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {AHC_VENV}")
        AHC_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(AHC_VENV)], check=True)
    log(f"installing {REQUIREMENTS.name} into {AHC_VENV}")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )
    if not exe.exists():
        raise RuntimeError(f"{exe} missing after installing {REQUIREMENTS}")
    return exe


def _host_prefix(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    net = ipaddress.ip_network(prefix)
    # the package accepts any length but its assignment check only matches the exact prefix on the interface
    if net.prefixlen != net.max_prefixlen:
        raise ValueError(f"{prefix}: anycast-healthchecker is meant for host prefixes (/32, /128)")
    return net


def _ini(section: str, options: dict[str, str]) -> str:
    lines = [f"[{section}]"]
    for key, value in options.items():
        if "\n" in value:
            raise ValueError(f"{key}: no newlines in an INI value")
        lines.append(f"{key} = {value.replace('%', '%%')}")  # configparser interpolates %
    return "\n".join(lines) + "\n"


def write_config(
    workdir: Path,
    *,
    bird_socket: str,
    birdc: str,
    bird_conf: Path,
    prefix: str,
    check_cmd: str,
    interval_s: float | None = None,
    timeout_s: float | None = None,
    rise: int | None = None,
    fail: int | None = None,
    interface: str | None = None,
    ip_check: bool | None = None,
) -> Path:
    """Write the daemon config and one service check under `workdir`; return the daemon config's path.

    None leaves the package's default. `bird_conf` is the include anycast-healthchecker rewrites; write
    `initial_include(prefix)` into it before BIRD starts. `interface`/`ip_check`: where the prefix
    must be assigned (default lo) and whether to look at all (default yes).
    """
    net = _host_prefix(prefix)
    v6 = net.version == 6
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CHECKS_DIR).mkdir(exist_ok=True)
    pidfile = workdir / "anycast-healthchecker.pid"
    pidfile.unlink(missing_ok=True)
    # -s works with birdc's command line, so no wrapper script is needed
    reconfigure = shlex.join([birdc, "-s", bird_socket, "configure"])
    daemon = {
        "ipv4": "false" if v6 else "true",
        "ipv6": "true" if v6 else "false",
        "bird6_conf" if v6 else "bird_conf": str(bird_conf),
        "bird6_reconfigure_cmd" if v6 else "bird_reconfigure_cmd": reconfigure,
        "dummy_ip_prefix": DUMMY_PREFIX,
        "dummy_ip6_prefix": DUMMY_PREFIX6,
        "pidfile": str(pidfile),
        "loglevel": "info",  # debug (the default) logs every sleep
    }
    service = {
        "check_cmd": check_cmd,
        "ip_prefix": net.with_prefixlen,
        "check_disabled": "false",  # the package's default is true: a disabled check withdraws for good
        "on_disabled": "withdraw",
    }
    for key, value in (("check_interval", interval_s), ("check_timeout", timeout_s)):
        if value is not None:
            service[key] = f"{value:g}"
    for key, count in (("check_rise", rise), ("check_fail", fail)):
        if count is not None:
            service[key] = str(count)
    if interface is not None:
        service["interface"] = interface
    if ip_check is not None:
        service["ip_check_disabled"] = "false" if ip_check else "true"
    config = workdir / CONFIG_NAME
    config.write_text(_ini("daemon", daemon))
    (workdir / CHECKS_DIR / f"{SERVICE}.conf").write_text(_ini(SERVICE, service))
    return config


def bird_filter_snippet(include: Path, *, ipv6: bool = False) -> str:
    """BIRD 2 config that reads the managed include and a filter for the channel that announces it."""
    variable = VARIABLE6 if ipv6 else VARIABLE
    return (
        "# anycast-healthchecker rewrites this file and runs `birdc configure`\n"
        f'include "{include}";\n'
        "filter ahc_export {\n"
        f"    if net ~ {variable} then accept;\n"
        "    reject;\n"
        "}\n"
    )


def initial_include(prefix: str) -> str:
    """The include with `prefix` announced, in the package's own layout, so BIRD can start first."""
    net = _host_prefix(prefix)
    dummy, variable = (DUMMY_PREFIX6, VARIABLE6) if net.version == 6 else (DUMMY_PREFIX, VARIABLE)
    entries = ",\n".join(" " * 8 + p for p in (dummy, net.with_prefixlen))
    return (
        "# Written by bench/ahc.py; anycast-healthchecker rewrites it\n"
        f"# {dummy} is a dummy IP Prefix. It should NOT be used and REMOVED from the constant.\n"
        f"define {variable} =\n"
        "    [\n"
        f"{entries}\n"
        "    ];\n"
    )


def argv(exe: Path, config: Path) -> list[str]:
    """Command line: it never daemonizes; logs go to stderr, a few startup lines to stdout."""
    return [str(exe), "--file", str(config), "--dir", str(config.parent / CHECKS_DIR)]
