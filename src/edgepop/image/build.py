"""Build the edgepop Debian rootfs with mmdebstrap and import it into podman.

No registry pulls are possible (or wanted) where a PoP is brought up, so the image is built from the
Debian archive with mmdebstrap, from the same mirror the host's apt uses. A build takes 30-60 s,
so its result is cached: the tarball is named by a hash of every input that shapes its content (the
package list, the flavour, the hook text, the apt sources and a format version), and an existing
tarball with that name is reused. The podman tag carries the same hash, so a changed input can never
be served by a stale image.

Every external command runs through `_run` with an explicit argv (no shell), and any failure becomes
one `ImageBuildError` carrying the command and the tail of its stderr: the caller reports one kind of
error and the operator sees what failed without re-running with more verbosity.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edgepop.image.hook import customize_hook
from edgepop.image.packages import SUITE, VARIANT, Flavour, package_list

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
"""Bump when the build changes in a way the other inputs do not capture (e.g. the tar compression)."""

DEFAULT_MIRROR: Final = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR: Final = "http://deb.debian.org/debian-security"
IMAGE_REPO: Final = "localhost/edgepop-base"
TARBALL_SUFFIX: Final = ".tar.zst"
HASH_LEN: Final = 16
TAG_HASH_LEN: Final = 12

DPKG_OPTS: Final[tuple[str, ...]] = (
    # dpkg never unpacks docs, man pages or translations, neither now nor for packages a role adds
    # later (mmdebstrap also writes these into /etc/dpkg/dpkg.cfg.d/ inside the image).
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)

_TARBALL_RE: Final = re.compile(r"^edgepop-[a-z]+-[a-z]+-(?P<digest>[0-9a-f]+)\.tar\.zst$")
_STDERR_TAIL_LINES: Final = 20
_BUILD_TIMEOUT_S: Final = 1800.0
_PODMAN_TIMEOUT_S: Final = 300.0


def _display(argv: Sequence[str], limit: int = 80) -> str:
    """A shell-quoted argv for messages, with long arguments (the hook script) cut short."""
    return shlex.join(arg if len(arg) <= limit else arg[:limit] + "..." for arg in argv)


class ImageBuildError(RuntimeError):
    """An external command of the image build failed; carries the argv and the end of its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, reason: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
        what = reason or f"exited with {returncode}"
        message = f"{self.argv[0]} {what}\n  command: {_display(self.argv)}"
        if self.stderr_tail:
            message += "\n" + self.stderr_tail
        super().__init__(message)


_Completed = subprocess.CompletedProcess[str]


