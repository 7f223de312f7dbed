"""Replacing a file so that a crash at any instant leaves the old file or the new one, never a mix.

Used by the agents' state files, provisiond's image store switch and inventory edits: the new content
goes to a temporary file in the same directory (same file system, so the rename is atomic), is
fsynced, renamed over the old name, and the directory is fsynced so the rename itself is on disk.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (a crash after it keeps the new name)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data`: a reader, or the agent after a crash, sees the old file or the new
    one, never a mix. The temporary file is removed if anything fails before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
