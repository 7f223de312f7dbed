"""A signed image release: the boot artifacts, a manifest of what they are, and its ed25519 signature.

A release is one directory that provisiond serves as is and that another PoP copies as is:

    <images>/<version>/vmlinuz
    <images>/<version>/initramfs.cpio.zst
    <images>/<version>/manifest.json      version, packages, size and sha256 of every artifact
    <images>/<version>/manifest.sig       {"key": "ed25519:...", "signature": "<base64>"}

Only the manifest is signed; it pins every artifact by size and sha256, so one signature check and
one hash per artifact prove the whole release. The size is checked before the hash so that a
truncated download (the common failure of an image pulled across the WAN) is named as such, and a
file of the right size with the wrong content as tampered.

Keys: the operator holds the private key (a PEM file, never in the inventory); every PoP's inventory
carries the public key as `ed25519:<base64 of the 32 raw bytes>` (`pop.provisioning.image_public_key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
MANIFEST_FORMAT: Final = 1
KEY_PREFIX: Final = "ed25519:"
_HASH_CHUNK: Final = 1 << 20


class ImageVerifyError(RuntimeError):
    """A release that must not be served: the message says which file and what is wrong with it."""


# --- keys ----------------------------------------------------------------------------------------------


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """`ed25519:<base64>` -> key; ValueError naming what is wrong."""
    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        raise ValueError(f"expected a public key like {KEY_PREFIX}<base64 of 32 bytes>, got {text[:20]!r}")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"public key is not valid base64: {exc}") from None
    if len(raw) != 32:
        raise ValueError(f"an ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The operator's signing key: a PEM (PKCS#8) ed25519 private key without a passphrase."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: a {type(key).__name__}, expected an ed25519 key")
    return key


def generate_key(path: Path) -> str:
    """Write a new private key to `path` (mode 0600, refusing to overwrite); return its public key text."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_key_text(key.public_key())


