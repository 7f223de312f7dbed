"""playbooks/network.yml pushes an EOS switch of the fra1 example through the role netdev.

ansible-playbook runs for real (validate, derive, render, the edgepop_netdev action); the switch is
the eAPI simulator on 127.0.0.1, reached by overriding the role's address, port and login.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sims.eos_eapi import EapiServer
from sims.eos_model import EosDevice

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "hostname localhost\nmanagement api http-commands\n   no shutdown\n!\n"


@pytest.fixture
def switch() -> Iterator[tuple[EosDevice, EapiServer]]:
    dev = EosDevice(FACTORY)
    srv = EapiServer(dev).start()
    try:
        yield dev, srv
    finally:
        srv.stop()


def playbook(srv: EapiServer, archive: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    overrides = (
        f"netdev__address=127.0.0.1 netdev__port={srv.port} netdev__username=admin "
        f"netdev__password=admin netdev__archive_dir={archive} netdev__bgp_wait=1"
    )
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(ROOT / "inventory/examples/fra1"),
            str(ROOT / "playbooks/network.yml"),
            "--limit",
            "fra1-sw01",
            "-e",
            overrides,
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def recap(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("fra1-sw01 ") and "ok=" in line)


def test_check_diff_then_commit_then_nothing_to_do(switch: tuple[EosDevice, EapiServer], tmp_path: Path) -> None:
    dev, srv = switch
    checked = playbook(srv, tmp_path, "--check", "--diff")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "changed=1" in recap(checked.stdout)
    assert "+hostname fra1-sw01" in checked.stdout and "-hostname localhost" in checked.stdout
    assert "hostname localhost" in dev.running_text()
    assert not dev.commands_matching(r"commit")

    pushed = playbook(srv, tmp_path)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "changed=1" in recap(pushed.stdout)
    running = dev.running_text()
    assert "hostname fra1-sw01" in running and "interface Port-Channel1" in running
    archives = list((tmp_path / "fra1-sw01").iterdir())
    assert len(archives) == 1 and "hostname localhost" in archives[0].read_text()
    assert len(dev.commands_matching(r"^configure session \S+ commit timer 00:05:00$")) == 1

    again = playbook(srv, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in recap(again.stdout)
    assert dev.running_text() == running


def test_rejected_line_fails_the_play_and_commits_nothing(switch: tuple[EosDevice, EapiServer], tmp_path: Path) -> None:
    dev, srv = switch
    dev.reject = [re.compile(r"^lacp timer fast$")]
    result = playbook(srv, tmp_path)
    assert result.returncode != 0
    assert "failed=1" in recap(result.stdout)
    assert "device rejected the candidate" in result.stdout
    assert "lacp timer fast" in result.stdout
    assert dev.running_text().startswith("hostname localhost")
    assert not dev.commands_matching(r"commit")
    assert not (tmp_path / "fra1-sw01").exists()
