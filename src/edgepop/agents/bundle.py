"""Pack the agents and the few libraries they need into one reproducible tarball for the boxes.

The PoP's boxes run Debian's python3 with nothing from PyPI. The controller runs the same Python
minor version on the same architecture, so the pinned distributions already installed beside edgepop
(pydantic, pydantic-core, ...) are copied file by file, as their installed-files records list them,
next to the edgepop package itself; `PYTHONPATH=<dir>` makes them importable there. Nothing is
downloaded. The tarball is byte-for-byte the same for the same inputs (sorted entries, fixed times and
owners, gzip without a timestamp), so its checksum says whether a box needs new code.

    python -m edgepop.agents.bundle --out build/agents/edgepop-agents.tar.gz

prints `{"path": ..., "sha256": ..., "changed": true|false, "python": "3.11", "machine": "x86_64"}`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import edgepop

# what healthd imports at run time, besides the standard library and edgepop
DEPENDENCIES = ("pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection", "PyYAML")
# what recoveryd's power drivers import besides (`--recovery`): IPMI over LAN and SNMP
RECOVERY_DEPENDENCIES = (
    "pyghmi",
    "python-dateutil",
    "tzdata",
    "cryptography",
    "cffi",
    "pycparser",
    "pysnmp",
    "pyasn1",
)
# what arprelay imports besides (`--arprelay`): netlink, to read and program neighbours and routes
ARPRELAY_DEPENDENCIES = ("pyroute2",)
MANIFEST = "EDGEPOP_BUNDLE.json"


def _skip(rel: str) -> bool:
    parts = rel.split("/")
    return "__pycache__" in parts or rel.endswith((".pyc", ".pyo")) or ".." in parts


def package_files() -> dict[str, Path]:
    """Every file of the edgepop package (sources only), by its path inside the bundle."""
    root = Path(edgepop.__file__).resolve().parent
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = f"edgepop/{path.relative_to(root).as_posix()}"
        if path.is_file() and not _skip(rel):
            files[rel] = path
    return files


def distribution_files(name: str) -> dict[str, Path]:
    """Every installed file of one distribution (its dist-info included), by its path in site-packages."""
    dist = metadata.distribution(name)
    files: dict[str, Path] = {}
    for entry in dist.files or []:
        rel = entry.as_posix()
        if _skip(rel):
            continue
        path = Path(str(dist.locate_file(entry))).resolve()
        if path.is_file():
            files[rel] = path
    if not files:
        raise SystemExit(f"bundle: {name} has no installed files to copy")
    return files


def build(dependencies: tuple[str, ...] = DEPENDENCIES) -> tuple[bytes, dict[str, object]]:
    files = package_files()
    versions: dict[str, str] = {"edgepop": edgepop.__version__}
    for name in dependencies:
        files.update(distribution_files(name))
        versions[name] = metadata.version(name)
    manifest: dict[str, object] = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "machine": platform.machine(),
        "packages": versions,
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))

        add(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), 0o644)
        for rel in sorted(files):
            path = files[rel]
            add(rel, path.read_bytes(), 0o755 if os.access(path, os.X_OK) and path.suffix == ".so" else 0o644)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue(), manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgepop-bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="tarball to write (only when its content changed)")
    parser.add_argument("--recovery", action="store_true", help="add recoveryd's power-driver libraries")
    parser.add_argument("--arprelay", action="store_true", help="add arprelay's netlink library (pyroute2)")
    args = parser.parse_args(argv)
    deps = (
        DEPENDENCIES
        + (RECOVERY_DEPENDENCIES if args.recovery else ())
        + (ARPRELAY_DEPENDENCIES if args.arprelay else ())
    )
    data, manifest = build(deps)
    out = Path(args.out)
    changed = not out.is_file() or out.read_bytes() != data
    if changed:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    digest = hashlib.sha256(data).hexdigest()
    print(json.dumps({"path": str(out.resolve()), "sha256": digest, "changed": changed, **manifest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
