"""`edgepop` command line: validate, render, schema docs, inventory edits, the lab, st-ping.

Exit codes follow sysexits: 0 ok, 65 (EX_DATAERR) invalid inventory, 64 (EX_USAGE) bad arguments,
70 (EX_SOFTWARE) an internal error (one line; `edgepop --debug ...` shows the traceback),
73 (EX_CANTCREAT) a render --out directory that holds files render did not write,
74 (EX_IOERR) files that cannot be written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgepop import __version__
from edgepop.last_resort import last_resort

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74

Handler = Callable[[argparse.Namespace], int]


def _cmd_validate(args: argparse.Namespace) -> int:
    from edgepop.validate import validate_inventory

    started = time.perf_counter()
    report = validate_inventory(Path(args.inventory))
    elapsed = time.perf_counter() - started
    if not report.ok:
        print(report.format(args.inventory), file=sys.stderr)
        n = len(report.errors)
        print(f"{args.inventory}: invalid, {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return EX_DATAERR
    assert report.model is not None
    hosts = len(report.model.hostnames)
    if not args.quiet:
        print(f"{args.inventory}: valid ({hosts} devices, {elapsed * 1000:.0f} ms)")
    return EX_OK


def _cmd_render(args: argparse.Namespace) -> int:
    from edgepop.render import RenderOutError, RenderPathError, render_pop, write_tree
    from edgepop.validate import validate_inventory

    started = time.perf_counter()
    report = validate_inventory(Path(args.inventory))
    if report.model is None:
        print(report.format(args.inventory), file=sys.stderr)
        print(f"{args.inventory}: invalid, nothing rendered", file=sys.stderr)
        return EX_DATAERR
    files = render_pop(report.model)
    out = Path(args.out)
    try:
        changed, removed = write_tree(files, out)
    except RenderPathError as exc:
        print(f"{out}: {exc}; nothing written", file=sys.stderr)
        return EX_DATAERR
    except RenderOutError as exc:
        print(f"{exc}; nothing written", file=sys.stderr)
        return EX_CANTCREAT
    except OSError as exc:
        print(f"cannot write {out}: {exc}; {out} is as it was", file=sys.stderr)
        return EX_IOERR
    elapsed = time.perf_counter() - started
    print(
        f"{args.inventory}: rendered {len(report.model.hostnames)} devices into {out} "
        f"({len(files)} files, {len(changed)} changed, {len(removed)} removed, {elapsed:.2f} s)"
    )
    if args.verbose:
        for rel in changed:
            print(f"  changed {rel}")
        for rel in removed:
            print(f"  removed {rel}")
    return EX_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from edgepop.schema_docs import json_schema_text, markdown_reference

    text = markdown_reference() if args.format == "markdown" else json_schema_text()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EX_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepop", description="Light up a CDN PoP and keep it serving.")
    parser.add_argument("--version", action="version", version=f"edgepop {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on an internal error, print the traceback instead of one line"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check an inventory; report every error at once")
    p.add_argument("inventory", help="PoP inventory directory, e.g. inventory/lab")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("render", help="render every device's config offline (no device is touched)")
    p.add_argument("inventory")
    p.add_argument("--out", required=True, help="output directory (one folder per device + summary.md)")
    p.add_argument("-v", "--verbose", action="store_true", help="list changed and removed files")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("schema", help="print the data-model schema (JSON Schema or the Markdown reference)")
    p.add_argument("--format", choices=["json", "markdown"], default="markdown")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_schema)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommand groups that live beside their code (inventory edits, the lab, images)."""
    from edgepop.agents.provisiond.cli import register as provisioning_register
    from edgepop.doctor import register as doctor_register
    from edgepop.image.cli import register as image_register
    from edgepop.inventory_edit.cli import register as inventory_register
    from edgepop.lab.cli import register as lab_register
    from edgepop.netdev.cli import register as netdev_register
    from edgepop.stping import register as stping_register

    return [
        inventory_register,
        lab_register,
        netdev_register,
        stping_register,
        image_register,
        provisioning_register,
        doctor_register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A bug (an exception no command handled) is one line on stderr and exit 70
    (EX_SOFTWARE); `edgepop --debug COMMAND ...` prints the traceback instead. Ctrl-C exits 130."""
    args_list = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        try:
            args = build_parser().parse_args(args_list)
            func: Handler = args.func
            return func(args)
        except KeyboardInterrupt:
            return 130

    return last_resort("edgepop", args_list, body)


if __name__ == "__main__":
    sys.exit(main())