def _run(argv: Sequence[str], *, timeout: float, ok_codes: tuple[int, ...] = (0,)) -> _Completed:
    """Run argv without a shell; raise `ImageBuildError` unless it exits with one of `ok_codes`."""
    log.debug("running %s", _display(argv))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ImageBuildError(argv, None, "", f"is not installed ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise ImageBuildError(argv, None, stderr, f"timed out after {timeout:.0f} s") from exc
    if proc.returncode not in ok_codes:
        raise ImageBuildError(argv, proc.returncode, proc.stderr)
    return proc


BUILD_TOOLS: Final[dict[str, str]] = {
    "mmdebstrap": "mmdebstrap",
    # mmdebstrap compresses a .tar.zst through the host's zstd; it is not one of its dependencies.
    "zstd": "zstd",
}


def _require_tools(tools: dict[str, str]) -> None:
    """Fail before a long build, naming the Debian packages to install, rather than mid-way."""
    missing = {tool: package for tool, package in tools.items() if shutil.which(tool) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise ImageBuildError(sorted(missing), None, "", f"not installed: apt-get install -y {packages}")


# --- apt sources -------------------------------------------------------------------------------------

APT_SOURCE_FILES: Final[tuple[Path, ...]] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
_DEBIAN_COMPONENTS: Final = ("main", "contrib", "non-free", "non-free-firmware")


def _suite_matches(suite: str, wanted: str) -> bool:
    return suite == wanted or suite.startswith(wanted + "-")


def _parse_one_line(text: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        fields = line.split()
        if len(fields) < 4 or fields[0] != "deb":
            continue
        fields = _strip_options(fields[1:])
        if len(fields) >= 3:
            yield fields[0], fields[1], tuple(fields[2:])


def _strip_options(fields: list[str]) -> list[str]:
    """Drop a `[ key=value ... ]` options block from a one-line source entry."""
    out: list[str] = []
    in_options = False
    for field in fields:
        if field.startswith("["):
            in_options = not field.endswith("]")
            continue
        if in_options:
            in_options = not field.endswith("]")
            continue
        out.append(field)
    return out


def _parse_deb822(text: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri, suite, tuple(fields.get("components", "").split())


def host_apt_sources(suite: str = SUITE, paths: Sequence[Path] = APT_SOURCE_FILES) -> tuple[str, ...]:
    """One-line `deb` entries of the host's Debian sources for `suite` and its -updates/-security.

    The image must come from the mirror the host is allowed to reach, which is whatever its apt is
    configured with. Third-party repositories (other suites) are ignored; only Debian's own components
    are kept. Falls back to deb.debian.org when the host lists no matching entry.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources")))
        elif path.is_file():
            files.append(path)
    entries: list[str] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        parsed = _parse_deb822(text) if file.suffix == ".sources" else _parse_one_line(text)
        for uri, entry_suite, components in parsed:
            kept = [c for c in components if c in _DEBIAN_COMPONENTS]
            if _suite_matches(entry_suite, suite) and kept:
                line = f"deb {uri} {entry_suite} {' '.join(kept)}"
                if line not in entries:
                    entries.append(line)
    if not any(line.split()[2] == suite for line in entries):
        log.warning("no host apt source for %s; using %s", suite, DEFAULT_MIRROR)
        return (
            f"deb {DEFAULT_MIRROR} {suite} main",
            f"deb {DEFAULT_MIRROR} {suite}-updates main",
            f"deb {DEFAULT_SECURITY_MIRROR} {suite}-security main",
        )
    return tuple(entries)


# --- build inputs and the content hash -----------------------------------------------------------------


@dataclass(frozen=True)
class BuildInputs:
    """Everything that shapes the rootfs; its digest names the tarball and the image tag."""

    flavour: Flavour
    packages: tuple[str, ...]
    hook: str
    sources: tuple[str, ...]
    suite: str = SUITE
    variant: str = VARIANT
    dpkg_opts: tuple[str, ...] = DPKG_OPTS
    format_version: int = FORMAT_VERSION

    def digest(self) -> str:
        """sha256 over a canonical JSON form of the inputs (key order and package order fixed)."""
        doc = {
            "format_version": self.format_version,
            "flavour": self.flavour,
            "suite": self.suite,
            "variant": self.variant,
            "packages": sorted(self.packages),
            "hook": self.hook,
            "sources": list(self.sources),
            "dpkg_opts": list(self.dpkg_opts),
        }
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def tarball_name(self) -> str:
        return f"edgepop-{self.flavour}-{self.suite}-{self.digest()[:HASH_LEN]}{TARBALL_SUFFIX}"


def build_inputs(flavour: Flavour, sources: Sequence[str] | None = None) -> BuildInputs:
    """The inputs for `flavour` from the package list and hook of this version of edgepop."""
    return BuildInputs(
        flavour=flavour,
        packages=package_list(flavour),
        hook=customize_hook(flavour),
        sources=tuple(sources) if sources is not None else host_apt_sources(),
    )


def mmdebstrap_argv(inputs: BuildInputs, target: Path) -> list[str]:
    """The mmdebstrap command line; the `.tar.zst` suffix of `target` selects a zstd tarball."""
    argv = [
        "mmdebstrap",
        f"--variant={inputs.variant}",
        "--mode=root",
        f"--include={','.join(inputs.packages)}",
    ]
    argv += [f"--dpkgopt={opt}" for opt in inputs.dpkg_opts]
    argv += [f"--customize-hook={inputs.hook}", inputs.suite, str(target)]
    argv += list(inputs.sources)
    return argv


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds of the same tarball (two test runs, CI and a developer) on one machine."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_rootfs(flavour: Flavour, cache_dir: Path, *, sources: Sequence[str] | None = None) -> Path:
    """Return the cached rootfs tarball for `flavour`, building it if it is missing.

    `pxe` is built with mmdebstrap; `container` is that same rootfs with the kernel's files left out
    (`container_rootfs`), so the lab's boxes run exactly what bare servers boot. The build writes to a
    partial file and renames it into place, so an interrupted build never leaves a tarball that a
    later run would take for a cache hit.
    """
    if flavour == "container":
        return container_rootfs(build_rootfs("pxe", cache_dir, sources=sources), cache_dir)
    inputs = build_inputs(flavour, sources)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / inputs.tarball_name()
    if tarball.is_file():
        log.info("cached: %s", tarball)
        return tarball
    _require_tools(BUILD_TOOLS)
    with _locked(cache_dir / ".build.lock"):
        if tarball.is_file():  # another process built it while we waited for the lock
            log.info("cached: %s", tarball)
            return tarball
        partial = cache_dir / f".{tarball.name}.partial-{os.getpid()}{TARBALL_SUFFIX}"
        log.info(
            "building %s image (%d packages) with mmdebstrap; this takes 30-60 s",
            flavour,
            len(inputs.packages),
        )
        started = time.monotonic()
        try:
            _run(mmdebstrap_argv(inputs, partial), timeout=_BUILD_TIMEOUT_S)
            os.replace(partial, tarball)
        finally:
            partial.unlink(missing_ok=True)
        size_mb = tarball.stat().st_size / 1e6
        log.info("built %s (%.0f MB) in %.0f s", tarball, size_mb, time.monotonic() - started)
    return tarball


# --- the container rootfs: the pxe rootfs without the kernel ------------------------------------------

CONTAINER_FORMAT: Final = 1
"""Bump when the derivation changes in a way the lists below do not capture."""

CONTAINER_DROPPED: Final[tuple[str, ...]] = (
    # A container runs on the host's kernel: the kernel, its modules and the RAM-boot entry point are
    # dead weight there (the modules alone are most of the pxe rootfs).
    "./boot",
    "./usr/lib/modules",
    "./init",
)
CONTAINER_MASKED: Final[tuple[str, ...]] = (
    # podman configures a container's interfaces itself, and nothing in the lab waits for
    # network-online: wait-online would hold boot for its 2 min timeout and then fail.
    "systemd-networkd-wait-online.service",
)


def container_tarball_name(pxe: Path) -> str:
    """Named by a hash of the pxe tarball's name (itself a content hash) and the derivation."""
    doc = {"pxe": pxe.name, "format": CONTAINER_FORMAT, "dropped": CONTAINER_DROPPED, "masked": CONTAINER_MASKED}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return f"edgepop-container-{SUITE}-{digest[:HASH_LEN]}{TARBALL_SUFFIX}"


def _dropped(name: str) -> bool:
    return any(name == d or name.startswith(d + "/") for d in CONTAINER_DROPPED)


def _derive(source: Path, target: Path) -> None:
    """Stream `source` into `target` (both zstd tarballs) without the dropped paths, plus the masks.
    Members are copied with their PAX headers, so ownership, modes and file capabilities survive."""
    unpack = subprocess.Popen(["zstd", "-dcq", str(source)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with target.open("wb") as out:
        pack = subprocess.Popen(["zstd", "-qc", "-T0"], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE)
        assert unpack.stdout is not None and pack.stdin is not None
        try:
            with (
                tarfile.open(fileobj=unpack.stdout, mode="r|") as src,
                tarfile.open(fileobj=pack.stdin, mode="w|", format=tarfile.PAX_FORMAT) as dst,
            ):
                for member in src:
                    if _dropped(member.name):
                        continue
                    dst.addfile(member, src.extractfile(member) if member.isreg() else None)
                for unit in CONTAINER_MASKED:
                    mask = tarfile.TarInfo(f"./etc/systemd/system/{unit}")
                    mask.type, mask.linkname, mask.mode = tarfile.SYMTYPE, "/dev/null", 0o777
                    dst.addfile(mask)
        finally:
            pack.stdin.close()
            pack_rc, unpack_rc = pack.wait(_BUILD_TIMEOUT_S), unpack.wait(_BUILD_TIMEOUT_S)
    for argv, proc, rc in ((["zstd", "-dcq", str(source)], unpack, unpack_rc), (["zstd", "-qc"], pack, pack_rc)):
        if rc != 0:
            assert proc.stderr is not None
            raise ImageBuildError(argv, rc, proc.stderr.read().decode(errors="replace"))


def container_rootfs(pxe: Path, cache_dir: Path) -> Path:
    """The lab's container rootfs, derived from the pxe tarball `pxe` (cached beside it)."""
    tarball = cache_dir / container_tarball_name(pxe)
    if tarball.is_file():
        log.info("cached: %s", tarball)
        return tarball
    _require_tools({"zstd": "zstd"})
    with _locked(cache_dir / ".build.lock"):
        if tarball.is_file():
            return tarball
        partial = cache_dir / f".{tarball.name}.partial-{os.getpid()}{TARBALL_SUFFIX}"
        started = time.monotonic()
        try:
            _derive(pxe, partial)
            os.replace(partial, tarball)
        finally:
            partial.unlink(missing_ok=True)
        log.info(
            "derived %s from %s without the kernel (%.0f MB) in %.0f s",
            tarball.name,
            pxe.name,
            tarball.stat().st_size / 1e6,
            time.monotonic() - started,
        )
    return tarball


# --- podman --------------------------------------------------------------------------------------------


def default_tag(tarball: Path) -> str:
    """`localhost/edgepop-base:<hash>` where hash is the short content hash in the tarball's name."""
    match = _TARBALL_RE.match(tarball.name)
    if not match:
        raise ValueError(f"{tarball.name} is not an edgepop rootfs tarball name")
    return f"{IMAGE_REPO}:{match['digest'][:TAG_HASH_LEN]}"


CONTAINER_CHANGES: Final[tuple[str, ...]] = (
    # systemd is PID 1 so the lab's boxes run the same units as metal; podman's --systemd=always
    # then mounts the cgroup, /run and /tmp the way systemd expects.
    'CMD ["/sbin/init"]',
    # systemd's clean shutdown signal (SIGTERM would only make it re-execute itself).
    "STOPSIGNAL SIGRTMIN+3",
    # systemd and our units detect the container through this; podman sets it too, images by hand may not.
    "ENV container=podman",
)


def podman_import_argv(tarball: Path, tag: str) -> list[str]:
    """`podman import` with the image config systemd-as-PID-1 needs."""
    argv = ["podman", "import", "--quiet"]
    for change in CONTAINER_CHANGES:
        argv += ["--change", change]
    argv += ["--change", f"LABEL org.edgepop.rootfs={tarball.name}"]
    argv += ["--message", f"edgepop rootfs {tarball.name}", str(tarball), tag]
    return argv


def image_exists(tag: str) -> bool:
    """Whether podman already has `tag` (exit 0 = yes, 1 = no, anything else is an error)."""
    proc = _run(["podman", "image", "exists", tag], timeout=_PODMAN_TIMEOUT_S, ok_codes=(0, 1))
    return proc.returncode == 0


def import_container_image(tarball: Path, tag: str | None = None) -> str:
    """Import `tarball` into podman as `tag` unless the tag exists already; return the tag.

    The tag embeds the content hash, so an existing tag is the same image and re-importing it would
    only cost time (and leave a dangling copy).
    """
    tag = tag or default_tag(tarball)
    if image_exists(tag):
        log.info("cached: podman image %s", tag)
        return tag
    started = time.monotonic()
    proc = _run(podman_import_argv(tarball, tag), timeout=_PODMAN_TIMEOUT_S)
    log.info(
        "imported %s as %s (%s) in %.1f s",
        tarball.name,
        tag,
        proc.stdout.strip()[:12],
        time.monotonic() - started,
    )
    return tag
