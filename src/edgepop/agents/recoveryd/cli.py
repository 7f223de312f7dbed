"""`python3 -m edgepop.agents.recoveryd`: the recovery agent's command line. Exit codes are sysexits."""

from __future__ import annotations

import argparse
import os
import sys

from edgepop.agents.healthd import logs
from edgepop.agents.recoveryd.config import ConfigError, dump_config, load_config

DEFAULT_CONFIG = "/etc/edgepop/recoveryd.yml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(os.EX_USAGE)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="recoveryd",
        description="Power-cycles dead servers of the PoP (IPMI, then PDU) and lets their routes back once "
        "they verify clean.",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    mode.add_argument(
        "--print-config", action="store_true", help="print the effective configuration (credentials masked)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return os.EX_NOINPUT if not os.path.exists(args.config) else os.EX_CONFIG
    if args.check_config:
        mode = "dry run" if config.dry_run else "live"
        print(f"{args.config}: OK ({len(config.servers)} servers, {len(config.pdus)} PDUs, {mode})")
        return os.EX_OK
    if args.print_config:
        sys.stdout.write(dump_config(config))
        return os.EX_OK
    logs.setup(config.log_format, config.log_level)
    from edgepop.agents.recoveryd.daemon import Daemon

    try:
        return Daemon(config).run()
    except Exception:
        logs.get_logger(agent="recoveryd").exception("recoveryd crashed")
        return os.EX_SOFTWARE
