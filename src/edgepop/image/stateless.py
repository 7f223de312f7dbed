"""The release bare servers boot: the pxe rootfs as the RAM root, its kernel, and the edgepop agents.

The agents (healthd, arprelay, recoveryd, provisiond and the libraries they import) travel as a third
initrd, a gzip-compressed newc archive that unpacks the agents' bundle where the roles put it
(`/opt/edgepop/releases/<bundle sha256[:16]>/`, `/opt/edgepop/lib` pointing at it). Keeping them out
of the rootfs means a new edgepop does not rebuild the Debian image, and a role that deploys the same
bundle finds it in place and unpacks nothing. The bundle is the one with recoveryd's libraries too
(cryptography for provisiond's signature checks), so any box can be a control server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edgepop.image.boot import (
    INITRAMFS_NAME,
    KERNEL_NAME,
    OverlayEntry,
    artifacts_key,
    boot_artifacts,
    directory,
    file,
    newc_archive,
    symlink,
)
from edgepop.image.build import build_rootfs
from edgepop.image.release import Release, installed_packages, write_release

AGENTS_NAME: Final = "agents.cpio.gz"
AGENTS_PREFIX: Final = "/opt/edgepop"


def agents_overlay(bundle: bytes, sha256: str) -> bytes:
    """The bundle (a .tar.gz of regular files) as a gzip'd newc archive under AGENTS_PREFIX."""
    release = f"{AGENTS_PREFIX}/releases/{sha256[:16]}"
    entries: list[OverlayEntry] = [directory(d) for d in ("/opt", AGENTS_PREFIX, f"{AGENTS_PREFIX}/releases", release)]
    made = {e.path for e in entries}
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for member in members:
            if member.name.startswith("/") or ".." in member.name.split("/"):
                raise ValueError(f"bundle member {member.name!r} is not a plain relative path")
            parts = member.name.split("/")
            for depth in range(1, len(parts)):
                parent = f"{release}/{'/'.join(parts[:depth])}"
                if parent not in made:
                    entries.append(directory(parent))
                    made.add(parent)
            handle = tar.extractfile(member)
            assert handle is not None
            entries.append(file(f"{release}/{member.name}", handle.read(), member.mode & 0o777))
    entries.append(symlink(f"{AGENTS_PREFIX}/lib", release))
    return gzip.compress(newc_archive(entries), compresslevel=6, mtime=0)


@dataclass(frozen=True)
class StatelessRelease:
    release: Release
    tarball: Path


def build_release(out_dir: Path, version: str | None, key_path: Path, cache: Path) -> StatelessRelease:
    """Build (or reuse) everything and write the signed release; unchanged inputs change nothing."""
    from edgepop.agents.bundle import DEPENDENCIES, RECOVERY_DEPENDENCIES, build
    from edgepop.image.release import load_private_key

    key = load_private_key(key_path)
    tarball = build_rootfs("pxe", cache)
    boot = boot_artifacts(tarball, cache)
    bundle, info = build(DEPENDENCIES + RECOVERY_DEPENDENCIES)
    bundle_sha = hashlib.sha256(bundle).hexdigest()
    agents = cache / f"agents-{bundle_sha[:16]}.cpio.gz"
    if not agents.is_file():
        partial = agents.with_name(f".{agents.name}.partial-{os.getpid()}")
        partial.write_bytes(agents_overlay(bundle, bundle_sha))
        os.replace(partial, agents)
    inputs = f"{artifacts_key(tarball)}-{bundle_sha[:8]}"
    packages = installed_packages(tarball)
    versions = info.get("packages")
    if isinstance(versions, dict):
        packages.update({f"python:{name}": str(v) for name, v in versions.items()})
    release = write_release(
        out_dir,
        version or inputs,
        inputs,
        {KERNEL_NAME: boot.kernel, INITRAMFS_NAME: boot.initramfs, AGENTS_NAME: agents},
        packages,
        key,
    )
    return StatelessRelease(release, tarball)
