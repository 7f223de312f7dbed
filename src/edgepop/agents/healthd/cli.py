"""`python3 -m edgepop.agents.healthd`: the health agent's command line. Exit codes are sysexits."""

from __future__ import annotations

import argparse
import os

from edgepop.agents.common import agent_main, agent_parser
from edgepop.agents.healthd import logs
from edgepop.agents.healthd.config import HealthdConfig, dump_config, load_config

DEFAULT_CONFIG = "/etc/edgepop/healthd.yml"


def parser() -> argparse.ArgumentParser:
    return agent_parser(
        "healthd",
        "Checks each anycast service on this server and withdraws its routes through BIRD while it is unhealthy.",
        DEFAULT_CONFIG,
        "print the effective configuration and exit",
    )


def _run(path: str, config: HealthdConfig) -> int:
    logs.setup(config.log_format, config.log_level)
    from edgepop.agents.healthd.daemon import Daemon

    try:
        return Daemon(path, config).run()
    except Exception:
        logs.get_logger().exception("healthd crashed")
        return os.EX_SOFTWARE


def main(argv: list[str] | None = None) -> int:
    return agent_main(parser(), argv, load_config, lambda c: f"{len(c.services)} services", dump_config, _run)
