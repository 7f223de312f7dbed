"""`python3 -m edgepop.agents.recoveryd`: the recovery agent's command line. Exit codes are sysexits."""

from __future__ import annotations

import argparse
import os

from edgepop.agents.common import agent_main, agent_parser
from edgepop.agents.healthd import logs
from edgepop.agents.recoveryd.audit import describe
from edgepop.agents.recoveryd.config import RecoverydConfig, dump_config, load_config

DEFAULT_CONFIG = "/etc/edgepop/recoveryd.yml"


def parser() -> argparse.ArgumentParser:
    return agent_parser(
        "recoveryd",
        "Power-cycles dead servers of the PoP (IPMI, then PDU) and lets their routes back once they verify clean.",
        DEFAULT_CONFIG,
        "print the effective configuration (credentials masked)",
    )


def _summary(config: RecoverydConfig) -> str:
    mode = "dry run" if config.dry_run else "live"
    return f"{len(config.servers)} servers, {len(config.pdus)} PDUs, {mode}"


def _run(path: str, config: RecoverydConfig) -> int:
    del path  # recoveryd re-reads nothing at run time
    logs.setup(config.log_format, config.log_level)
    from edgepop.agents.recoveryd.daemon import Daemon

    try:
        return Daemon(config).run()
    except Exception as exc:  # one line, scrubbed: a traceback's message may quote a credential
        logs.get_logger(agent="recoveryd").error("recoveryd crashed", detail=describe(exc, config.secrets()))
        return os.EX_SOFTWARE


def main(argv: list[str] | None = None) -> int:
    return agent_main(parser(), argv, load_config, _summary, dump_config, _run)
