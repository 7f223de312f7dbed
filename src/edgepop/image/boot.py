"""Boot artifacts of the `pxe` image: its kernel, and the whole rootfs as a zstd-compressed initramfs.

A bare server (and a qemu guest) boots the Debian kernel with the rootfs itself as its initramfs:
the kernel unpacks the cpio into RAM and runs `/init` (the image links it to systemd), so there is no
root disk and no second-stage loader. Per-box files (an SSH key, a hostname, the management port's
network file) travel as a second, small, uncompressed cpio appended to the first: the kernel unpacks
concatenated archives in order, later files replacing earlier ones.

Packing takes 20-40 s, so the artifacts are cached beside the tarball under the tarball's content
hash (and this module's own format version and prune list): a new image gets new artifacts, an
unchanged one reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edgepop.image.build import _TARBALL_RE, ImageBuildError, _locked, _require_tools, _run

log = logging.getLogger(__name__)

BOOT_FORMAT_VERSION: Final = 1
"""Bump when the packing changes in a way the prune list does not capture."""

PRUNED: Final[tuple[str, ...]] = (
    # The kernel is booted directly and the rootfs is the initramfs: Debian's own initrd (30 MB) and
    # the kernel file in /boot are dead weight in RAM.
    "./boot",
    # Kernel modules for hardware a diskless PoP server never has: about half of the 400 MB of modules,
    # which would otherwise sit in RAM on every box.
    "./usr/lib/modules/*/kernel/drivers/gpu",
    "./usr/lib/modules/*/kernel/drivers/media",
    "./usr/lib/modules/*/kernel/drivers/net/wireless",
    "./usr/lib/modules/*/kernel/drivers/infiniband",
    "./usr/lib/modules/*/kernel/drivers/staging",
    "./usr/lib/modules/*/kernel/drivers/iio",
    "./usr/lib/modules/*/kernel/drivers/comedi",
    "./usr/lib/modules/*/kernel/drivers/mtd",
    "./usr/lib/modules/*/kernel/drivers/bluetooth",
    "./usr/lib/modules/*/kernel/drivers/video",
    "./usr/lib/modules/*/kernel/drivers/mmc",
    "./usr/lib/modules/*/kernel/sound",
    "./usr/lib/modules/*/kernel/net/wireless",
    "./usr/lib/modules/*/kernel/net/mac80211",
    "./usr/lib/modules/*/kernel/net/bluetooth",
    "./usr/lib/modules/*/kernel/lib/test_*",
)
"""Paths (tar `--exclude` patterns, relative to the tarball's `./`) left out of the initramfs."""

KERNEL_NAME: Final = "vmlinuz"
INITRAMFS_NAME: Final = "initramfs.cpio.zst"
_PACK_TIMEOUT_S: Final = 900.0

PACK_TOOLS: Final[dict[str, str]] = {"tar": "tar", "zstd": "zstd", "cpio": "cpio"}


@dataclass(frozen=True)
class BootArtifacts:
    """The kernel and the rootfs initramfs of one image, ready for `qemu -kernel/-initrd` or iPXE."""

    kernel: Path
    initramfs: Path


def artifacts_key(tarball: Path) -> str:
    """Cache key: the tarball's content hash (from its name), the prune list and the format version."""
    match = _TARBALL_RE.match(tarball.name)
    if not match:
        raise ValueError(f"{tarball.name} is not an edgepop rootfs tarball name")
    doc = {"pruned": list(PRUNED), "format_version": BOOT_FORMAT_VERSION}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return f"{match['digest']}-{hashlib.sha256(blob).hexdigest()[:8]}"


def artifacts_dir(tarball: Path, cache_dir: Path) -> Path:
    """Where the artifacts of `tarball` live in the cache (whether they exist yet or not)."""
    return cache_dir / f"boot-{artifacts_key(tarball)}"


def _complete(directory: Path) -> BootArtifacts | None:
    found = BootArtifacts(directory / KERNEL_NAME, directory / INITRAMFS_NAME)
    return found if found.kernel.is_file() and found.initramfs.is_file() else None


def boot_artifacts(tarball: Path, cache_dir: Path) -> BootArtifacts:
    """The cached kernel and initramfs of `tarball`, packed now if they are missing.

    Packing writes into a partial directory renamed into place at the end, so an interrupted run
    never leaves artifacts that a later run would take for a cache hit.
    """
    target = artifacts_dir(tarball, cache_dir)
    found = _complete(target)
    if found:
        log.info("cached: %s", target)
        return found
    _require_tools(PACK_TOOLS)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".boot.lock"):
        found = _complete(target)
        if found:
            return found
        started = time.monotonic()
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache_dir))
        try:
            _pack(tarball, partial)
            if target.exists():  # an incomplete leftover of an older run
                shutil.rmtree(target)
            os.replace(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        log.info("packed %s in %.0f s", target, time.monotonic() - started)
    found = _complete(target)
    assert found is not None
    return found


def _pack(tarball: Path, out: Path) -> None:
    """Unpack the rootfs (minus PRUNED), take its kernel out of /boot, cpio + zstd the rest."""
    root = out / "rootfs"
    root.mkdir()
    _run(["tar", "--zstd", "-xf", str(tarball), "-C", str(root), "./boot"], timeout=_PACK_TIMEOUT_S)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageBuildError(["tar", str(tarball)], None, "", "holds no /boot/vmlinuz-* (not a pxe image?)")
    shutil.copyfile(kernels[-1], out / KERNEL_NAME)
    shutil.rmtree(root / "boot")
    argv = ["tar", "--zstd", "-xf", str(tarball), "-C", str(root), "--numeric-owner", "--wildcards"]
    argv += [f"--exclude={pattern}" for pattern in PRUNED]
    _run(argv, timeout=_PACK_TIMEOUT_S)
    _cpio_zstd(root, out / INITRAMFS_NAME)
    shutil.rmtree(root)


def _tree_listing(root: Path) -> str:
    """Every path under `root` relative to it, each directory before what it holds (symlinks not followed)."""
    names = ["."]
    for current, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(current, root)
        for name in [*sorted(dirs), *sorted(files)]:
            names.append(name if rel == "." else f"{rel}/{name}")
    return "\n".join(names) + "\n"


def _cpio_zstd(root: Path, target: Path) -> None:
    """`find . | cpio -o -H newc | zstd` in `root`, with either stage's failure reported."""
    listing = _tree_listing(root)
    with target.open("wb") as sink:
        cpio = subprocess.Popen(
            ["cpio", "--quiet", "-o", "-H", "newc"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        zstd = subprocess.Popen(["zstd", "-q", "-T0", "-3"], stdin=cpio.stdout, stdout=sink, stderr=subprocess.PIPE)
        assert cpio.stdout is not None and cpio.stdin is not None and cpio.stderr is not None
        assert zstd.stderr is not None
        cpio.stdout.close()  # zstd holds it now; cpio gets SIGPIPE if zstd dies
        try:
            cpio.stdin.write(listing.encode())
            cpio.stdin.close()
        except BrokenPipeError:
            pass  # cpio died: its exit code and stderr below say why
        cpio_err = cpio.stderr.read().decode(errors="replace")
        cpio_rc = cpio.wait(timeout=_PACK_TIMEOUT_S)
        zstd_err = zstd.stderr.read().decode(errors="replace")
        zstd_rc = zstd.wait(timeout=_PACK_TIMEOUT_S)
    if cpio_rc != 0:
        raise ImageBuildError(["cpio", "-o", "-H", "newc"], cpio_rc, cpio_err)
    if zstd_rc != 0:
        raise ImageBuildError(["zstd", "-T0", "-3"], zstd_rc, zstd_err)


# --- the per-box overlay: a small newc archive written here ----------------------------------------------


@dataclass(frozen=True)
class OverlayEntry:
    """One file or directory of an overlay archive; `path` is absolute in the booted box."""

    path: str
    content: bytes | None = None  # None: a directory; the target of a symbolic link
    mode: int = 0o644
    symlink: bool = False

    @property
    def is_dir(self) -> bool:
        return self.content is None


def file(path: str, content: str | bytes, mode: int = 0o644) -> OverlayEntry:
    """A regular file entry (text is UTF-8 encoded)."""
    return OverlayEntry(path, content.encode() if isinstance(content, str) else content, mode)


def directory(path: str, mode: int = 0o755) -> OverlayEntry:
    """A directory entry; the kernel creates it or, if it exists, sets its mode."""
    return OverlayEntry(path, None, mode)


def symlink(path: str, target: str) -> OverlayEntry:
    """A symbolic link entry pointing at `target` (relative or absolute, not checked)."""
    return OverlayEntry(path, target.encode(), 0o777, symlink=True)


_NEWC_MAGIC: Final = b"070701"
_TRAILER: Final = "TRAILER!!!"


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _newc_record(name: str, ino: int, mode: int, data: bytes, nlink: int, mtime: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = _NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)
    head = header + encoded
    return head + _pad4(len(head)) + data + _pad4(len(data))


def newc_archive(entries: Iterable[OverlayEntry], *, mtime: int = 0) -> bytes:
    """A newc ("070701") cpio archive of `entries`, owned by root, in the order given.

    The kernel creates entries in archive order, so a directory must come before what it holds
    (or already exist in an earlier archive). Paths must be absolute, without `.` or `..` parts.
    """
    out = bytearray()
    seen: set[str] = set()
    for ino, entry in enumerate(entries, start=1):
        parts = entry.path.split("/")
        if not entry.path.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]):
            raise ValueError(f"overlay path {entry.path!r} must be absolute and normalised")
        name = entry.path.lstrip("/")
        if name in seen:
            raise ValueError(f"overlay path {entry.path!r} is listed twice")
        seen.add(name)
        if entry.is_dir:
            out += _newc_record(name, ino, stat.S_IFDIR | entry.mode, b"", 2, mtime)
        elif entry.symlink:
            assert entry.content is not None
            out += _newc_record(name, ino, stat.S_IFLNK | 0o777, entry.content, 1, mtime)
        else:
            assert entry.content is not None
            out += _newc_record(name, ino, stat.S_IFREG | entry.mode, entry.content, 1, mtime)
    out += _newc_record(_TRAILER, 0, 0, b"", 1, 0)
    return bytes(out)


def write_initrd(base: Path, overlay: Sequence[OverlayEntry], target: Path, *, mtime: int = 0) -> Path:
    """`base` (the compressed rootfs) followed by the overlay archive, as one initrd file.

    An uncompressed archive that follows a compressed one must start on a 4-byte boundary of the
    initrd (the kernel skips the zero padding in between), so the base is padded to 512 bytes.
    """
    with target.open("wb") as out, base.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
        out.write(b"\0" * (-out.tell() % 512))
        out.write(newc_archive(overlay, mtime=mtime))
    return target
