"""The stateless release: kernel, rootfs and the agents' overlay, signed; rebuilt only when an input changed."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from edgepop.image import stateless
from edgepop.image.boot import BootArtifacts
from edgepop.image.release import generate_key, verify_release

SHA = "ab" * 32


def _bundle(files: dict[str, tuple[bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio is not installed (apt-get install cpio)")
def test_agents_overlay_unpacks_where_the_roles_put_the_bundle(tmp_path: Path) -> None:
    bundle = _bundle(
        {
            "EDGEPOP_BUNDLE.json": (b"{}", 0o644),
            "edgepop/agents/__init__.py": (b"# agents\n", 0o644),
            "_cffi_backend.cpython-311-x86_64-linux-gnu.so": (b"\x7fELF", 0o755),
        }
    )
    archive = gzip.decompress(stateless.agents_overlay(bundle, SHA))
    out = tmp_path / "root"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=out, check=True)
    release = out / "opt/edgepop/releases" / SHA[:16]
    assert (release / "edgepop/agents/__init__.py").read_bytes() == b"# agents\n"
    assert os.stat(release / "_cffi_backend.cpython-311-x86_64-linux-gnu.so").st_mode & 0o777 == 0o755
    lib = out / "opt/edgepop/lib"
    assert lib.is_symlink() and os.readlink(lib) == f"/opt/edgepop/releases/{SHA[:16]}"


def test_agents_overlay_refuses_escaping_paths() -> None:
    with pytest.raises(ValueError, match="not a plain relative path"):
        stateless.agents_overlay(_bundle({"../etc/passwd": (b"x", 0o644)}), SHA)


def test_build_release_has_three_artifacts_and_skips_an_unchanged_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    tarball = cache / f"edgepop-pxe-bookworm-{'1' * 16}.tar.zst"
    tarball.write_bytes(b"rootfs")
    boot = BootArtifacts(cache / "vmlinuz", cache / "initramfs.cpio.zst")
    boot.kernel.write_bytes(b"kernel")
    boot.initramfs.write_bytes(b"initramfs")
    bundles = [_bundle({"edgepop/__init__.py": (b"v1", 0o644)})]
    monkeypatch.setattr(stateless, "build_rootfs", lambda flavour, cache_dir: tarball)
    monkeypatch.setattr(stateless, "boot_artifacts", lambda tar, cache_dir: boot)
    monkeypatch.setattr(stateless, "installed_packages", lambda tar: {"bird2": "2.0.12"})
    monkeypatch.setattr("edgepop.agents.bundle.build", lambda deps: (bundles[-1], {"packages": {"edgepop": "0.1.0"}}))
    public = generate_key(tmp_path / "k.pem")

    first = stateless.build_release(tmp_path / "out", None, tmp_path / "k.pem", cache)
    manifest = verify_release(first.release.directory, public)
    assert sorted(manifest.artifacts) == ["agents.cpio.gz", "initramfs.cpio.zst", "vmlinuz"]
    assert manifest.packages == {"bird2": "2.0.12", "python:edgepop": "0.1.0"}
    assert first.release.built and first.release.directory.name == manifest.inputs

    again = stateless.build_release(tmp_path / "out", None, tmp_path / "k.pem", cache)
    assert not again.release.built and again.release.manifest.raw == manifest.raw

    bundles.append(_bundle({"edgepop/__init__.py": (b"v2", 0o644)}))  # new agents: a new release
    newer = stateless.build_release(tmp_path / "out", None, tmp_path / "k.pem", cache)
    assert newer.release.built and newer.release.manifest.inputs != manifest.inputs
