"""All the files one edit touches, changed together or not at all.

An edit works on in-memory documents. Before anything is written, the candidate files are put into
a scratch copy of the inventory and the whole copy is validated; only a valid result reaches the
real inventory. Each file is written to a temporary file beside it and renamed into place; if a
rename or a deletion fails half-way, the files already changed are put back as they were.
"""

from __future__ import annotations

import difflib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgepop.inventory_edit.roundtrip import RoundTripError, YamlDoc
from edgepop.validate import Report, validate_inventory

ErrorKind = Literal["usage", "data", "io"]


class EditError(Exception):
    """Why an edit cannot be made. `kind` picks the exit status: usage, data or io."""

    def __init__(self, message: str, kind: ErrorKind = "usage") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True)
class Change:
    """One file: its text before (None: new) and after (None: deleted)."""

    rel: str
    before: str | None
    after: str | None

    @property
    def verb(self) -> str:
        if self.before is None:
            return "create"
        return "delete" if self.after is None else "change"

    def diff(self) -> str:
        before = [] if self.before is None else self.before.splitlines(keepends=True)
        after = [] if self.after is None else self.after.splitlines(keepends=True)
        lines = difflib.unified_diff(
            before,
            after,
            fromfile="/dev/null" if self.before is None else f"a/{self.rel}",
            tofile="/dev/null" if self.after is None else f"b/{self.rel}",
        )
        return "".join(line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n" for line in lines)


def read_source(path: Path) -> str:
    """A file's text exactly as stored: no newline translation, the byte order mark kept.

    (Path.read_text turns CRLF into LF, so writing its result back would change every line.)"""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EditError(f"cannot read {path}: {exc.strerror or exc}", "io") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EditError(
            f"{path}: line {line}: not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "inventory files are UTF-8",
            "data",
        ) from None


class ChangeSet:
    """The documents of one edit, keyed by their path inside the inventory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._docs: dict[Path, YamlDoc] = {}
        self._before: dict[Path, str | None] = {}
        self._deleted: set[Path] = set()

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def doc(self, path: Path) -> YamlDoc:
        """The document for an existing file, loaded on first use."""
        path = path.resolve()
        if path not in self._docs:
            text = read_source(path)
            try:
                self._docs[path] = YamlDoc.parse(text, self.rel(path))
            except RoundTripError as exc:
                raise EditError(str(exc), "data") from None
            self._before[path] = text
        return self._docs[path]

    def create(self, path: Path, doc: YamlDoc) -> None:
        path = path.resolve()
        if path.exists() or path in self._docs:
            raise EditError(f"{self.rel(path)} already exists; remove it or choose another name")
        self._docs[path] = doc
        self._before[path] = None

    def delete(self, path: Path) -> None:
        path = path.resolve()
        try:
            # any bytes may go: the text is only shown in --diff
            self._before[path] = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise EditError(f"cannot read {path}: {exc.strerror or exc}", "io") from None
        self._docs.pop(path, None)
        self._deleted.add(path)

    def changes(self) -> list[Change]:
        """Files whose text differs from what is on disk, in path order."""
        out: list[Change] = []
        for path in sorted(self._before):
            before = self._before[path]
            after = None if path in self._deleted else self._docs[path].render()
            if before != after:
                out.append(Change(self.rel(path), before, after))
        return out

    def validate(self, changes: list[Change]) -> Report:
        """Validate the inventory as it would be after the changes, in a scratch copy."""
        with tempfile.TemporaryDirectory(prefix="edgepop-edit-") as scratch:
            copy = Path(scratch) / self.root.name
            try:
                shutil.copytree(self.root, copy, ignore=shutil.ignore_patterns(".git"))
                for change in changes:
                    target = copy / change.rel
                    if change.after is None:
                        target.unlink()
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(change.after, encoding="utf-8", newline="")
            except OSError as exc:
                raise EditError(f"cannot prepare a scratch copy of {self.root}: {exc}", "io") from None
            return validate_inventory(copy)

    def write(self, changes: list[Change]) -> None:
        """Apply the changes; all of them or, on an I/O error, none."""
        staged: list[tuple[Path, Path]] = []
        try:
            for change in changes:
                if change.after is not None:
                    target = self.root / change.rel
                    staged.append((_stage(target, change.after), target))
        except OSError as exc:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise EditError(f"cannot write {self.root}: {exc}; nothing was changed", "io") from None
        done: list[Change] = []
        try:
            # deletions last: a failure before them leaves no file missing
            for change in sorted(changes, key=lambda c: c.after is None):
                target = self.root / change.rel
                if change.after is None:
                    target.unlink()
                    _remove_empty_dir(target.parent, self.root)
                else:
                    tmp = next(t for t, dest in staged if dest == target)
                    os.replace(tmp, target)
                    _sync_dir(target.parent)
                done.append(change)
        except OSError as exc:
            failed = self.rel(Path(exc.filename)) if exc.filename else "a file"
            problems = _roll_back(self.root, done)
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            rolled = "rolled back" if not problems else "roll-back failed for " + ", ".join(problems)
            raise EditError(f"cannot write {failed}: {exc.strerror or exc}; {rolled}", "io") from None


def _stage(target: Path, text: str) -> Path:
    """Write the new text next to the target (same file system, so the rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(target))
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; a new file gets its directory neighbours' or 0644."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        pass
    for sibling in sorted(target.parent.glob("*.y*ml")):
        return stat.S_IMODE(sibling.stat().st_mode)
    return 0o644


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_empty_dir(directory: Path, root: Path) -> None:
    """A host_vars/<host>/ directory goes once its last file is gone."""
    if directory != root and directory.parent.name == "host_vars" and not any(directory.iterdir()):
        directory.rmdir()


def _roll_back(root: Path, done: list[Change]) -> list[str]:
    problems: list[str] = []
    for change in reversed(done):
        target = root / change.rel
        try:
            if change.before is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(_stage(target, change.before), target)
        except OSError:
            problems.append(change.rel)
    return problems
