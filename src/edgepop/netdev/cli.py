"""`edgepop netdev bootstrap ADDRESS`: turn on eAPI on a factory-fresh EOS switch over SSH."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

EX_OK, EX_UNAVAILABLE, EX_NOPERM, EX_SOFTWARE = 0, 69, 77, 70
PASSWORD_ENV = "EDGEPOP_NETDEV_PASSWORD"


def _bootstrap(args: argparse.Namespace) -> int:
    from edgepop.netdev.bootstrap import enable_eapi
    from edgepop.netdev.errors import AuthenticationFailed, DeviceUnreachable, NetdevError

    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = getpass.getpass(f"password for {args.username}@{args.address}: ")
    host = args.name or args.address
    try:
        result = enable_eapi(
            host, args.address, args.username, password, port=args.port, timeout=args.timeout, check=args.check
        )
    except NetdevError as exc:
        print(f"edgepop netdev bootstrap: {exc}", file=sys.stderr)
        if isinstance(exc, DeviceUnreachable):
            return EX_UNAVAILABLE
        return EX_NOPERM if isinstance(exc, AuthenticationFailed) else EX_SOFTWARE
    model, image = result.facts.get("model", "?"), result.facts.get("image", "?")
    if not result.changed:
        state = "eAPI already enabled, nothing changed"
    elif args.check:
        state = "eAPI is off and would be enabled (check mode, nothing changed)"
    else:
        state = "eAPI enabled and saved"
    print(f"{host}: Arista {model} EOS {image}: {state}")
    return EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("netdev", help="network devices: first contact with a factory-fresh EOS switch")
    net_sub = p.add_subparsers(dest="netdev_command", required=True, metavar="ACTION")
    b = net_sub.add_parser(
        "bootstrap",
        help=f"enable eAPI on an EOS switch over SSH (netmiko); the password comes from ${PASSWORD_ENV} or a prompt",
    )
    b.add_argument("address", help="management address of the switch")
    b.add_argument("--name", help="inventory name, for messages (default: the address)")
    b.add_argument("--username", default="admin")
    b.add_argument("--port", type=int, default=22)
    b.add_argument("--timeout", type=int, default=30)
    b.add_argument("--check", action="store_true", help="report what would change, change nothing")
    b.set_defaults(func=_bootstrap)
