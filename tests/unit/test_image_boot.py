"""Boot artifacts of the pxe image: the cache, the packing (with the real tar/cpio/zstd on a tiny
rootfs) and the newc overlay writer, read back by GNU cpio."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgepop.image import boot
from edgepop.image.boot import OverlayEntry, directory, file, newc_archive, write_initrd

DIGEST = "0123456789abcdef"
TOOLS = all(shutil.which(t) for t in ("tar", "zstd", "cpio"))
needs_tools = pytest.mark.skipif(not TOOLS, reason="needs tar, zstd and cpio")


def _tarball(tmp_path: Path, digest: str = DIGEST) -> Path:
    """A tiny pxe-like rootfs: a kernel in /boot, a config file, one module kept and one pruned."""
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / "vmlinuz-6.1.0-1-amd64").write_bytes(b"KERNEL")
    (tree / "boot" / "initrd.img-6.1.0-1-amd64").write_bytes(b"OLD INITRD")
    (tree / "etc").mkdir()
    (tree / "etc" / "hostname").write_text("")
    (tree / "init").symlink_to("sbin/init")
    mods = tree / "usr" / "lib" / "modules" / "6.1.0-1-amd64" / "kernel"
    (mods / "drivers" / "net" / "bonding").mkdir(parents=True)
    (mods / "drivers" / "net" / "bonding" / "bonding.ko").write_bytes(b"bond")
    (mods / "sound" / "core").mkdir(parents=True)
    (mods / "sound" / "core" / "snd.ko").write_bytes(b"snd")
    tarball = tmp_path / "cache" / f"edgepop-pxe-bookworm-{digest}.tar.zst"
    tarball.parent.mkdir(exist_ok=True)
    subprocess.run(["tar", "--zstd", "-cf", str(tarball), "-C", str(tree), "."], check=True)
    return tarball


def _cpio_list(data: bytes) -> list[str]:
    proc = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True)
    return proc.stdout.decode().split()


# --- the cache -------------------------------------------------------------------------------------------


def test_key_follows_the_tarball_hash_and_the_packing() -> None:
    a = boot.artifacts_key(Path(f"edgepop-pxe-bookworm-{DIGEST}.tar.zst"))
    b = boot.artifacts_key(Path("edgepop-pxe-bookworm-fedcba9876543210.tar.zst"))
    assert a.startswith(DIGEST + "-") and b.startswith("fedcba9876543210-")
    assert a.split("-")[1] == b.split("-")[1]  # same packing, different image
    with pytest.raises(ValueError, match="not an edgepop rootfs tarball"):
        boot.artifacts_key(Path("rootfs.tar.gz"))


def test_key_changes_with_the_prune_list(monkeypatch: pytest.MonkeyPatch) -> None:
    name = Path(f"edgepop-pxe-bookworm-{DIGEST}.tar.zst")
    before = boot.artifacts_key(name)
    monkeypatch.setattr(boot, "PRUNED", (*boot.PRUNED, "./usr/share/perl"))
    assert boot.artifacts_key(name) != before


def test_cache_hit_packs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = tmp_path / f"edgepop-pxe-bookworm-{DIGEST}.tar.zst"
    target = boot.artifacts_dir(tarball, tmp_path)
    target.mkdir()
    (target / boot.KERNEL_NAME).write_bytes(b"k")
    (target / boot.INITRAMFS_NAME).write_bytes(b"i")

    def forbidden(*_: object) -> None:
        raise AssertionError("a cache hit must not pack")

    monkeypatch.setattr(boot, "_pack", forbidden)
    found = boot.boot_artifacts(tarball, tmp_path)
    assert found == boot.BootArtifacts(target / "vmlinuz", target / "initramfs.cpio.zst")


def test_failed_pack_leaves_nothing_a_later_run_would_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = tmp_path / f"edgepop-pxe-bookworm-{DIGEST}.tar.zst"
    monkeypatch.setattr(boot.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def half_then_fail(_tarball: Path, out: Path) -> None:
        (out / boot.KERNEL_NAME).write_bytes(b"k")
        raise boot.ImageBuildError(["cpio"], 2, "disk full")

    monkeypatch.setattr(boot, "_pack", half_then_fail)
    with pytest.raises(boot.ImageBuildError, match="disk full"):
        boot.boot_artifacts(tarball, tmp_path)
    assert not boot.artifacts_dir(tarball, tmp_path).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".boot-")] == []


@needs_tools
def test_pack_a_rootfs_then_reuse_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = _tarball(tmp_path)
    cache = tarball.parent
    found = boot.boot_artifacts(tarball, cache)
    assert found.kernel.read_bytes() == b"KERNEL"
    names = _cpio_list(subprocess.run(["zstd", "-dc", str(found.initramfs)], capture_output=True, check=True).stdout)
    assert {"etc/hostname", "init", "usr/lib/modules/6.1.0-1-amd64/kernel/drivers/net/bonding/bonding.ko"} <= set(names)
    assert not [n for n in names if n.startswith("boot") or "/sound" in n]
    assert names.index("etc") < names.index("etc/hostname")  # directories before their content
    assert not list(cache.glob(".boot-*"))  # the partial directory is gone

    calls: list[object] = []
    monkeypatch.setattr(boot, "_pack", lambda *a: calls.append(a))
    assert boot.boot_artifacts(tarball, cache) == found
    assert calls == []
    # a new image (another content hash) gets its own artifacts
    other = _tarball(tmp_path / "other", digest="fedcba9876543210")
    monkeypatch.undo()
    assert boot.boot_artifacts(other, other.parent).initramfs != found.initramfs


@needs_tools
def test_a_rootfs_without_kernel_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "boot").mkdir()
    tarball = tmp_path / f"edgepop-container-bookworm-{DIGEST}.tar.zst"
    subprocess.run(["tar", "--zstd", "-cf", str(tarball), "-C", str(tree), "."], check=True)
    with pytest.raises(boot.ImageBuildError, match="no /boot/vmlinuz"):
        boot.boot_artifacts(tarball, tmp_path)


# --- the overlay -----------------------------------------------------------------------------------------


def test_newc_layout_is_exact() -> None:
    data = newc_archive([file("/etc/hostname", "srv1\n")], mtime=7)
    header = data[:110]
    assert header[:6] == b"070701"
    fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
    ino, mode, uid, gid, nlink, mtime, size, *_, namesize, check = fields
    assert (ino, mode, uid, gid, nlink, mtime, size, namesize, check) == (1, 0o100644, 0, 0, 1, 7, 5, 13, 0)
    assert data[110:123] == b"etc/hostname\0"
    assert data[123:124] == b"\0"  # header + name padded to 4 bytes (124)
    assert data[124:129] == b"srv1\n" and data[129:132] == b"\0\0\0"  # data padded to 4 bytes
    assert data[132:138] == b"070701" and b"TRAILER!!!\0" in data[132:]
    assert len(data) % 4 == 0


@needs_tools
def test_gnu_cpio_reads_the_overlay(tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAA test\n"
    data = newc_archive(
        [
            directory("/root/.ssh", 0o700),
            file("/root/.ssh/authorized_keys", key, 0o600),
            file("/etc/systemd/network/mgmt-dhcp.network", "[Match]\n"),
            file("/etc/empty", b""),
        ]
    )
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=data, cwd=out, check=True)
    assert (out / "root/.ssh/authorized_keys").read_text() == key
    assert (out / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert (out / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
    assert (out / "etc/empty").read_bytes() == b""
    assert (out / "etc/systemd/network/mgmt-dhcp.network").read_text() == "[Match]\n"


@pytest.mark.parametrize("path", ["etc/hostname", "/etc/../root", "/etc//x", "/etc/./x"])
def test_overlay_paths_must_be_absolute_and_normal(path: str) -> None:
    with pytest.raises(ValueError, match="absolute and normalised"):
        newc_archive([OverlayEntry(path, b"")])


def test_overlay_path_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        newc_archive([file("/etc/hostname", "a"), file("/etc/hostname", "b")])


def test_initrd_is_base_padded_then_overlay(tmp_path: Path) -> None:
    base = tmp_path / "base.cpio.zst"
    base.write_bytes(b"Z" * 1001)
    initrd = write_initrd(base, [file("/etc/hostname", "p\n")], tmp_path / "vm.initrd")
    data = initrd.read_bytes()
    assert data[:1001] == b"Z" * 1001 and data[1001:1024] == b"\0" * 23
    assert data[1024:] == newc_archive([file("/etc/hostname", "p\n")])
