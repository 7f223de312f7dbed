"""playbooks/network.yml pushes an EOS switch and a Junos router of the fra1 example through the role netdev.

ansible-playbook runs for real (validate, derive, render, the edgepop_netdev action); the switch is
the eAPI simulator and the router the NETCONF simulator on 127.0.0.1, reached by overriding the
role's address, port and login.
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
from sims.junos_model import JunosDevice
from sims.junos_netconf import NetconfServer

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


def playbook(
    srv: EapiServer | NetconfServer, archive: Path, *extra: str, host: str = "fra1-sw01"
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/network.yml --limit HOST against the simulator `srv`.

    The example inventory's vault is encrypted with a password that is not in the repository; the
    BGP keys the routers' configs resolve from it are given as extra vars instead.
    """
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
            host,
            "-e",
            overrides,
            "-e",
            "vault_bgp_transit_a=sim-transit-a-key vault_bgp_pni_isp_a=sim-pni-isp-a-key",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def recap(out: str, host: str = "fra1-sw01") -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{host} ") and "ok=" in line)


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


JUNOS_FACTORY = """\
system {
    host-name Amnesiac;
    services {
        netconf {
            ssh;
        }
    }
}
interfaces {
    fxp0 {
        unit 0 {
            family inet {
                address 203.0.113.10/25;
            }
        }
    }
}
"""


@pytest.fixture
def router() -> Iterator[tuple[JunosDevice, NetconfServer]]:
    dev = JunosDevice(JUNOS_FACTORY, minute=5.0)
    srv = NetconfServer(dev).start()
    try:
        yield dev, srv
    finally:
        srv.stop()


def test_junos_router_check_diff_then_commit_then_nothing_to_do(
    router: tuple[JunosDevice, NetconfServer], tmp_path: Path
) -> None:
    dev, srv = router
    checked = playbook(srv, tmp_path, "--check", "--diff", host="fra1-rtr01")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "changed=1" in recap(checked.stdout, "fra1-rtr01")
    assert "-   host-name Amnesiac;" in checked.stdout and "+   host-name fra1-rtr01;" in checked.stdout
    assert "[edit]" in checked.stdout and "+   protocols {" in checked.stdout
    assert 'authentication-key "********";' in checked.stdout, "the device's diff is shown with secrets masked"
    assert "host-name Amnesiac;" in dev.running_text()
    assert not any("commit-configuration" in line for line in dev.log)

    pushed = playbook(srv, tmp_path, host="fra1-rtr01")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "changed=1" in recap(pushed.stdout, "fra1-rtr01")
    running = dev.running_text()
    assert "host-name fra1-rtr01;" in running and "group servers {" in running and "fxp0 {" in running
    assert 'authentication-key "sim-transit-a-key";' in running, "vault references are resolved before the push"
    assert "sim-transit-a-key" not in checked.stdout + pushed.stdout, "secrets stay out of the output"
    archives = list((tmp_path / "fra1-rtr01").iterdir())
    assert len(archives) == 1 and "host-name Amnesiac;" in archives[0].read_text()
    commits = [line.split(" ", 1)[1] for line in dev.log if " commit-configuration" in line]
    assert commits == ["commit-configuration confirmed confirm-timeout=5", "commit-configuration"]

    again = playbook(srv, tmp_path, host="fra1-rtr01")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in recap(again.stdout, "fra1-rtr01")
    assert dev.running_text() == running
