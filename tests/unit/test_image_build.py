"""Unit tests for the image build: package list, content hash, cache, and the exact commands run.

No mmdebstrap or podman runs here: `subprocess.run` is replaced by a recorder, so these tests pin the
argv the build would execute and prove that a cache hit executes nothing.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pytest import MonkeyPatch

from edgepop.image import __main__ as cli
from edgepop.image import build, packages
from edgepop.image.build import BuildInputs, ImageBuildError
from edgepop.image.container import podman_run_argv
from edgepop.image.hook import customize_hook

RUN = "edgepop.image.build.subprocess.run"
SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)


@pytest.fixture(autouse=True)
def _tools_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build checks for mmdebstrap and zstd first; unit tests must not depend on the host having them."""
    monkeypatch.setattr("edgepop.image.build.shutil.which", lambda tool: f"/usr/bin/{tool}")


class Recorder:
    """Stands in for `subprocess.run`: records each argv and answers from a script of results."""

    def __init__(self, *results: tuple[int, str, str], effect: Callable[[list[str]], None] | None = None):
        self.calls: list[list[str]] = []
        self._results = list(results)
        self._effect = effect

    def __call__(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs.get("check") is False and kwargs.get("capture_output") is True
        assert "shell" not in kwargs
        self.calls.append(list(argv))
        if self._effect is not None:
            self._effect(list(argv))
        code, out, err = self._results.pop(0) if self._results else (0, "", "")
        return subprocess.CompletedProcess(list(argv), code, out, err)


def _forbid(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"no command may run on a cache hit, got {argv}")


def _inputs(**changes: Any) -> BuildInputs:
    return dataclasses.replace(build.build_inputs("pxe", SOURCES), **changes)


def _touch_target(argv: list[str]) -> None:
    """What a successful mmdebstrap does: write the tarball named right after the suite."""
    target = Path(argv[argv.index(packages.SUITE) + 1])
    target.write_bytes(b"rootfs")


# --- package list ----------------------------------------------------------------------------------


def test_package_list_is_sorted_unique_and_the_same_for_both_flavours() -> None:
    pxe = packages.package_list("pxe")
    assert list(pxe) == sorted(set(pxe))
    assert {"systemd-sysv", "openssh-server", "python3-apt", "bird2", "dbus", "iproute2"} <= set(pxe)
    assert {"linux-image-amd64", "initramfs-tools"} <= set(pxe)
    # the container rootfs is the pxe one without the kernel's files: the same packages installed
    assert packages.package_list("container") == pxe


def test_unknown_flavour_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown image flavour 'vm'"):
        packages.package_list("vm")  # type: ignore[arg-type]


def test_every_group_says_why() -> None:
    for flavour in packages.FLAVOURS:
        for group in packages.groups(flavour):
            assert group.why and group.packages, group.name


# --- content hash ---------------------------------------------------------------------------------


def test_digest_is_stable_and_ignores_package_order() -> None:
    base = _inputs()
    assert base.digest() == _inputs().digest()
    assert base.digest() == _inputs(packages=tuple(reversed(base.packages))).digest()
    assert len(base.digest()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"packages": (*packages.package_list("pxe"), "tcpdump")},
        {"packages": packages.package_list("pxe")[1:]},
        {"flavour": "container"},
        {"hook": customize_hook("pxe") + "\ntrue\n"},
        {"sources": SOURCES[:1]},
        {"format_version": build.FORMAT_VERSION + 1},
        {"dpkg_opts": ()},
    ],
    ids=["package-added", "package-removed", "flavour", "hook", "sources", "format", "dpkg-opts"],
)
def test_any_input_change_changes_the_hash(change: dict[str, Any]) -> None:
    base = _inputs()
    changed = _inputs(**change)
    assert changed.digest() != base.digest()
    assert changed.tarball_name() != base.tarball_name()


def test_only_the_pxe_rootfs_has_a_hook() -> None:
    assert 'ln -sf sbin/init "$root/init"' in build.build_inputs("pxe", SOURCES).hook
    with pytest.raises(ValueError, match="derived from the pxe one"):
        build.build_inputs("container", SOURCES)


def test_tarball_name_and_default_tag() -> None:
    inputs = _inputs()
    name = inputs.tarball_name()
    digest = inputs.digest()
    assert name == f"edgepop-pxe-bookworm-{digest[:16]}.tar.zst"
    assert build.default_tag(Path("/x") / name) == f"localhost/edgepop-base:{digest[:12]}"
    with pytest.raises(ValueError, match="not an edgepop rootfs tarball"):
        build.default_tag(Path("rootfs.tar"))


