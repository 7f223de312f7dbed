"""Structured logs: every line carries its context (service, protocol, ...) as key=value pairs.

`text` writes logfmt (`level=info msg="withdrawn" service=http protocol=static_http_v4`) that reads
well in the journal and greps well; `json` writes one object per line for a log shipper.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_LOGGER = "edgepop.healthd"


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' ="\n\t'):
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.kind = fmt

    def format(self, record: logging.LogRecord) -> str:
        ctx: dict[str, Any] = getattr(record, "ctx", {})
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        fields = {"ts": ts, "level": record.levelname.lower(), "msg": record.getMessage(), **ctx}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.kind == "json":
            return json.dumps(fields, default=str)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


def setup(fmt: str = "text", level: str = "info") -> None:
    logger = logging.getLogger(_LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


class BoundLogger:
    """A logger with context that every line it writes carries; `bind` adds more."""

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self._logger = logging.getLogger(_LOGGER)
        self.context = dict(context or {})

    def bind(self, **context: Any) -> BoundLogger:
        return BoundLogger({**self.context, **context})

    def _log(self, level: int, msg: str, kv: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"ctx": {**self.context, **kv}}, exc_info=exc_info)

    def debug(self, msg: str, **kv: Any) -> None:
        self._log(logging.DEBUG, msg, kv)

    def info(self, msg: str, **kv: Any) -> None:
        self._log(logging.INFO, msg, kv)

    def warning(self, msg: str, **kv: Any) -> None:
        self._log(logging.WARNING, msg, kv)

    def error(self, msg: str, **kv: Any) -> None:
        self._log(logging.ERROR, msg, kv)

    def critical(self, msg: str, **kv: Any) -> None:
        self._log(logging.CRITICAL, msg, kv)

    def exception(self, msg: str, **kv: Any) -> None:
        self._log(logging.ERROR, msg, kv, exc_info=True)


def get_logger(**context: Any) -> BoundLogger:
    return BoundLogger(context)
