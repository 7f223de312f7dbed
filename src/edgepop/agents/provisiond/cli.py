"""`python3 -m edgepop.agents.provisiond`: the daemon; and `edgepop provisioning pending`.

Exit codes are sysexits. SIGTERM stops the server; SIGHUP re-reads the plan (after `adopt` and a
playbook run, a pending box is known at its next call).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from edgepop.agents.common import add_debug_flag, load_or_report
from edgepop.agents.provisiond import pending
from edgepop.agents.provisiond.callhome import RateLimiter
from edgepop.agents.provisiond.config import ConfigError, Plan, RateLimit, load_plan
from edgepop.agents.provisiond.server import HTTP_BURST, HTTP_PER_MINUTE, Context, make_server
from edgepop.agents.provisiond.store import ImageStore
from edgepop.image.release import ImageVerifyError
from edgepop.last_resort import last_resort

log = logging.getLogger("provisiond")
DEFAULT_STATE = "/var/lib/edgepop/provisiond"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(os.EX_USAGE)


def _bounded(kind: type[int] | type[float], low: float, high: float, what: str) -> Callable[[str], int | float]:
    """An argparse type: a number in [low, high] (low excluded for floats), with a clear error."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        ok = low <= value <= high if kind is int else low < value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: {what}")
        return value

    return convert


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address prefix like 198.51.100.0/24") from None


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="provisiond", description="PXE/iPXE image server and call-home endpoint.")
    p.add_argument("--plan", default="/etc/edgepop/provisiond.json", help="the rendered provisiond.json")
    p.add_argument("--ipxe-dir", default="/etc/edgepop/ipxe", help="per-MAC iPXE scripts and default.ipxe")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help="images/, pending.json, requests.log")
    p.add_argument("--listen", default="0.0.0.0", help="address to listen on")
    port = _bounded(int, 1, 65535, "a TCP port from 1 to 65535")
    p.add_argument("--port", type=port, help="default: the port of the plan's server_url")
    limit = RateLimit()
    burst = _bounded(int, 1, 10000, "a whole number from 1 to 10000")
    rate = _bounded(float, 0, 100000, "a number above 0, at most 100000")
    p.add_argument("--burst", type=burst, default=limit.burst, help="call-home requests per client at once")
    p.add_argument("--per-minute", type=rate, default=limit.per_minute, help="sustained call-home rate")
    p.add_argument("--http-burst", type=burst, default=HTTP_BURST, help="other requests per client at once")
    p.add_argument("--http-per-minute", type=rate, default=HTTP_PER_MINUTE, help="sustained rate of other requests")
    p.add_argument(
        "--boot-network",
        type=_network,
        action="append",
        help="who may fetch the call-home settings of a MAC without a fixed boot address (repeatable; "
        "default: the plan's network_v4)",
    )
    p.add_argument("--sync", action="store_true", help="pull the plan's image from the nearest PoPs until served")
    p.add_argument(
        "--sync-retry",
        type=_bounded(float, 0, 86400, "seconds above 0, at most 86400"),
        default=60.0,
        help="seconds between sync attempts (default 60)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check-config", action="store_true", help="validate the plan and exit")
    mode.add_argument("--print-config", action="store_true", help="print the plan (token masked) and exit")
    mode.add_argument(
        "--activate",
        metavar="RELEASE_DIR",
        help="verify a release copied onto this box and make it the served one (a running provisiond "
        "picks it up on SIGHUP); refuses a release that does not verify",
    )
    add_debug_flag(p)
    return p


def _context(plan: Plan, args: argparse.Namespace) -> Context:
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        plan=plan,
        store=ImageStore(state / "images", plan.image),
        ipxe_dir=Path(args.ipxe_dir),
        pending_file=state / "pending.json",
        log_file=state / "requests.log",
        limiter=RateLimiter(args.burst, args.per_minute),
        http_limiter=RateLimiter(args.http_burst, args.http_per_minute),
        boot_networks=args.boot_network,
    )
    queued = pending.read(ctx.pending_file)  # a bad queue file is moved aside now, not at the first call
    if queued:
        log.info("%d boxes waiting to be adopted (edgepop provisioning pending)", len(queued))
    return ctx