# --- argv -----------------------------------------------------------------------------------------


def test_mmdebstrap_argv_is_exact() -> None:
    inputs = _inputs()
    target = Path("/cache/out.tar.zst")
    assert build.mmdebstrap_argv(inputs, target) == [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        "--include=" + ",".join(packages.package_list("pxe")),
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/lintian/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--customize-hook=" + customize_hook("pxe"),
        "bookworm",
        "/cache/out.tar.zst",
        *SOURCES,
    ]


def test_hook_does_what_the_image_needs() -> None:
    hook = customize_hook("pxe")
    assert hook.startswith("set -eu\n")
    assert ': > "$root/etc/machine-id"' in hook
    assert "systemctl mask networking.service" in hook
    assert "systemctl enable systemd-networkd.service ssh.service" in hook
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in hook
    assert "usermod --shell /bin/bash root" in hook


def test_podman_import_argv_is_exact() -> None:
    tarball = Path("/cache/edgepop-container-bookworm-0123456789abcdef.tar.zst")
    assert build.podman_import_argv(tarball, "localhost/edgepop-base:0123456789ab") == [
        "podman",
        "import",
        "--quiet",
        "--change",
        'CMD ["/sbin/init"]',
        "--change",
        "STOPSIGNAL SIGRTMIN+3",
        "--change",
        "ENV container=podman",
        "--change",
        "LABEL org.edgepop.rootfs=edgepop-container-bookworm-0123456789abcdef.tar.zst",
        "--message",
        "edgepop rootfs edgepop-container-bookworm-0123456789abcdef.tar.zst",
        str(tarball),
        "localhost/edgepop-base:0123456789ab",
    ]


def test_podman_run_argv_is_exact() -> None:
    assert podman_run_argv(
        "edgepop-test-1",
        "localhost/edgepop-base:0123456789ab",
        network="labnet",
        ips=("198.51.100.5", "2001:db8::5"),
        authorized_keys=Path("/tmp/k.pub"),
        labels=("org.edgepop.lab=test",),
        sysctls=("net.ipv4.ip_forward=1",),
    ) == [
        "podman", "run", "--detach", "--name", "edgepop-test-1", "--hostname", "edgepop-test-1",
        "--runtime", "runc", "--systemd=always",
        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--cap-add", "NET_BROADCAST",
        "--network", "labnet", "--ip", "198.51.100.5", "--ip6", "2001:db8::5",
        "--volume", "/tmp/k.pub:/root/.ssh/authorized_keys:ro",
        "--label", "org.edgepop.lab=test",
        "--sysctl", "net.ipv4.ip_forward=1",
        "localhost/edgepop-base:0123456789ab", "/sbin/init",
    ]  # fmt: skip
    assert podman_run_argv("b", "t")[-4:] == ["--network", "none", "t", "/sbin/init"]


# --- build_rootfs and the cache -------------------------------------------------------------------


def test_cache_hit_skips_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(RUN, _forbid)
    cached = tmp_path / _inputs().tarball_name()
    cached.write_bytes(b"rootfs")
    with caplog.at_level(logging.INFO, logger="edgepop.image.build"):
        assert build.build_rootfs("pxe", tmp_path, sources=SOURCES) == cached
    assert "cached" in caplog.text


def test_cache_miss_runs_mmdebstrap_once_and_renames_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(effect=_touch_target)
    monkeypatch.setattr(RUN, recorder)
    result = build.build_rootfs("pxe", tmp_path / "cache", sources=SOURCES)

    inputs = _inputs()
    assert result == tmp_path / "cache" / inputs.tarball_name()
    assert result.read_bytes() == b"rootfs"
    assert len(recorder.calls) == 1
    partial = Path(recorder.calls[0][recorder.calls[0].index("bookworm") + 1])
    assert partial.parent == tmp_path / "cache" and partial.name.startswith(".")
    assert partial.name.endswith(".tar.zst")
    assert recorder.calls[0] == build.mmdebstrap_argv(inputs, partial)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".build.lock", result.name]

    # The second call is a cache hit.
    monkeypatch.setattr(RUN, _forbid)
    assert build.build_rootfs("pxe", tmp_path / "cache", sources=SOURCES) == result


