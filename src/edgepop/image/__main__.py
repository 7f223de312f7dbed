"""`python -m edgepop.image build --flavour container --cache .cache/image`.

A thin command line over `edgepop.image` so the image can be built (and its cache warmed) before the
edgepop CLI grows an `image` command; that command should call `main` or the same two functions.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from edgepop.image.build import ImageBuildError, build_rootfs, import_container_image
from edgepop.image.packages import FLAVOURS, Flavour, groups


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edgepop.image", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) the rootfs tarball; import it for containers")
    build.add_argument("--flavour", choices=FLAVOURS, default="container")
    build.add_argument("--cache", type=Path, default=Path(".cache/image"), help="tarball cache directory")
    build.add_argument("--no-import", action="store_true", help="container flavour: skip podman import")
    build.add_argument("--tag", help="podman tag (default localhost/edgepop-base:<content hash>)")
    build.add_argument("-v", "--verbose", action="store_true", help="show the commands being run")
    packages = sub.add_parser("packages", help="print the package list, grouped with the reason for each")
    packages.add_argument("--flavour", choices=FLAVOURS, default="container")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the process exit code (1 on a failed external command)."""
    args = _parser().parse_args(argv)
    flavour = cast(Flavour, args.flavour)
    if args.command == "packages":
        for group in groups(flavour):
            print(f"# {group.name}: {group.why}")
            print(" ".join(group.packages))
        return 0
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        tarball = build_rootfs(flavour, args.cache)
        print(f"tarball: {tarball}")
        if flavour == "container" and not args.no_import:
            print(f"image: {import_container_image(tarball, args.tag)}")
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
