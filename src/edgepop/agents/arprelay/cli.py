"""`python3 -m edgepop.agents.arprelay`: the ARP relay's command line. Exit codes are sysexits."""

from __future__ import annotations

import argparse
import os

from edgepop.agents.arprelay.config import Config, RelayConfig, dump_config, load_config
from edgepop.agents.common import agent_main, agent_parser
from edgepop.agents.healthd import logs

DEFAULT_CONFIG = "/etc/edgepop/arprelay.yml"


def parser() -> argparse.ArgumentParser:
    return agent_parser(
        "arprelay",
        "Relays the providers' next-hop MACs from the switch's ARP table to every server (role: relay), "
        "or applies them on a server (role: host).",
        DEFAULT_CONFIG,
        "print the effective configuration (secrets masked)",
    )


def _summary(config: Config) -> str:
    if isinstance(config, RelayConfig):
        return f"relay, {config.source}, {len(config.providers)} provider addresses"
    return f"host, {config.interface}, relay {config.relay_url}"


def _run(path: str, config: Config) -> int:
    del path
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


def main(argv: list[str] | None = None) -> int:
    return agent_main(parser(), argv, load_config, _summary, dump_config, _run)