def test_changed_package_list_builds_a_new_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RUN, Recorder(effect=_touch_target))
    first = build.build_rootfs("pxe", tmp_path, sources=SOURCES)
    monkeypatch.setattr(build, "package_list", lambda flavour: (*packages.package_list(flavour), "tcpdump"))
    recorder = Recorder(effect=_touch_target)
    monkeypatch.setattr(RUN, recorder)
    second = build.build_rootfs("pxe", tmp_path, sources=SOURCES)
    assert second != first and second.is_file() and first.is_file()
    assert len(recorder.calls) == 1 and "tcpdump" in recorder.calls[0][3]


def test_failed_build_raises_with_stderr_tail_and_leaves_no_tarball(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = "\n".join(f"line {i}" for i in range(100)) + "\nE: Unable to locate package bird3\n"
    monkeypatch.setattr(RUN, Recorder((1, "", stderr), effect=_touch_target))
    with pytest.raises(ImageBuildError) as info:
        build.build_rootfs("pxe", tmp_path, sources=SOURCES)
    err = info.value
    assert err.argv[0] == "mmdebstrap" and err.returncode == 1
    assert err.stderr_tail.endswith("E: Unable to locate package bird3")
    assert "line 0\n" not in err.stderr_tail and len(err.stderr_tail.splitlines()) == 20
    assert "mmdebstrap exited with 1\n  command: mmdebstrap --variant=minbase" in str(err)
    assert "'--customize-hook=set -eu\n" in str(err) and "usermod" not in str(err)
    assert [p.name for p in tmp_path.iterdir()] == [".build.lock"]


def test_missing_build_tools_fail_before_anything_runs(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr("edgepop.image.build.shutil.which", lambda tool: None if tool == "zstd" else tool)
    monkeypatch.setattr(RUN, _forbid)
    with pytest.raises(ImageBuildError, match="not installed: apt-get install -y zstd"):
        build.build_rootfs("pxe", tmp_path, sources=SOURCES)


def test_missing_tool_and_timeout_become_image_build_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(RUN, missing)
    with pytest.raises(ImageBuildError, match="podman is not installed"):
        build.image_exists("localhost/edgepop-base:x")

    def slow(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(list(argv), kwargs["timeout"], stderr=b"still importing")

    monkeypatch.setattr(RUN, slow)
    with pytest.raises(ImageBuildError, match="timed out") as info:
        build.image_exists("localhost/edgepop-base:x")
    assert info.value.stderr_tail == "still importing"


# --- podman import ----------------------------------------------------------------------------------

TARBALL = Path("/cache/edgepop-container-bookworm-0123456789abcdef.tar.zst")


def test_import_skipped_when_the_tag_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder((0, "", ""))
    monkeypatch.setattr(RUN, recorder)
    assert build.import_container_image(TARBALL) == "localhost/edgepop-base:0123456789ab"
    assert recorder.calls == [["podman", "image", "exists", "localhost/edgepop-base:0123456789ab"]]


def test_import_runs_when_the_tag_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder((1, "", ""), (0, "sha256:abc\n", ""))
    monkeypatch.setattr(RUN, recorder)
    assert build.import_container_image(TARBALL, "localhost/edgepop-base:lab") == "localhost/edgepop-base:lab"
    assert recorder.calls == [
        ["podman", "image", "exists", "localhost/edgepop-base:lab"],
        build.podman_import_argv(TARBALL, "localhost/edgepop-base:lab"),
    ]


def test_podman_error_is_not_taken_for_a_missing_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RUN, Recorder((125, "", "Error: database is locked")))
    with pytest.raises(ImageBuildError, match="database is locked"):
        build.import_container_image(TARBALL)


# --- apt sources --------------------------------------------------------------------------------------


def test_host_sources_from_deb822_and_one_line_files(tmp_path: Path) -> None:
    listdir = tmp_path / "sources.list.d"
    listdir.mkdir()
    (listdir / "debian.sources").write_text(
        "Types: deb\n"
        "# a comment\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main contrib\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb deb-src\n"
        "URIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/disabled\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Enabled: no\n"
    )
    (listdir / "vendor.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] https://vendor.example/apt vendor-bookworm main\n"
        "deb [ signed-by=/k.gpg ] http://mirror.example/debian bookworm non-free-firmware\n"
    )
    (listdir / "ignored.txt").write_text("deb http://nowhere.example/debian bookworm main\n")
    assert build.host_apt_sources("bookworm", [tmp_path / "sources.list", listdir]) == (
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://mirror.example/debian bookworm-updates main contrib",
        "deb http://mirror.example/debian-security bookworm-security main",
        "deb http://mirror.example/debian bookworm non-free-firmware",
    )


def test_host_sources_fall_back_to_the_debian_mirror(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian bullseye main\n")
    assert build.host_apt_sources("bookworm", [tmp_path / "sources.list"]) == (
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    )


# --- command line -------------------------------------------------------------------------------------


def test_cli_builds_and_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[object] = []
    tarball = tmp_path / "edgepop-container-bookworm-0123456789abcdef.tar.zst"

    def fake_build(flavour: str, cache_dir: Path) -> Path:
        seen.append((flavour, cache_dir))
        return tarball

    def fake_import(path: Path, tag: str | None) -> str:
        seen.append((path, tag))
        return "localhost/edgepop-base:0123456789ab"

    monkeypatch.setattr(cli, "build_rootfs", fake_build)
    monkeypatch.setattr(cli, "import_container_image", fake_import)
    assert cli.main(["build", "--flavour", "container", "--cache", str(tmp_path)]) == 0
    assert seen == [("container", tmp_path), (tarball, None)]
    assert capsys.readouterr().out == f"tarball: {tarball}\nimage: localhost/edgepop-base:0123456789ab\n"


def test_cli_reports_build_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(flavour: str, cache_dir: Path) -> Path:
        raise ImageBuildError(["mmdebstrap", "--variant=minbase"], 1, "E: boom")

    monkeypatch.setattr(cli, "build_rootfs", failing)
    assert cli.main(["build", "--flavour", "pxe", "--cache", str(tmp_path)]) == 1
    assert "error: mmdebstrap exited with 1" in capsys.readouterr().err


# --- the container rootfs, derived from the pxe one -----------------------------------------------


def _fake_pxe_tarball(path: Path) -> None:
    """A tiny stand-in for the pxe rootfs tarball: kernel files, /init, a file with a capability."""

    def add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: Any) -> None:
        info = tarfile.TarInfo(name)
        for key, value in attrs.items():
            setattr(info, key, value)
        info.size = len(data) if info.isreg() else 0
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)

    raw = path.with_suffix("")
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "./boot", type=tarfile.DIRTYPE, mode=0o755)
        add(tar, "./boot/vmlinuz-6.1.0-amd64", b"kernel")
        add(tar, "./usr/lib/modules/6.1.0-amd64/kernel/bonding.ko", b"module")
        add(tar, "./usr/lib/modulesx", b"not the modules directory")
        add(tar, "./init", type=tarfile.SYMTYPE, linkname="sbin/init")
        add(tar, "./etc/hostname", b"", mode=0o644)
        add(tar, "./usr/bin/ping", b"ping", mode=0o755, pax_headers={"SCHILY.xattr.security.capability": "\x01"})
    subprocess.run(["zstd", "-q", "--rm", str(raw), "-o", str(path)], check=True)