def _load_image(ctx: Context) -> None:
    try:
        served = ctx.store.load()
    except ImageVerifyError as exc:
        log.error("not serving the current image: %s", exc)
        return
    if served is None:
        log.warning("no image to serve yet (%s/current is missing)", ctx.store.root)
    else:
        log.info("serving image %s (%d bytes, manifest sha256 %s)", served.version, served.size, served.sha256)


def main(argv: list[str] | None = None) -> int:
    return last_resort("provisiond", argv, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="provisiond: %(message)s", stream=sys.stderr)
    plan = load_or_report(load_plan, args.plan)
    if isinstance(plan, int):
        return plan
    if args.check_config:
        print(f"{args.plan}: OK (PoP {plan.pop}, {len(plan.hosts)} servers, image {plan.image.version})")
        return os.EX_OK
    if args.print_config:
        print(plan.model_dump_json(indent=1))
        return os.EX_OK
    if args.activate:
        store = ImageStore(Path(args.state_dir) / "images", plan.image)
        try:
            manifest = store.activate(Path(args.activate))
        except ImageVerifyError as exc:
            print(f"provisiond: {exc}", file=sys.stderr)
            return os.EX_DATAERR
        print(f"serving image {manifest.version} ({manifest.size} bytes, manifest sha256 {manifest.sha256})")
        return os.EX_OK
    try:
        ctx = _context(plan, args)
    except OSError as exc:
        log.error("%s: cannot use the state directory: %s", args.state_dir, exc.strerror)
        return os.EX_CANTCREAT
    _load_image(ctx)
    try:
        server = make_server(ctx, args.listen, args.port or plan.listen_port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.listen, args.port or plan.listen_port, exc.strerror)
        return os.EX_OSERR

    from edgepop.agents.provisiond.sync import Syncer

    syncer = Syncer(lambda: ctx.plan, ctx.store, args.sync_retry)

    def stop(signum: int, frame: FrameType | None) -> None:
        syncer.stop()
        threading.Thread(target=server.shutdown, daemon=True).start()

    def reload(signum: int, frame: FrameType | None) -> None:
        try:
            new = load_plan(args.plan)
        except ConfigError as exc:
            log.error("reload refused, keeping the old plan: %s", exc)
            return
        ctx.plan = new
        ctx.store.spec = new.image
        _load_image(ctx)
        syncer.wake()  # a new image version in the plan: pull it now
        log.info("plan reloaded: %d servers", len(new.hosts))

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    log.info("listening on %s:%d", *server.server_address[:2])
    if args.sync:
        threading.Thread(target=syncer.run, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return os.EX_OK


# --- `edgepop provisioning ...` ---------------------------------------------------------------------


def _cmd_pending(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="edgepop: %(message)s", stream=sys.stderr)
    entries = pending.read(Path(args.state_dir) / "pending.json")
    if args.json:
        print(json.dumps(list(entries.values()), indent=1))
        return os.EX_OK
    if not entries:
        print("no boxes waiting to be adopted")
        return os.EX_OK
    for entry in sorted(entries.values(), key=lambda e: str(e.get("first_seen"))):
        print(
            f"{' '.join(entry['macs'])}  first {entry.get('first_seen')}  last {entry.get('last_seen')}  "
            f"calls {entry.get('calls')}  from {entry.get('client')}"
        )
    print(f"adopt one: edgepop inventory adopt INVENTORY --pending {args.state_dir} --mac <one of its MACs> --as HOST")
    return os.EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("provisioning", help="provisiond on the control server: boxes waiting to be adopted")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("pending", help="list boxes that called home with MACs the inventory does not know")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help=f"provisiond's state directory ({DEFAULT_STATE})")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=_cmd_pending)
