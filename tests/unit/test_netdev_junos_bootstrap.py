"""First contact with a factory-fresh Junos router: NETCONF turned on over the SSH CLI (netmiko's
`juniper_junos` against tests/sims/junos_ssh.py), then NAPALM's junos driver over NETCONF
(tests/sims/junos_netconf.py) on the same simulated device."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from sims.junos_model import JunosDevice
from sims.junos_netconf import MODEL, VERSION, NetconfServer
from sims.junos_ssh import JunosSshServer

from edgepop.cli import main
from edgepop.netdev.bootstrap import enable_netconf
from edgepop.netdev.drivers import Target, opener
from edgepop.netdev.errors import AuthenticationFailed, ConfigLocked, ConfigRejected, DeviceUnreachable
from edgepop.netdev.push import PushRequest, push_config

FACTORY = """\
system {
    root-authentication {
        encrypted-password "$6$factory";
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
MERGE = 'interfaces {\n    xe-0/1/0 {\n        description "fra1-srv01:ext0";\n    }\n}\n'
USERS = {"admin": "admin", "root": "rootpw"}

Sim = Callable[..., tuple[JunosDevice, JunosSshServer, NetconfServer]]


@pytest.fixture
def sim() -> Iterator[Sim]:
    running: list[tuple[JunosSshServer, NetconfServer]] = []

    def make(committed: str = FACTORY, **kwargs: object) -> tuple[JunosDevice, JunosSshServer, NetconfServer]:
        dev = JunosDevice(committed, hostname_default="router", **kwargs)  # type: ignore[arg-type]
        ssh = JunosSshServer(dev, USERS).start()
        netconf = NetconfServer(dev).start()
        running.append((ssh, netconf))
        return dev, ssh, netconf

    try:
        yield make
    finally:
        for ssh, netconf in running:
            ssh.stop()
            netconf.stop()


def bootstrap(ssh: JunosSshServer, *, user: str = "admin", check: bool = False) -> object:
    return enable_netconf("r1", "127.0.0.1", user, USERS[user], port=ssh.port, timeout=10, check=check)


def push(netconf: NetconfServer) -> object:
    target = Target("r1", "junos", "127.0.0.1", "admin", "admin", port=netconf.port, timeout=5)
    request = PushRequest(host="r1", config=MERGE, bgp_wait=0.5, poll_interval=0.1, revert_in=60, revert_multiple=60)
    return push_config(request, opener(target))


def test_factory_router_gets_netconf_then_napalm_pushes_over_it(sim: Sim) -> None:
    dev, ssh, netconf = sim()
    with pytest.raises(DeviceUnreachable, match="while connecting"):
        push(netconf)  # NETCONF is off on a factory-fresh box
    before = (dev.running_text(), len(dev.history))

    checked = bootstrap(ssh, check=True)
    assert checked.changed and not checked.enabled  # type: ignore[attr-defined]
    assert (dev.running_text(), len(dev.history)) == before and not dev.candidate_modified()
    # show version through TextFSM (ntc-templates' juniper_junos_show_version)
    facts = checked.facts  # type: ignore[attr-defined]
    assert (facts["hostname"], facts["model"], facts["junos_version"]) == ("router", MODEL, VERSION)

    done = bootstrap(ssh)
    assert done.changed and done.enabled  # type: ignore[attr-defined]
    assert dev.netconf_enabled() and len(dev.history) == before[1] + 1
    assert dev.running_text() == FACTORY.replace(
        "    }\n}\ninterfaces",
        "    }\n    services {\n        netconf {\n            ssh;\n        }\n    }\n}\ninterfaces",
    )
    cli = [line.split(" ", 2)[2] for line in dev.log if line.startswith("cli admin ")]
    assert "set system services netconf ssh" in cli and "commit and-quit" in cli
    assert cli.count("set system services netconf ssh") == 1

    again = bootstrap(ssh)
    assert not again.changed and again.enabled  # type: ignore[attr-defined]
    assert len(dev.history) == before[1] + 1, "a second run commits nothing"

    assert push(netconf).committed  # type: ignore[attr-defined]


def test_root_starts_in_the_shell_and_netmiko_enters_the_cli(sim: Sim) -> None:
    dev, ssh, _ = sim()
    done = bootstrap(ssh, user="root")
    assert done.changed and dev.netconf_enabled()  # type: ignore[attr-defined]
    assert "cli root cli" in dev.log, "the session went through the FreeBSD shell first"


def test_a_refused_line_commits_nothing_and_leaves_no_candidate(sim: Sim) -> None:
    dev, ssh, _ = sim(reject=[r"^ssh$"])
    with pytest.raises(ConfigRejected, match="enabling NETCONF was refused"):
        bootstrap(ssh)
    assert len(dev.history) == 1 and not dev.netconf_enabled() and not dev.candidate_modified()
    assert not any(line.endswith(" commit and-quit") for line in dev.log)


def test_a_configuration_locked_by_netconf_fails_and_changes_nothing(sim: Sim) -> None:
    dev, ssh, _ = sim()
    dev.holder = 4321  # another session's exclusive lock
    with pytest.raises(ConfigLocked, match="locked by another session"):
        bootstrap(ssh)
    assert len(dev.history) == 1 and not dev.netconf_enabled() and not dev.candidate_modified()


def test_wrong_password_and_nothing_listening(sim: Sim) -> None:
    dev, ssh, _ = sim()
    with pytest.raises(AuthenticationFailed):
        enable_netconf("r1", "127.0.0.1", "admin", "wrong", port=ssh.port, timeout=10)
    assert dev.log == []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DeviceUnreachable):
        enable_netconf("r1", "127.0.0.1", "admin", "admin", port=port, timeout=3)


def test_bootstrap_cli_for_junos(sim: Sim, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dev, ssh, _ = sim()
    args = ["netdev", "bootstrap", "--platform", "junos", "127.0.0.1", "--name", "r1", "--port", str(ssh.port)]
    args += ["--timeout", "10"]
    monkeypatch.setenv("EDGEPOP_NETDEV_PASSWORD", "admin")
    assert main([*args, "--check"]) == 0
    assert (
        f"r1: Juniper {MODEL} Junos {VERSION}: NETCONF is off and would be enabled (check mode"
        in capsys.readouterr().out
    )
    assert not dev.netconf_enabled()
    assert main(args) == 0
    assert f"r1: Juniper {MODEL} Junos {VERSION}: NETCONF enabled and committed" in capsys.readouterr().out
    assert main(args) == 0
    assert "NETCONF already enabled, nothing changed" in capsys.readouterr().out
    monkeypatch.setenv("EDGEPOP_NETDEV_PASSWORD", "wrong")
    assert main(args) == 77
    assert "authentication failed" in capsys.readouterr().err
    dev.holder = 4321
    dev.load("delete: system;", "merge")
    dev.commit()
    monkeypatch.setenv("EDGEPOP_NETDEV_PASSWORD", "admin")
    assert main(args) == 70
    assert "locked by another session" in capsys.readouterr().err
