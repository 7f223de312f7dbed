"""What every edgepop agent shares: its YAML configuration file, its command line and its read-only
status endpoint. Each agent keeps its own model, description, daemon and metrics; the shapes around
them (errors that name the file and the key, sysexits exit codes, `/status` + `/metrics`) are the same
for all, so an operator learns them once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgepop.agents.http import BoundedServer, QuietHandler
from edgepop.last_resort import last_resort
from edgepop.model import safe_yaml

Snapshot = dict[str, Any]
M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """The configuration file is missing, not YAML, or not valid; `errors` are `file: key: what` lines."""

    def __init__(self, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        super().__init__("\n".join(errors))


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as an operator writes it: `services[2].check.port`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_model(model: type[M], data: object, path: str) -> M:
    """Validate already-loaded YAML; every error names the file and the key (never a value)."""
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path}: expected a mapping at the top level, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [f"{path}: {location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(path, errors) from None


def load_yaml(path: str | Path) -> object:
    """The file's YAML, read once within edgepop.model.safe_yaml's bounds (size, depth, aliases,
    unique scalar keys, UTF-8; a FIFO does not block); any problem is a ConfigError naming the file
    (and the line)."""
    name = str(path)
    try:
        return safe_yaml.load_file(path)
    except safe_yaml.UnreadableFile as exc:
        where = f"line {exc.line}: " if exc.line is not None and "line" not in exc.message else ""
        raise ConfigError(name, [f"{name}: {where}{exc.message}"]) from None
    except safe_yaml.YamlProblem as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        message = exc.message.removeprefix("YAML syntax error")
        if message != exc.message:  # "line 3, column 4: not valid YAML: ..." as before
            column, _, what = message.partition(": ")
            where = f"line {exc.line}{column}: " if exc.line is not None else ""
            message = f"not valid YAML: {what}"
        raise ConfigError(name, [f"{name}: {where}{message}"]) from None


def dump_yaml(data: object) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120))


# --- command line ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(os.EX_USAGE)


def agent_parser(prog: str, description: str, default_config: str, print_help: str) -> argparse.ArgumentParser:
    """`--config`, and the two ways to look at it without running: `--check-config`, `--print-config`."""
    p = _Parser(prog=prog, description=description)
    p.add_argument("--config", default=default_config, help=f"configuration file (default {default_config})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    mode.add_argument("--print-config", action="store_true", help=print_help)
    add_debug_flag(p)
    return p


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="on an internal error, print the traceback instead of one line"
    )


def load_or_report(load: Callable[[str], M], path: str) -> M | int:
    """The loaded configuration, or (its errors printed on stderr) the exit code: EX_NOINPUT for a
    file that is not there, EX_CONFIG for one that is there but wrong."""
    try:
        return load(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return os.EX_NOINPUT if not os.path.exists(path) else os.EX_CONFIG


def agent_main(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    load: Callable[[str], M],
    summary: Callable[[M], str],
    dump: Callable[[M], str],
    run: Callable[[str, M], int],
) -> int:
    """Parse, load the configuration (errors on stderr: EX_NOINPUT for a missing file, EX_CONFIG for a
    bad one), then check it (`path: OK (summary)`), print it, or `run(path, config)`. A bug anywhere
    in that is one line and EX_SOFTWARE (see last_resort)."""

    def body() -> int:
        args = parser.parse_args(argv)
        config = load_or_report(load, args.config)
        if isinstance(config, int):
            return config
        if args.check_config:
            print(f"{args.config}: OK ({summary(config)})")
            return os.EX_OK
        if args.print_config:
            sys.stdout.write(dump(config))
            return os.EX_OK
        return run(args.config, config)

    return last_resort(parser.prog, argv, body)


# --- status endpoint ------------------------------------------------------------------------------


class _Server(BoundedServer):
    freebind = True  # the status address may be configured after the agent starts

    def __init__(
        self, addr: tuple[str, int], source: Callable[[], Snapshot], metrics: Callable[[Snapshot], str]
    ) -> None:
        self.source = source
        self.metrics = metrics
        super().__init__(addr, _Handler)


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        snap = self.server.source()
        path = self.path.split("?")[0]
        if path == "/status":
            body, ctype = json.dumps(snap, sort_keys=True).encode(), "application/json"
        elif path == "/metrics":
            body, ctype = self.server.metrics(snap).encode(), "text/plain; version=0.0.4"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StatusServer:
    """Serves the latest snapshot on `address:port` from a background thread: `/status` as JSON,
    `/metrics` as Prometheus text (the agent's `metrics(snapshot)`). Read-only: the agent's loop
    stores a snapshot after every round, so no request ever touches its state."""

    def __init__(
        self, address: str, port: int, source: Callable[[], Snapshot], metrics: Callable[[Snapshot], str]
    ) -> None:
        self.httpd = _Server((address, port), source, metrics)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