def _members(path: Path) -> dict[str, Any]:
    data = subprocess.run(["zstd", "-dcq", str(path)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_container_rootfs_is_the_pxe_one_without_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real `which`: zstd really runs here
    pxe = tmp_path / _inputs().tarball_name()
    _fake_pxe_tarball(pxe)
    monkeypatch.setattr(RUN, _forbid)  # the pxe tarball is cached: mmdebstrap must not run
    container = build.build_rootfs("container", tmp_path, sources=SOURCES)
    monkeypatch.undo()
    assert container.name == build.container_tarball_name(pxe)
    assert build.default_tag(container).startswith("localhost/edgepop-base:")
    members = _members(container)
    assert sorted(members) == [
        "./etc/hostname",
        "./etc/systemd/system/systemd-networkd-wait-online.service",
        "./usr/bin/ping",
        "./usr/lib/modulesx",
    ]
    mask = members["./etc/systemd/system/systemd-networkd-wait-online.service"]
    assert mask.issym() and mask.linkname == "/dev/null"
    assert members["./usr/bin/ping"].pax_headers.get("SCHILY.xattr.security.capability") == "\x01"
    assert members["./usr/bin/ping"].mode == 0o755

    mtime = container.stat().st_mtime_ns
    assert build.build_rootfs("container", tmp_path, sources=SOURCES) == container  # cached
    assert container.stat().st_mtime_ns == mtime
