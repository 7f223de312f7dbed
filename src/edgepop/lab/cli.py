"""`edgepop lab up|down|status INVENTORY`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgepop.lab.topology import LabError

EX_OK, EX_DATAERR, EX_SOFTWARE, EX_UNAVAILABLE = 0, 65, 70, 69
DEFAULT_CACHE = Path(__file__).resolve().parents[3] / ".cache"


def _lab(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from edgepop.lab.runtime import Lab
    from edgepop.validate import validate_inventory

    report = validate_inventory(Path(args.inventory))
    if report.model is None:
        print(report.format(args.inventory), file=sys.stderr)
        print(f"{args.inventory}: invalid, the lab was not touched", file=sys.stderr)
        return None
    return Lab(report.model, Path(args.cache), log=lambda msg: print(f"[lab] {msg}", flush=True))


def _cmd(args: argparse.Namespace) -> int:
    lab = _lab(args)
    if lab is None:
        return EX_DATAERR
    try:
        if args.lab_command == "up":
            try:
                lab.up()
            except BaseException:
                if not args.keep_on_failure:
                    print("[lab] up failed: removing what was made (use --keep-on-failure to inspect)", file=sys.stderr)
                    lab.down()
                raise
        elif args.lab_command == "down":
            lab.down()
        else:
            rows = lab.status()
            width = max(len(r[0]) for r in rows)
            for node, role, state in rows:
                print(f"{node:<{width}}  {role:<8}  {state}")
            return EX_OK if all(r[2] == "running" for r in rows) else EX_UNAVAILABLE
    except LabError as exc:
        print(f"edgepop lab {args.lab_command}: {exc}", file=sys.stderr)
        return EX_SOFTWARE
    return EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lab", help="run a PoP inventory as containers on this machine (up, down, status)")
    lab_sub = p.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    for name, text in (
        ("up", "build/reuse the image, start every device, cable them, start the lab's internet"),
        ("down", "remove every container, network and firewall table the lab made"),
        ("status", "show each lab container's state (exit 69 if any is not running)"),
    ):
        q = lab_sub.add_parser(name, help=text)
        q.add_argument("inventory", nargs="?", default="inventory/lab")
        q.add_argument("--cache", default=str(DEFAULT_CACHE), help="state and image cache directory")
        if name == "up":
            q.add_argument("--keep-on-failure", action="store_true", help="leave a failed lab for inspection")
        q.set_defaults(func=_cmd)
