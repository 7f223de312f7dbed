"""EOS over SSH: NAPALM's silent rejected lines, the engine's guard, and the netmiko bootstrap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sims.eos_eapi import EapiServer
from sims.eos_model import EosDevice
from sims.eos_ssh import SshServer

from edgepop.cli import main
from edgepop.netdev.bootstrap import enable_eapi
from edgepop.netdev.drivers import Target, opener
from edgepop.netdev.errors import AuthenticationFailed, ConfigRejected, DeviceUnreachable
from edgepop.netdev.push import PushRequest, push_config

BASE = "hostname sw1\nmanagement api http-commands\n   no shutdown\n!\n"
GOOD = "interface Ethernet1\n   description fra1-srv01:ext0\n"
BAD = GOOD + "   lacp timer turbo\n"


@pytest.fixture
def ssh_switch() -> Iterator[tuple[EosDevice, SshServer]]:
    dev = EosDevice(BASE, reject=[r"turbo"])
    srv = SshServer(dev).start()
    try:
        yield dev, srv
    finally:
        srv.stop()


def ssh_target(srv: SshServer, password: str = "admin") -> Target:
    return Target("sw1", "eos", "127.0.0.1", "admin", password, port=srv.port, transport="ssh", timeout=10)


def request(config: str, **kwargs: object) -> PushRequest:
    return PushRequest(host="sw1", config=config, bgp_wait=0.5, poll_interval=0.1, **kwargs)  # type: ignore[arg-type]


def test_napalm_alone_does_not_notice_a_rejected_line_over_ssh(ssh_switch: tuple[EosDevice, SshServer]) -> None:
    """Why drivers.guard_eos_ssh exists: without it the refused line simply vanishes from the diff."""
    from napalm import get_network_driver

    dev, srv = ssh_switch
    driver = get_network_driver("eos")(
        "127.0.0.1", "admin", "admin", timeout=10, optional_args={"port": srv.port, "transport": "ssh"}
    )
    driver.open()
    try:
        driver.load_merge_candidate(config=BAD)  # no exception
        diff = driver.compare_config()
        assert "+   description fra1-srv01:ext0" in diff
        assert "turbo" not in diff
        assert dev.commands_matching(r"^lacp timer turbo$")
    finally:
        driver.close()


def test_rejected_line_over_ssh_fails_before_any_commit(ssh_switch: tuple[EosDevice, SshServer]) -> None:
    dev, srv = ssh_switch
    before = dev.running_text()
    with pytest.raises(ConfigRejected, match="lacp timer turbo"):
        push_config(request(BAD), opener(ssh_target(srv)))
    assert dev.running_text() == before
    assert not dev.commands_matching(r"commit")
    assert dev.sessions == {}


def test_merge_over_ssh_commits_confirms_and_second_run_is_clean(ssh_switch: tuple[EosDevice, SshServer]) -> None:
    dev, srv = ssh_switch
    res = push_config(request(GOOD, expect_hostname="sw1"), opener(ssh_target(srv)))
    assert res.committed and "+   description fra1-srv01:ext0" in res.diff
    assert "description fra1-srv01:ext0" in dev.running_text()
    assert dev.commands_matching(r"^configure session \S+ commit timer 00:05:00$")
    again = push_config(request(GOOD), opener(ssh_target(srv)))
    assert not again.changed and not again.committed


def test_ssh_wrong_password(ssh_switch: tuple[EosDevice, SshServer]) -> None:
    _, srv = ssh_switch
    with pytest.raises(AuthenticationFailed):
        push_config(request(GOOD), opener(ssh_target(srv, password="wrong")))


def test_bootstrap_turns_on_eapi_on_a_factory_switch_then_the_push_uses_it() -> None:
    dev = EosDevice("hostname localhost\n")
    ssh, eapi = SshServer(dev).start(), EapiServer(dev).start()
    eapi_target = Target("sw1", "eos", "127.0.0.1", "admin", "admin", port=eapi.port, timeout=10)
    try:
        with pytest.raises(DeviceUnreachable):
            push_config(request(GOOD), opener(eapi_target))

        checked = enable_eapi("sw1", "127.0.0.1", "admin", "admin", port=ssh.port, timeout=10, check=True)
        assert checked.changed and not checked.eapi_enabled and not dev.eapi_enabled()
        # show version through TextFSM (ntc-templates' arista_eos_show_version)
        assert checked.facts["model"] == "vEOS-lab" and checked.facts["image"] == "4.31.2F"

        done = enable_eapi("sw1", "127.0.0.1", "admin", "admin", port=ssh.port, timeout=10)
        assert done.changed and done.eapi_enabled and dev.eapi_enabled()
        assert dev.startup.has("management api http-commands", "no shutdown"), "saved to startup-config"
        assert not enable_eapi("sw1", "127.0.0.1", "admin", "admin", port=ssh.port, timeout=10).changed

        res = push_config(request(GOOD), opener(eapi_target))
        assert res.committed
    finally:
        ssh.stop()
        eapi.stop()


def test_bootstrap_cli(
    ssh_switch: tuple[EosDevice, SshServer], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dev, srv = ssh_switch
    dev.running = type(dev.running).parse("hostname sw1\n")
    monkeypatch.setenv("EDGEPOP_NETDEV_PASSWORD", "admin")
    assert main(["netdev", "bootstrap", "127.0.0.1", "--name", "sw1", "--port", str(srv.port), "--timeout", "10"]) == 0
    assert "sw1: Arista vEOS-lab EOS 4.31.2F: eAPI enabled and saved" in capsys.readouterr().out
    monkeypatch.setenv("EDGEPOP_NETDEV_PASSWORD", "wrong")
    assert main(["netdev", "bootstrap", "127.0.0.1", "--port", str(srv.port), "--timeout", "10"]) == 77
    assert "authentication failed" in capsys.readouterr().err
