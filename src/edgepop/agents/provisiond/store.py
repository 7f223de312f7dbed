"""The releases provisiond serves: `<images>/<version>/` directories and a `current` symlink.

Only a release that verified (signature with the inventory's key, the manifest hash the inventory
pins, every artifact's size and sha256) is ever made current, and the switch is one atomic rename of
the symlink: a box that is loading the image while a new one arrives keeps reading the old files
(they stay until the next release replaces them), and a release that fails verification leaves the
last good one in place.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgepop.agents.provisiond.config import ImageSpec
from edgepop.atomic_write import fsync_directory
from edgepop.image.release import MANIFEST, SIGNATURE, ImageVerifyError, Manifest, verify_release

CURRENT = "current"


@dataclass
class ImageStore:
    root: Path
    spec: ImageSpec

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._served: Manifest | None = None

    @property
    def trusted_key(self) -> str:
        if not self.spec.public_key:
            raise ImageVerifyError("the inventory has no pop.provisioning.image_public_key: no image can be trusted")
        return self.spec.public_key

    def verify(self, directory: Path) -> Manifest:
        return verify_release(directory, self.trusted_key, manifest_sha256=self.spec.pinned_sha256)

    def current_dir(self) -> Path | None:
        link = self.root / CURRENT
        return link.resolve() if link.is_symlink() else None

    def load(self) -> Manifest | None:
        """Verify the current release (at start-up, after a plan reload); serve it only if it verifies.

        A current release of another version than the plan's is the last good one: it must still be
        signed with the trusted key and intact, but the plan's pinned hash is for the version being
        pulled, so it is not held against it; it is served until the new version has verified.
        """
        current = self.current_dir()
        if current is None:
            self._served = None
            return None
        try:
            manifest = verify_release(current, self.trusted_key)
            if manifest.version == self.spec.version:
                manifest = self.verify(current)
        except ImageVerifyError:
            self._served = None
            raise
        self._served = manifest
        return manifest

    @property
    def served(self) -> Manifest | None:
        return self._served

    def activate(self, staged: Path) -> Manifest:
        """Verify `staged`, move it to `<root>/<version>` and point `current` at it, atomically.

        On any verification error the staged directory stays where it is (for a post-mortem or a
        resumed download) and the current release keeps being served.
        """
        manifest = self.verify(staged)
        target = self.root / manifest.version
        if staged.resolve() != target.resolve():
            if target.exists():
                old = self.root / f".{manifest.version}.old-{os.getpid()}"
                os.replace(target, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(staged, target)
        tmp = self.root / f".{CURRENT}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(manifest.version, tmp)
        os.replace(tmp, self.root / CURRENT)
        fsync_directory(self.root)  # the switch survives a power cut right after it
        self._served = manifest
        return manifest

    def path_of(self, version: str, name: str) -> Path | None:
        """The file to send for `/image/<version>/<name>`, or None: only the verified, current release
        (by its version or as `current`) and only names its manifest lists."""
        served = self._served
        if served is None or version not in (CURRENT, served.version):
            return None
        if name not in served.artifacts and name not in (MANIFEST, SIGNATURE):
            return None
        return self.root / served.version / name
