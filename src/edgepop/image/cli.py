"""`edgepop image build | keygen | verify`: the signed stateless image for bare servers.

`build` makes (or reuses) the pxe rootfs, packs it for RAM boot and writes a signed release; when
nothing that shapes the image changed, every step is a cache hit and the existing release is kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

EX_OK = 0
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_NOINPUT = 66


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _cmd_build(args: argparse.Namespace) -> int:
    from edgepop.image.build import ImageBuildError
    from edgepop.image.release import ImageVerifyError
    from edgepop.image.stateless import build_release

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    started = time.monotonic()
    if not Path(args.key).is_file():
        print(f"error: signing key: {args.key} does not exist", file=sys.stderr)
        return EX_NOINPUT
    try:
        made = build_release(Path(args.out), args.version, Path(args.key), Path(args.cache))
    except ValueError as exc:
        print(f"error: signing key: {exc}", file=sys.stderr)
        return EX_NOINPUT
    except (ImageBuildError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_DATAERR if isinstance(exc, ImageVerifyError) else EX_SOFTWARE
    release, m = made.release, made.release.manifest
    state = "built" if release.built else "unchanged (skipped)"
    print(f"release {m.version}: {state} in {time.monotonic() - started:.1f} s -> {release.directory}")
    for name, entry in sorted(m.artifacts.items()):
        print(f"  {name:<20} {_mb(int(entry['size'])):>10}  sha256 {entry['sha256']}")
    print(f"  {'rootfs tarball':<20} {_mb(made.tarball.stat().st_size):>10}  ({len(m.packages)} packages)")
    print(f"  {'total served':<20} {_mb(m.size):>10}")
    print(f"manifest sha256 {m.sha256}  (pop.provisioning.image_sha256)")
    return EX_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    from edgepop.image.release import generate_key

    try:
        public = generate_key(Path(args.out))
    except FileExistsError:
        print(f"error: {args.out} exists; not overwriting a signing key", file=sys.stderr)
        return EX_DATAERR
    print(public)
    return EX_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from edgepop.image.release import ImageVerifyError, verify_release

    trusted = Path(args.public_key).read_text() if Path(args.public_key).is_file() else args.public_key
    try:
        m = verify_release(Path(args.release), trusted, manifest_sha256=args.sha256)
    except ImageVerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_DATAERR
    print(f"{args.release}: release {m.version} verified ({len(m.artifacts)} artifacts, {_mb(m.size)})")
    return EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("image", help="build, sign and verify the stateless image bare servers boot")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("build", help="build (or reuse) the pxe image and write a signed release")
    p.add_argument("--key", required=True, help="ed25519 private key (PEM) that signs the manifest")
    p.add_argument("--out", default="build/images", help="releases directory (default: build/images)")
    p.add_argument("--version", help="release name (default: the image's content hash)")
    p.add_argument("--cache", default=".cache/image", help="rootfs and boot artifact cache")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_build)

    p = actions.add_parser("keygen", help="write a new signing key; print its public key for the inventory")
    p.add_argument("--out", required=True, help="private key file to create (mode 0600)")
    p.set_defaults(func=_cmd_keygen)

    p = actions.add_parser("verify", help="check a release's signature, manifest hash and artifacts")
    p.add_argument("release", help="release directory")
    p.add_argument("--public-key", required=True, help="ed25519:<base64>, or a file holding it")
    p.add_argument("--sha256", help="the manifest sha256 the inventory pins")
    p.set_defaults(func=_cmd_verify)