# --- manifest ------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of a release."""

    version: str
    inputs: str
    packages: dict[str, str]
    artifacts: dict[str, dict[str, Any]]
    raw: bytes

    @property
    def sha256(self) -> str:
        """What `pop.provisioning.image_sha256` pins."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def size(self) -> int:
        return sum(int(a["size"]) for a in self.artifacts.values())


def manifest_bytes(
    version: str, inputs: str, packages: Mapping[str, str], artifacts: Mapping[str, Path], built: float
) -> bytes:
    doc = {
        "format": MANIFEST_FORMAT,
        "version": version,
        "inputs": inputs,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built)),
        "packages": dict(sorted(packages.items())),
        "artifacts": {
            name: {"size": path.stat().st_size, "sha256": sha256_file(path)} for name, path in sorted(artifacts.items())
        },
    }
    return (json.dumps(doc, indent=1, sort_keys=False) + "\n").encode()


def parse_manifest(raw: bytes, where: str) -> Manifest:
    try:
        doc = json.loads(raw)
        if doc.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {MANIFEST_FORMAT}")
        artifacts = doc["artifacts"]
        for name, entry in artifacts.items():
            if "/" in name or name.startswith(".") or name in (MANIFEST, SIGNATURE):
                raise ValueError(f"artifact name {name!r} is not a plain file name")
            int(entry["size"])
            str(entry["sha256"])
        return Manifest(str(doc["version"]), str(doc["inputs"]), dict(doc["packages"]), dict(artifacts), raw)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImageVerifyError(f"{where}: not an edgepop image manifest ({exc})") from None


def signature_bytes(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    doc = {"key": public_key_text(key.public_key()), "signature": base64.b64encode(key.sign(manifest)).decode()}
    return (json.dumps(doc) + "\n").encode()


def verify_manifest(raw: bytes, sig: bytes, trusted: str, where: str) -> Manifest:
    """Check the signature of manifest bytes against the trusted public key; parse them."""
    try:
        doc = json.loads(sig)
        signed_by = str(doc["key"])
        signature = base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ImageVerifyError(f"{where}/{SIGNATURE}: unreadable signature file ({exc})") from None
    if signed_by != trusted.strip():
        raise ImageVerifyError(
            f"{where}: signed by {signed_by}, but the inventory trusts {trusted.strip()} (wrong key): "
            "refusing the image"
        )
    try:
        parse_public_key(trusted).verify(signature, raw)
    except InvalidSignature:
        raise ImageVerifyError(
            f"{where}/{MANIFEST}: bad signature (the manifest or its signature was altered): refusing the image"
        ) from None
    return parse_manifest(raw, f"{where}/{MANIFEST}")


def check_artifact(manifest: Manifest, name: str, path: Path, where: str) -> None:
    """Size first (truncated vs tampered), then sha256."""
    entry = manifest.artifacts[name]
    want = int(entry["size"])
    if not path.is_file():
        raise ImageVerifyError(f"{where}/{name}: missing (the manifest lists {want} bytes)")
    have = path.stat().st_size
    if have < want:
        raise ImageVerifyError(f"{where}/{name}: truncated: {have} of {want} bytes: refusing the image")
    if have > want:
        raise ImageVerifyError(f"{where}/{name}: {have} bytes, the manifest says {want} (tampered): refusing the image")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ImageVerifyError(
            f"{where}/{name}: sha256 {digest} does not match the manifest's {entry['sha256']} (tampered): "
            "refusing the image"
        )


def verify_release(directory: Path, trusted: str, *, manifest_sha256: str | None = None) -> Manifest:
    """Signature, then (optionally) the manifest hash the inventory pins, then every artifact.

    Raises `ImageVerifyError` with the first problem found; returns the manifest when all is well.
    """
    where = str(directory)
    try:
        raw = (directory / MANIFEST).read_bytes()
        sig = (directory / SIGNATURE).read_bytes()
    except OSError as exc:
        raise ImageVerifyError(f"{where}: {exc.strerror}: {exc.filename}") from None
    manifest = verify_manifest(raw, sig, trusted, where)
    if manifest_sha256 and manifest.sha256 != manifest_sha256:
        raise ImageVerifyError(
            f"{where}/{MANIFEST}: sha256 {manifest.sha256}, the inventory pins {manifest_sha256} "
            "(pop.provisioning.image_sha256): refusing the image"
        )
    for name in manifest.artifacts:
        check_artifact(manifest, name, directory / name, where)
    return manifest


# --- building a release --------------------------------------------------------------------------------


def installed_packages(tarball: Path) -> dict[str, str]:
    """Package -> version of everything dpkg installed in the rootfs tarball."""
    proc = subprocess.run(
        ["tar", "--zstd", "-xOf", str(tarball), "./var/lib/dpkg/status"],
        capture_output=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cannot read the package list of {tarball}: {proc.stderr.decode(errors='replace')}")
    return parse_dpkg_status(proc.stdout.decode(errors="replace"))


def parse_dpkg_status(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "")
            name = fields["Package"] if arch in ("all", "amd64", "") else f"{fields['Package']}:{arch}"
            out[name] = fields.get("Version", "")
    return out


@dataclass(frozen=True)
class Release:
    directory: Path
    manifest: Manifest
    built: bool  # False: an identical release was already there


def write_release(
    out_dir: Path,
    version: str,
    inputs: str,
    artifacts: Mapping[str, Path],
    packages: Mapping[str, str],
    key: Ed25519PrivateKey,
) -> Release:
    """Copy the artifacts into `<out_dir>/<version>`, write and sign the manifest.

    Skipped when that release exists, was made from the same inputs and verifies with this key. A
    release with the same version but other inputs is refused: a version names one image forever.
    """
    target = out_dir / version
    trusted = public_key_text(key.public_key())
    if (target / MANIFEST).is_file():
        existing = parse_manifest((target / MANIFEST).read_bytes(), str(target / MANIFEST))
        if existing.inputs != inputs:
            raise ImageVerifyError(
                f"{target}: version {version} already exists with other inputs ({existing.inputs}, now {inputs}); "
                "give the new image a new version"
            )
        try:
            return Release(target, verify_release(target, trusted), built=False)
        except ImageVerifyError:
            shutil.rmtree(target)  # damaged or signed with another key: make it again
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=out_dir))
    try:
        copied: dict[str, Path] = {}
        for name, src in artifacts.items():
            copied[name] = partial / name
            # a copy, not a hard link: the release is served and synced, the build cache must not
            # share its inodes
            shutil.copyfile(src, copied[name])
        raw = manifest_bytes(version, inputs, packages, copied, time.time())
        (partial / MANIFEST).write_bytes(raw)
        (partial / SIGNATURE).write_bytes(signature_bytes(raw, key))
        partial.chmod(0o755)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Release(target, verify_release(target, trusted), built=True)
