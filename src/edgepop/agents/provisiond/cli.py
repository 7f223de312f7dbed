"""`python3 -m edgepop.agents.provisiond`: the daemon; and `edgepop provisioning pending`.

Exit codes are sysexits. SIGTERM stops the server; SIGHUP re-reads the plan (after `adopt` and a
playbook run, a pending box is known at its next call).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from edgepop.agents.common import add_debug_flag, last_resort
from edgepop.agents.provisiond import pending
from edgepop.agents.provisiond.callhome import RateLimiter
from edgepop.agents.provisiond.config import ConfigError, Plan, RateLimit, load_plan
from edgepop.agents.provisiond.server import Context, callhome_overlay, make_server
from edgepop.agents.provisiond.store import ImageStore
from edgepop.image.release import ImageVerifyError

log = logging.getLogger("provisiond")
DEFAULT_STATE = "/var/lib/edgepop/provisiond"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="provisiond", description="PXE/iPXE image server and call-home endpoint.")
    p.add_argument("--plan", default="/etc/edgepop/provisiond.json", help="the rendered provisiond.json")
    p.add_argument("--ipxe-dir", default="/etc/edgepop/ipxe", help="per-MAC iPXE scripts and default.ipxe")
    p.add_argument("--state-dir", default=DEFAULT_STATE, help="images/, pending.json, requests.log")
    p.add_argument("--listen", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, help="default: the port of the plan's server_url")
    p.add_argument("--burst", type=int, default=RateLimit().burst, help="call-home requests per client at once")
    p.add_argument("--per-minute", type=float, default=RateLimit().per_minute, help="sustained call-home rate")
    p.add_argument("--sync", action="store_true", help="pull the plan's image from the nearest PoPs until served")
    p.add_argument("--sync-retry", type=float, default=60.0, help="seconds between sync attempts (default 60)")
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
    limits = RateLimit(burst=args.burst, per_minute=args.per_minute)
    return Context(
        plan=plan,
        store=ImageStore(state / "images", plan.image),
        ipxe_dir=Path(args.ipxe_dir),
        pending_file=state / "pending.json",
        log_file=state / "requests.log",
        limiter=RateLimiter(limits.burst, limits.per_minute),
        overlay=callhome_overlay(plan),
        lock=threading.Lock(),
    )


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
    try:
        plan = load_plan(args.plan)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return os.EX_NOINPUT if not os.path.exists(args.plan) else os.EX_CONFIG
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
    logging.basicConfig(level=logging.INFO, format="provisiond: %(message)s", stream=sys.stderr)
    ctx = _context(plan, args)
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
        ctx.overlay = callhome_overlay(new)
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
    entries = pending.read(Path(args.state_dir) / "pending.json")
    if args.json:
        print(json.dumps(list(entries.values()), indent=1))
        return os.EX_OK
    if not entries:
        print("no boxes waiting to be adopted")
        return os.EX_OK
    for entry in sorted(entries.values(), key=lambda e: str(e.get("first_seen"))):
        print(
            f"{' '.join(entry['macs'])}  first {entry['first_seen']}  last {entry['last_seen']}  "
            f"calls {entry['calls']}  from {entry['client']}"
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
