"""Signed image releases: manifest, ed25519 signature, and every way a release must be refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepop.cli import main
from edgepop.image.release import (
    MANIFEST,
    SIGNATURE,
    ImageVerifyError,
    generate_key,
    load_private_key,
    parse_dpkg_status,
    parse_public_key,
    verify_release,
    write_release,
)


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "signing.pem"
    return path, generate_key(path)


def _artifacts(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "vmlinuz").write_bytes(b"kernel" * 1000)
    (src / "initramfs.cpio.zst").write_bytes(bytes(range(256)) * 400)
    return {"vmlinuz": src / "vmlinuz", "initramfs.cpio.zst": src / "initramfs.cpio.zst"}


def _release(tmp_path: Path, key: tuple[Path, str], version: str = "v1", inputs: str = "abc") -> Path:
    rel = write_release(
        tmp_path / "images", version, inputs, _artifacts(tmp_path), {"bird2": "2.0.12"}, load_private_key(key[0])
    )
    return rel.directory


def test_release_verifies_and_lists_every_artifact(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    manifest = verify_release(directory, key[1])
    assert manifest.version == "v1"
    assert manifest.packages == {"bird2": "2.0.12"}
    assert manifest.artifacts["vmlinuz"]["size"] == 6000
    assert manifest.size == 6000 + 256 * 400
    assert verify_release(directory, key[1], manifest_sha256=manifest.sha256) == manifest
    assert (directory / "vmlinuz").stat().st_ino != (tmp_path / "src" / "vmlinuz").stat().st_ino


def test_same_inputs_skip_the_rebuild(tmp_path: Path, key: tuple[Path, str]) -> None:
    first = write_release(
        tmp_path / "images", "v1", "abc", _artifacts(tmp_path), {}, load_private_key(key[0])
    ).manifest.raw
    again = write_release(tmp_path / "images", "v1", "abc", _artifacts(tmp_path), {}, load_private_key(key[0]))
    assert not again.built and again.manifest.raw == first


def test_same_version_other_inputs_is_refused(tmp_path: Path, key: tuple[Path, str]) -> None:
    _release(tmp_path, key)
    with pytest.raises(ImageVerifyError, match="already exists with other inputs"):
        _release(tmp_path, key, inputs="def")


def test_tampered_artifact_is_refused(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    data = bytearray((directory / "initramfs.cpio.zst").read_bytes())
    data[100] ^= 0xFF
    (directory / "initramfs.cpio.zst").write_bytes(bytes(data))
    with pytest.raises(ImageVerifyError, match=r"initramfs.cpio.zst: sha256 .* \(tampered\)"):
        verify_release(directory, key[1])


def test_truncated_artifact_is_named_truncated(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    path = directory / "initramfs.cpio.zst"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ImageVerifyError, match=r"truncated: 5000 of 102400 bytes"):
        verify_release(directory, key[1])


def test_missing_artifact_is_refused(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    (directory / "vmlinuz").unlink()
    with pytest.raises(ImageVerifyError, match="vmlinuz: missing"):
        verify_release(directory, key[1])


def test_edited_manifest_fails_the_signature(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    doc = json.loads((directory / MANIFEST).read_text())
    # an attacker who swaps the initramfs also rewrites its hash in the manifest
    doc["artifacts"]["initramfs.cpio.zst"]["sha256"] = "0" * 64
    (directory / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ImageVerifyError, match="bad signature"):
        verify_release(directory, key[1])


def test_forged_signature_with_the_trusted_key_name_is_refused(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    other = tmp_path / "other.pem"
    generate_key(other)
    forged = _release(tmp_path / "o", (other, ""), version="v1")
    sig = json.loads((forged / SIGNATURE).read_text())
    sig["key"] = key[1]  # claims the trusted key, signed by another
    (directory / SIGNATURE).write_text(json.dumps(sig))
    with pytest.raises(ImageVerifyError, match="bad signature"):
        verify_release(directory, key[1])


def test_wrong_key_is_named(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    other = generate_key(tmp_path / "other.pem")
    with pytest.raises(ImageVerifyError, match=r"signed by ed25519:.*but the inventory trusts .*\(wrong key\)"):
        verify_release(directory, other)


def test_manifest_hash_pinned_by_the_inventory(tmp_path: Path, key: tuple[Path, str]) -> None:
    directory = _release(tmp_path, key)
    with pytest.raises(ImageVerifyError, match="the inventory pins"):
        verify_release(directory, key[1], manifest_sha256="1" * 64)


def test_keys(tmp_path: Path, key: tuple[Path, str]) -> None:
    parse_public_key(key[1])
    for bad in ("ssh-ed25519 AAAA", "ed25519:***", "ed25519:AAAA"):
        with pytest.raises(ValueError):
            parse_public_key(bad)
    with pytest.raises(FileExistsError):
        generate_key(key[0])
    assert key[0].stat().st_mode & 0o777 == 0o600
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ValueError, match="not an unencrypted PEM"):
        load_private_key(tmp_path / "junk.pem")


def test_dpkg_status_lists_installed_packages_only() -> None:
    status = (
        "Package: bird2\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.0.12-7\n"
        "Description: x\n more\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36\n"
    )
    assert parse_dpkg_status(status) == {"bird2": "2.0.12-7", "libc6:i386": "2.36"}


def test_cli_verify_and_keygen(tmp_path: Path, key: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    directory = _release(tmp_path, key)
    assert main(["image", "verify", str(directory), "--public-key", key[1]]) == 0
    assert "release v1 verified" in capsys.readouterr().out
    (directory / "vmlinuz").write_bytes(b"x")
    assert main(["image", "verify", str(directory), "--public-key", key[1]]) == 65
    assert "truncated" in capsys.readouterr().err
    assert main(["image", "keygen", "--out", str(tmp_path / "k.pem")]) == 0
    assert capsys.readouterr().out.startswith("ed25519:")
    assert main(["image", "keygen", "--out", str(tmp_path / "k.pem")]) == 65


def test_cli_build_without_a_key_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["image", "build", "--key", str(tmp_path / "missing.pem"), "--out", str(tmp_path / "out")])
    assert code == 66 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
