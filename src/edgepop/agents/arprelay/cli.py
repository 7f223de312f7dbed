"""`python3 -m edgepop.agents.arprelay`: the ARP relay's command line. Exit codes are sysexits."""

from __future__ import annotations

import argparse
import os
import sys

from edgepop.agents.arprelay.config import ConfigError, RelayConfig, dump_config, load_config
from edgepop.agents.healthd import logs

DEFAULT_CONFIG = "/etc/edgepop/arprelay.yml"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(os.EX_USAGE)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="arprelay",
        description="Relays the providers' next-hop MACs from the switch's ARP table to every server (role: relay), "
        "or applies them on a server (role: host).",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    mode.add_argument("--print-config", action="store_true", help="print the effective configuration (secrets masked)")
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
        if isinstance(config, RelayConfig):
            print(f"{args.config}: OK (relay, {config.source}, {len(config.providers)} provider addresses)")
        else:
            print(f"{args.config}: OK (host, {config.interface}, relay {config.relay_url})")
        return os.EX_OK
    if args.print_config:
        sys.stdout.write(dump_config(config))
        return os.EX_OK
    logs.setup(config.log_format, config.log_level)
    from edgepop.agents.arprelay.daemon import HostDaemon, RelayDaemon

    try:
        if isinstance(config, RelayConfig):
            return RelayDaemon(config).run()
        return HostDaemon(config).run()
    except OSError as exc:
        logs.get_logger(agent="arprelay").error("cannot start", error=str(exc))
        return os.EX_OSERR
    except Exception:
        logs.get_logger(agent="arprelay").exception("arprelay crashed")
        return os.EX_SOFTWARE
