"""`edgepop inventory ...`: operator edits of an inventory, validated before anything is written.

Every subcommand builds its change in memory, shows it (`--diff`), validates the inventory as it
would be, and writes only a valid result (`--check` stops before writing). Exit codes are the
CLI's sysexits: 0 done, 64 bad arguments or unknown names, 65 the result would be invalid (or the
data conflicts, e.g. a MAC already in the inventory), 74 files that cannot be read or written.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edgepop.inventory_edit.changeset import EditError, ErrorKind
from edgepop.inventory_edit.clone import OutletRef, PortRef, ServerSpec
from edgepop.inventory_edit.commands import Plan, add_server, adopt, normalise_mac, remove_server, set_weight

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_IOERR = 74
EXIT_OF: dict[ErrorKind, int] = {"usage": EX_USAGE, "data": EX_DATAERR, "io": EX_IOERR}
PAST = {"create": "created", "change": "changed", "delete": "deleted"}


class _UsageParser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments; the edit commands promise sysexits' EX_USAGE (64)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


# --- argument types -----------------------------------------------------------------------------


def _split(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return name, value


def _mac(text: str) -> tuple[str | None, str]:
    """`NIC=MAC` or a bare MAC (assigned in the order of the template's NICs)."""
    name, mac = _split(text, "NIC=MAC") if "=" in text else (None, text)
    try:
        return name, normalise_mac(mac)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _iface_address(version: int) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        name, value = _split(text, f"IFACE=ADDRESS[/LEN] (IPv{version})")
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an IPv{version} address") from None
        if iface.version != version:
            raise argparse.ArgumentTypeError(f"{value!r} is not an IPv{version} address")
        return name, value

    parse.__name__ = f"IPv{version} IFACE=ADDRESS"
    return parse


def _address(version: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an IPv{version} address") from None
        if addr.version != version:
            raise argparse.ArgumentTypeError(f"{text!r} is not an IPv{version} address")
        return str(addr)

    parse.__name__ = f"IPv{version} address"
    return parse


def _port(text: str) -> tuple[str, PortRef]:
    name, value = _split(text, "NIC=[SWITCH:]PORT")
    switch, sep, port = value.rpartition(":")
    if sep and not (switch and port):
        raise argparse.ArgumentTypeError(f"expected NIC=[SWITCH:]PORT, got {text!r}")
    return name, PortRef(switch or None, port)


_DECIMAL = re.compile(r"[0-9]+")


def _decimal(text: str) -> int | None:
    """`text` as a number when it is ASCII digits and nothing else, else None.

    int() also takes full-width and Arabic-Indic digits, '1_000', ' 12 ' and '+5'. What
    the operator typed is written into the inventory as they meant it only when it is plain
    digits, so nothing else is read as a number."""
    return int(text) if _DECIMAL.fullmatch(text) else None


def _outlet(text: str) -> OutletRef:
    pdu, _, digits = text.rpartition(":")
    number = _decimal(digits)
    if number is None:
        raise argparse.ArgumentTypeError(f"expected [PDU:]OUTLET, the outlet in digits 0-9, got {text!r}")
    return OutletRef(pdu or None, number)


def _weight(text: str) -> int:
    number = _decimal(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"expected a whole number in digits 0-9, got {text!r}")
    return number


# --- running an edit ----------------------------------------------------------------------------


def _run(args: argparse.Namespace, build: Callable[[], Plan]) -> int:
    base = str(args.inventory).rstrip("/")
    try:
        plan = build()
        changes = plan.changes.changes()
        if args.diff:
            sys.stdout.write("".join(change.diff() for change in changes))
        if not changes:
            print(f"{base}: {plan.summary}: nothing to change")
            return EX_OK
        report = plan.changes.validate(changes)
        if not report.ok:
            print(report.format(base), file=sys.stderr)
            n = len(report.errors)
            print(
                f"{base}: {plan.summary}: refused, the inventory would be invalid "
                f"({n} error{'s' if n != 1 else ''}); nothing was changed",
                file=sys.stderr,
            )
            return EX_DATAERR
        if not args.check:
            plan.changes.write(changes)
    except EditError as exc:
        print(f"edgepop inventory {args.action}: {exc}", file=sys.stderr)
        return EXIT_OF[exc.kind]
    for change in changes:
        verb = f"would {change.verb}" if args.check else PAST[change.verb]
        print(f"{verb} {base}/{change.rel}")
    for note in plan.notes:
        print(f"note: {note}")
    print(f"{base}: {plan.summary}" + (" (check only: nothing written)" if args.check else ""))
    return EX_OK


def _spec(args: argparse.Namespace) -> ServerSpec:
    spec = ServerSpec(
        ipmi_address=args.ipmi_address,
        pdu_outlet=args.pdu_outlet,
        weight=args.weight,
        rack=args.rack,
    )
    for name, mac in args.mac:
        if name is None:
            spec.macs_in_order.append(mac)
        else:
            spec.macs[name] = mac
    for fam in ("v4", "v6"):
        for name, value in getattr(args, f"address_{fam}"):
            spec.addresses[(name, fam)] = value
    spec.switch_ports.update(args.switch_port)
    return spec


def _place(args: argparse.Namespace, command: Callable[..., Plan]) -> int:
    """add-server and adopt take the same arguments: a new server shaped like a template."""
    return _run(
        args,
        lambda: command(
            Path(args.inventory),
            args.host,
            _spec(args),
            like=args.like,
            from_file=Path(args.from_file) if args.from_file else None,
            ansible_host=args.ansible_host,
            new_switch_ports=args.new_switch_ports,
        ),
    )


def _cmd_add_server(args: argparse.Namespace) -> int:
    return _place(args, add_server)


def _cmd_adopt(args: argparse.Namespace) -> int:
    """With --pending, the box's MACs come from provisiond's queue (the entry holding the first
    --mac), and the entry leaves the queue once the inventory is written."""
    if args.pending is None:
        return _place(args, adopt)
    from edgepop.agents.provisiond import pending

    queue = Path(args.pending) / "pending.json"
    first = args.mac[0][1]
    try:
        key, raw, macs = _queued(pending.read(queue), queue, first)
    except EditError as exc:
        print(f"edgepop inventory adopt: {exc}", file=sys.stderr)
        return EXIT_OF[exc.kind]
    except OSError as exc:
        print(f"edgepop inventory adopt: cannot read {queue}: {exc.strerror or exc}", file=sys.stderr)
        return EX_IOERR
    except ValueError as exc:  # not JSON, not UTF-8
        print(f"edgepop inventory adopt: {queue}: not a pending queue ({exc})", file=sys.stderr)
        return EX_DATAERR
    named = {mac for name, mac in args.mac if name is not None}
    args.mac = [(n, m) for n, m in args.mac if n is not None] + [(None, m) for m in macs if m not in named]
    code = _place(args, adopt)
    if code == EX_OK and not args.check:
        try:
            pending.remove(queue, raw)
        except (OSError, ValueError) as exc:
            print(
                f"edgepop inventory adopt: {key} is adopted, but its entry stays in {queue}: {exc}; remove it by hand",
                file=sys.stderr,
            )
            return EX_IOERR
        print(f"removed {', '.join(macs)} from {queue}")
    return code


def _queued(data: dict[str, Any], queue: Path, mac: str) -> tuple[str, str, list[str]]:
    """The queue entry holding `mac`: its key, `mac` as the queue spells it, and its MACs normalised.

    The queue is written by provisiond from what boxes report, so every MAC of the entry goes
    through the same check as a --mac argument; a bad one names the entry and its place in it."""
    for key, entry in data.items():
        listed = entry.get("macs") if isinstance(entry, dict) else None
        if not isinstance(listed, list):
            continue
        macs: list[str] = []
        problems: list[str] = []
        for i, raw in enumerate(listed):
            try:
                macs.append(normalise_mac(raw))
            except ValueError as exc:
                problems.append(f"macs[{i}]: {exc}")
        if mac not in macs:
            continue
        if problems:
            raise EditError(f"{queue}: entry {key!r}: " + "; ".join(problems), "data")
        return str(key), str(listed[macs.index(mac)]), macs
    raise EditError(f"no box with MAC {mac} is waiting in {queue}", "data")


def _cmd_set_weight(args: argparse.Namespace) -> int:
    return _run(args, lambda: set_weight(Path(args.inventory), args.host, args.weight))


def _cmd_remove_server(args: argparse.Namespace) -> int:
    return _run(args, lambda: remove_server(Path(args.inventory), args.host))


def _no_action(args: argparse.Namespace) -> int:
    args.group_parser.print_help(sys.stderr)
    return EX_USAGE


# --- wiring -------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="validate the result and say what would change; write nothing")
    p.add_argument("--diff", action="store_true", help="print a unified diff of every file the edit changes")


def _server_options(p: argparse.ArgumentParser, template_required: bool) -> None:
    src = p.add_mutually_exclusive_group(required=template_required)
    src.add_argument("--like", metavar="EXISTING", help="copy the shape of this server (the usual way)")
    src.add_argument(
        "--from", dest="from_file", metavar="FILE", help="the new server's body: a host_vars file or 'nics: ...'"
    )
    p.add_argument(
        "--address-v4",
        type=_iface_address(4),
        action="extend",
        nargs="+",
        default=[],
        metavar="IFACE=ADDR",
        help="IPv4 address of a NIC or bond; without /LEN the template's prefix length is kept",
    )
    p.add_argument(
        "--address-v6",
        type=_iface_address(6),
        action="extend",
        nargs="+",
        default=[],
        metavar="IFACE=ADDR",
        help="IPv6 address of a NIC or bond; without /LEN the template's prefix length is kept",
    )
    p.add_argument(
        "--switch-port",
        type=_port,
        action="extend",
        nargs="+",
        default=[],
        metavar="NIC=[SWITCH:]PORT",
        help="switch port a NIC is cabled to (the template's switch unless named)",
    )
    p.add_argument("--ipmi-address", type=_address(4), metavar="ADDR", help="the BMC's management address")
    p.add_argument("--pdu-outlet", type=_outlet, metavar="[PDU:]N", help="PDU outlet that powers the server")
    p.add_argument(
        "--ansible-host",
        type=_address(4),
        metavar="ADDR",
        help="default: the new address of the interface the template is reached on",
    )
    p.add_argument("--weight", type=_weight, help="anycast weight (default: the template's)")
    p.add_argument("--rack", help="rack label")
    p.add_argument(
        "--new-switch-ports",
        action="store_true",
        help="declare switch ports the switch does not list yet (default: an unknown port is an error)",
    )
    _common(p)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `inventory` and its subcommands to the edgepop parser."""
    group = sub.add_parser(
        "inventory",
        help="edit an inventory in place (add-server, adopt, set-weight, remove-server)",
        description="Edit an inventory in place. Comments, key order and quoting are kept; the result is "
        "validated before anything is written.",
    )
    group.__class__ = _UsageParser  # usage errors at this level exit 64 too
    group.set_defaults(func=_no_action, group_parser=group, action="")
    actions = group.add_subparsers(dest="action", metavar="ACTION", parser_class=_UsageParser)

    p = actions.add_parser(
        "add-server",
        help="add a server shaped like an existing one (--like) or written in a file (--from)",
        description="Add a server. With --like, every value that belongs to one machine must be given: "
        "each NIC's MAC, each address, each cabled NIC's switch port, the IPMI address and the PDU outlet.",
    )
    p.add_argument("inventory", help="PoP inventory directory")
    p.add_argument("host", help="the new server's inventory hostname")
    p.add_argument(
        "--mac",
        type=_mac,
        action="extend",
        nargs="+",
        default=[],
        metavar="NIC=MAC",
        help="MAC of a NIC; bare MACs go to the remaining NICs in the template's order",
    )
    _server_options(p, template_required=True)
    p.set_defaults(func=_cmd_add_server)

    p = actions.add_parser(
        "adopt",
        help="register a server that called home, by its MACs",
        description="Add a server that called home. Its MACs go to the template's NICs in order (or NIC=MAC); "
        "MACs already in the inventory are refused. Without --like or --from, the template is the last "
        "server with as many NICs as MACs given.",
    )
    p.add_argument("inventory", help="PoP inventory directory")
    p.add_argument(
        "--mac",
        type=_mac,
        action="extend",
        nargs="+",
        required=True,
        metavar="[NIC=]MAC",
        help="a MAC the server reported",
    )
    p.add_argument("--as", dest="host", required=True, metavar="HOST", help="the inventory hostname to give it")
    p.add_argument(
        "--pending",
        metavar="STATE_DIR",
        help="take every MAC of the box from provisiond's queue in this state directory (the entry holding "
        "the first --mac) and drop the entry once adopted",
    )
    _server_options(p, template_required=False)
    p.set_defaults(func=_cmd_adopt)

    p = actions.add_parser("set-weight", help="change a server's anycast weight (server.anycast_weight)")
    p.add_argument("inventory", help="PoP inventory directory")
    p.add_argument("host", help="server hostname")
    p.add_argument("weight", type=_weight, help="new anycast weight (BGP MED: lowest preferred)")
    _common(p)
    p.set_defaults(func=_cmd_set_weight)

    p = actions.add_parser(
        "remove-server",
        help="remove a server: hosts.yml, host_vars, switch port peers",
        description="Remove a server from hosts.yml, delete its host_vars and clear switch port peers naming it.",
    )
    p.add_argument("inventory", help="PoP inventory directory")
    p.add_argument("host", help="server hostname")
    _common(p)
    p.set_defaults(func=_cmd_remove_server)
