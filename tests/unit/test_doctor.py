"""edgepop doctor: names what a machine lacks; its list, setup.sh and the tests' prerequisites agree."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from edgepop import doctor
from edgepop.cli import main

REPO = Path(__file__).resolve().parents[2]


def _setup_packages() -> set[str]:
    text = (REPO / "scripts" / "setup.sh").read_text()
    block = re.search(r"APT_PACKAGES=\((.*?)\n\)", text, re.S)
    assert block, "scripts/setup.sh has no APT_PACKAGES=( ... ) list"
    return {word for line in block.group(1).splitlines() for word in line.split("#")[0].split()}


def test_every_program_comes_from_setup_or_the_base_image() -> None:
    setup = _setup_packages()
    for prog in doctor.PROGRAMS:
        assert prog.package in setup | doctor.BASE_PACKAGES, f"{prog.name}: {prog.package} is installed by nobody"


def test_every_package_setup_installs_is_checked() -> None:
    checked = {prog.package for prog in doctor.PROGRAMS}
    assert _setup_packages() - checked == set()


def test_the_tools_lab_and_vm_tests_need_are_checked() -> None:
    names = {Path(prog.name).name for prog in doctor.PROGRAMS}
    needed: set[str] = set()
    for test in [*(REPO / "tests" / "lab").glob("*.py"), *(REPO / "tests" / "vm").glob("*.py")]:
        text = test.read_text()
        for group in re.findall(r"(?:TOOLS = |for t in |for tool in )\(([^)]*)\)", text):
            needed |= set(re.findall(r'"([a-z0-9_.-]+)"', group))
        needed |= set(re.findall(r'shutil\.which\("([a-z0-9_.-]+)"\)', text))
    assert needed, "found no prerequisite lists in tests/lab and tests/vm"
    # the health-checker comparison installs its own tool into a venv; the rest must be checked
    assert needed - names == set()


def test_missing_programs_are_named_with_their_package() -> None:
    found = doctor.check_programs(which=lambda name: None if name in {"nft", "iptables"} else f"/usr/bin/{name}")
    missing = {f.check: f for f in found if not f.ok}
    assert set(missing) == {"program nft", "program iptables"}
    assert missing["program iptables"].fix.startswith("apt-get install iptables")
    assert "netavark" in missing["program iptables"].detail
    assert missing["program nft"].fix.startswith("apt-get install nftables")


def test_not_root_is_a_finding() -> None:
    assert not doctor.check_root(euid=1000).ok
    assert doctor.check_root(euid=0).ok


def test_kernel_probe_failure_is_reported() -> None:
    def run(argv):  # type: ignore[no-untyped-def]
        failed = "vxlan" in argv[-1]
        return subprocess.CompletedProcess(argv, 2 if failed else 0, "", "RTNETLINK answers: Not supported\n")

    found = {f.check: f for f in doctor.check_kernel(run)}
    assert not found["kernel vxlan"].ok and found["kernel vxlan"].detail == "RTNETLINK answers: Not supported"
    assert found["kernel veth"].ok


def test_podman_on_the_cni_backend_is_reported() -> None:
    def run(argv):  # type: ignore[no-untyped-def]
        return subprocess.CompletedProcess(argv, 0, "cni\n", "")

    (finding,) = doctor.check_podman(run)
    assert not finding.ok and "cni" in finding.detail and "make setup" in finding.fix


def test_cli_exits_69_and_lists_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "_which", lambda name: None if name == "dnsmasq" else f"/usr/bin/{name}")
    monkeypatch.setattr(doctor, "check_kernel", lambda run=None: [])
    monkeypatch.setattr(doctor, "check_podman", lambda run=None: [doctor.Finding("podman backend", True, "netavark")])
    assert main(["doctor", "--quiet"]) == 69
    out = capsys.readouterr()
    assert "MISSING  program dnsmasq" in out.out and "apt-get install dnsmasq-base" in out.out
    assert "program ip " not in out.out  # --quiet prints only what is missing
    assert main(["doctor", "--json"]) == 69
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [c["check"] for c in report["checks"] if not c["ok"]] == ["program dnsmasq"]


def test_this_machine_after_setup_has_everything() -> None:
    """`make test` runs setup first: on its machine every check passes (else the labs cannot run)."""
    missing = [f"{f.check}: {f.detail}" for f in doctor.diagnose() if not f.ok]
    assert missing == []
