"""The agents' small JSON state files (provisiond's pending queue, recoveryd's held sessions).

A state file must survive the agent dying at any instant and must never stop the agent from
starting again. So it is written whole or not at all (a temporary file in the same directory,
written, flushed and fsynced, renamed over the old one, then the directory fsynced so the rename
itself is on disk), and a file that is nevertheless unreadable at start-up (torn by a disk fault,
emptied, not UTF-8, not JSON, not the expected shape) is moved aside as `<name>.corrupt-<UTC time>`
for a post-mortem, named in one warning, and replaced by an empty state.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edgepop.atomic_write import write_atomic

T = TypeVar("T")
Warn = Callable[[str], None]


class StateShapeError(ValueError):
    """The file is valid JSON but not what the agent keeps there; the message says what is wrong."""


def write_json(path: Path, doc: object, mode: int = 0o644) -> None:
    write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), mode)


def quarantine(path: Path, now: float | None = None) -> Path:
    """Move a bad state file aside (same directory, never overwriting an earlier one); return where."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


def read_json(path: Path, shape: Callable[[object], T], warn: Warn) -> T | None:
    """The state in `path` as `shape` makes it (raising StateShapeError for a wrong shape), or None
    when there is no file yet or it was bad (then moved aside, and `warn` told once, naming it)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warn(f"{path}: cannot read the state ({exc.strerror}): starting empty")
        return None
    why: str
    try:
        if not raw.strip():
            raise StateShapeError("empty")
        return shape(json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 (byte {exc.start})"
    except json.JSONDecodeError as exc:
        why = f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    except (StateShapeError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, StateShapeError) else "nested too deeply"
    try:
        aside = quarantine(path)
    except OSError as exc:
        warn(f"{path}: unreadable state ({why}) and cannot be moved aside ({exc.strerror}): starting empty")
        return None
    warn(f"{path}: unreadable state ({why}): moved aside to {aside.name}, starting empty")
    return None
