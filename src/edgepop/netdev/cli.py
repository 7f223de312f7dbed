"""`edgepop netdev bootstrap [--platform eos|junos] ADDRESS`: turn on the API NAPALM needs (eAPI on
an EOS switch, NETCONF on a Junos router) on a factory-fresh device, over its SSH CLI."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

EX_OK, EX_UNAVAILABLE, EX_NOPERM, EX_SOFTWARE = 0, 69, 77, 70
PASSWORD_ENV = "EDGEPOP_NETDEV_PASSWORD"


API = {"eos": "eAPI", "junos": "NETCONF"}
VENDOR = {"eos": ("Arista", "EOS", "model", "image"), "junos": ("Juniper", "Junos", "model", "junos_version")}


def _bootstrap(args: argparse.Namespace) -> int:
    from edgepop.netdev.bootstrap import enable_eapi, enable_netconf
    from edgepop.netdev.errors import AuthenticationFailed, DeviceUnreachable, NetdevError

    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = getpass.getpass(f"password for {args.username}@{args.address}: ")
    host = args.name or args.address
    enable = enable_netconf if args.platform == "junos" else enable_eapi
    try:
        result = enable(
            host, args.address, args.username, password, port=args.port, timeout=args.timeout, check=args.check
        )
    except NetdevError as exc:
        print(f"edgepop netdev bootstrap: {exc}", file=sys.stderr)
        if isinstance(exc, DeviceUnreachable):
            return EX_UNAVAILABLE
        return EX_NOPERM if isinstance(exc, AuthenticationFailed) else EX_SOFTWARE
    api = API[args.platform]
    vendor, os_name, model_key, version_key = VENDOR[args.platform]
    model, version = result.facts.get(model_key) or "?", result.facts.get(version_key) or "?"
    if not result.changed:
        state = f"{api} already enabled, nothing changed"
    elif args.check:
        state = f"{api} is off and would be enabled (check mode, nothing changed)"
    else:
        state = f"{api} enabled and saved" if args.platform == "eos" else f"{api} enabled and committed"
    print(f"{host}: {vendor} {model} {os_name} {version}: {state}")
    return EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("netdev", help="network devices: first contact with a factory-fresh EOS switch or Junos router")
    net_sub = p.add_subparsers(dest="netdev_command", required=True, metavar="ACTION")
    b = net_sub.add_parser(
        "bootstrap",
        help="enable eAPI (EOS) or NETCONF (Junos) over the SSH CLI (netmiko); "
        f"the password comes from ${PASSWORD_ENV} or a prompt",
        description="Exit codes: 0 done (or nothing to do), 69 unreachable, 77 authentication failed, "
        "70 anything else (a refused line, a failed commit).",
    )
    b.add_argument("address", help="management address of the device")
    b.add_argument("--platform", choices=sorted(API), default="eos", help="eos (default) or junos")
    b.add_argument("--name", help="inventory name, for messages (default: the address)")
    b.add_argument("--username", default="admin")
    b.add_argument("--port", type=int, default=22)
    b.add_argument("--timeout", type=int, default=30)
    b.add_argument("--check", action="store_true", help="report what would change, change nothing")
    b.set_defaults(func=_bootstrap)
