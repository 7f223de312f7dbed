"""All the files one edit touches, changed together or not at all.

An edit works on in-memory documents. Before anything is written, the candidate files are put into
a scratch copy of the inventory and the whole copy is validated; only a valid result reaches the
real inventory. Then, in this order:

1. every file still holds the bytes the edit started from (else someone changed it meanwhile);
2. every new text is written to a temporary file beside its target (same file system), flushed
   with fsync and given the target's mode; a failure here (disk full, permission) removes the
   temporary files and nothing was changed;
3. every file the edit replaces or deletes gets a second name (a hard link) in its directory: the
   way back, which costs no disk space and needs no writing when it is used;
4. the temporary files are renamed over their targets and deleted files unlinked; if one of these
   fails, the second names are renamed back over the files already changed, so every file is the
   very inode it was, content and mode alike;
5. the directories are synced and the second names removed.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgepop.atomic_write import fsync_directory
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
        self._read: dict[Path, bytes] = {}  # the bytes each existing file had when it was read
        self._deleted: set[Path] = set()

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _inside(self, path: Path) -> Path:
        """The absolute path, symbolic links left as they are; it must be inside the inventory."""
        path = Path(os.path.abspath(path))
        if not path.is_relative_to(self.root):
            raise EditError(f"{path} is outside the inventory {self.root}; this edit does not change it", "data")
        return path

    def doc(self, path: Path) -> YamlDoc:
        """The document for an existing file, loaded on first use.

        A file reached through a symbolic link is refused: it is usually shared (several hosts
        linking one file), and an edit for one host must not change the others, nor replace the
        link with a copy behind the operator's back."""
        path = self._inside(path)
        if path not in self._docs:
            real = path.resolve()
            if real != path:
                raise EditError(
                    f"{self.rel(path)} is a symbolic link (to {real}); edit that file by hand, or replace the "
                    "link with a copy of it",
                    "data",
                )
            text = read_source(path)
            self._read[path] = text.encode("utf-8")
            try:
                self._docs[path] = YamlDoc.parse(text, self.rel(path))
            except RoundTripError as exc:
                raise EditError(str(exc), "data") from None
            self._before[path] = text
        return self._docs[path]

    def create(self, path: Path, doc: YamlDoc) -> None:
        path = self._inside(path)
        if os.path.lexists(path) or path in self._docs:
            raise EditError(f"{self.rel(path)} already exists; remove it or choose another name")
        self._docs[path] = doc
        self._before[path] = None

    def delete(self, path: Path) -> None:
        """Delete a file (a symbolic link itself, not what it points to)."""
        path = self._inside(path)
        try:
            data = path.read_bytes()
            self._read[path] = data
            # any bytes may go: the text is only shown in --diff
            self._before[path] = data.decode("utf-8", errors="replace")
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
        """Apply the changes; all of them or, on an I/O error, none (see the module docstring)."""
        targets = [(change, self.root / change.rel) for change in changes]
        for change, target in targets:
            self._unchanged_since_read(change, target)
        staged: dict[Path, Path] = {}
        backups: dict[Path, Path] = {}
        try:
            for change, target in targets:
                if change.after is not None:
                    staged[target] = _stage(target, change.after)
            for change, target in targets:
                if change.before is not None:
                    backups[target] = _second_name(target)
        except OSError as exc:
            _discard([*staged.values(), *backups.values()])
            raise EditError(
                f"cannot write {self._name(exc)}: {exc.strerror or exc}; nothing was changed", "io"
            ) from None

        done: list[tuple[Change, Path]] = []
        try:
            # deletions last: a failure before them leaves no file missing
            for change, target in sorted(targets, key=lambda ct: ct[0].after is None):
                if change.after is None:
                    target.unlink()
                else:
                    os.replace(staged[target], target)
                    del staged[target]
                done.append((change, target))
        except OSError as exc:
            problems = _roll_back(done, backups, self.root)
            _discard([*staged.values(), *backups.values()])
            rolled = "rolled back" if not problems else "roll-back failed for " + ", ".join(problems)
            raise EditError(f"cannot write {self._name(exc)}: {exc.strerror or exc}; {rolled}", "io") from None

        for directory in sorted({target.parent for _, target in targets if target.parent.exists()}):
            fsync_directory(directory)
        _discard(list(backups.values()))
        for change, target in targets:
            if change.after is None:
                _remove_empty_dir(target.parent, self.root)

    def _unchanged_since_read(self, change: Change, target: Path) -> None:
        """Refuse to overwrite what someone else wrote after this edit read the file."""
        try:
            now: bytes | None = target.read_bytes()
        except FileNotFoundError:
            now = None
        except OSError as exc:
            raise EditError(f"cannot read {target}: {exc.strerror or exc}; nothing was changed", "io") from None
        expected = None if change.before is None else self._read.get(target)
        if now != expected:
            what = "was created" if expected is None else "was deleted" if now is None else "was changed"
            raise EditError(
                f"{change.rel} {what} by someone else while this edit ran; nothing was changed, run the edit again",
                "io",
            )

    def _name(self, exc: OSError) -> str:
        if not exc.filename:
            return str(self.root)
        path = Path(os.fsdecode(exc.filename))
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


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
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if not exc.filename:
            exc.filename = str(target)
        raise
    return tmp


def _second_name(target: Path) -> Path:
    """A hard link to the file as it is now, beside it: the way back if the edit fails half-way."""
    for _ in range(100):
        link = target.with_name(f".{target.name}.{secrets.token_hex(4)}.bak")
        try:
            os.link(target, link, follow_symlinks=False)  # a symbolic link is kept as a link
        except FileExistsError:
            continue
        return link
    raise OSError(errno.EEXIST, "no free name for a backup link", str(target))


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; a new file gets its directory neighbours' or 0644."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        pass
    for sibling in sorted(target.parent.glob("*.y*ml")):
        return stat.S_IMODE(sibling.stat().st_mode)
    return 0o644


def _discard(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # a stray temporary or backup file; the inventory is consistent
            path.unlink(missing_ok=True)


def _remove_empty_dir(directory: Path, root: Path) -> None:
    """A host_vars/<host>/ directory goes once its last file is gone."""
    if (
        directory != root
        and directory.parent.name == "host_vars"
        and directory.is_dir()
        and not any(directory.iterdir())
    ):
        directory.rmdir()


def _roll_back(done: list[tuple[Change, Path]], backups: dict[Path, Path], root: Path) -> list[str]:
    """Put every file already changed back: its second name over it, or a new file removed."""
    problems: list[str] = []
    for change, target in reversed(done):
        try:
            if change.before is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(backups[target], target)
                del backups[target]
        except OSError as exc:
            kept = f", its old content is in {backups[target].name}" if target in backups else ""
            problems.append(f"{change.rel} ({exc.strerror or exc}{kept})")
            backups.pop(target, None)  # kept: the only copy of what the file held
    for directory in sorted({target.parent for _, target in done if target.parent.exists()}):
        with contextlib.suppress(OSError):
            fsync_directory(directory)
    return problems
