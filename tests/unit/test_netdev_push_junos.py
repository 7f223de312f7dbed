"""The push engine against the NETCONF simulator, through NAPALM's real `junos` driver, PyEZ and ncclient."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sims.junos_model import JunosDevice, parse, render
from sims.junos_netconf import NetconfServer

from edgepop.netdev.drivers import Target, opener
from edgepop.netdev.errors import (
    AuthenticationFailed,
    ConfigLocked,
    ConfigRejected,
    DeviceUnreachable,
    PostCheckFailed,
)
from edgepop.netdev.push import PushRequest, push_config

REPO = Path(__file__).resolve().parents[2]

BASE = """\
system {
    host-name r1;
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
    xe-0/1/0 {
        description spare;
    }
}
routing-options {
    autonomous-system 64496;
}
protocols {
    bgp {
        group transit {
            type external;
            neighbor 203.0.113.145 {
                peer-as 64501;
            }
        }
    }
}
"""
MERGE = 'interfaces {\n    xe-0/1/0 {\n        description "fra1-srv01:ext0";\n        mtu 1514;\n    }\n}\n'
REPLACE = BASE.replace("description spare;", 'description "fra1-srv01:ext0";').split("protocols {")[0]
NEW_DESCRIPTION = '+   description "fra1-srv01:ext0";'

SimFactory = Callable[..., tuple[JunosDevice, NetconfServer]]


@pytest.fixture
def sim() -> Iterator[SimFactory]:
    servers: list[NetconfServer] = []

    def make(committed: str = BASE, base11: bool = True, **kwargs: object) -> tuple[JunosDevice, NetconfServer]:
        kwargs.setdefault("bgp_remotes", {"203.0.113.145": 64501})
        kwargs.setdefault("minute", 5.0)
        dev = JunosDevice(committed, **kwargs)  # type: ignore[arg-type]
        srv = NetconfServer(dev, base11=base11).start()
        servers.append(srv)
        return dev, srv

    try:
        yield make
    finally:
        for srv in servers:
            srv.stop()


def target(srv: NetconfServer, password: str = "admin") -> Target:
    return Target(
        host="r1", platform="junos", address="127.0.0.1", username="admin", password=password, port=srv.port, timeout=5
    )


def request(config: str, **kwargs: object) -> PushRequest:
    kwargs.setdefault("bgp_wait", 1.0)
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("revert_in", 60)
    return PushRequest(host="r1", config=config, revert_multiple=60, **kwargs)  # type: ignore[arg-type]


def commits(dev: JunosDevice) -> list[str]:
    """The commit RPCs the device received, without the session id."""
    return [line.split(" ", 1)[1] for line in dev.log if line.split(" ", 2)[1:2] == ["commit-configuration"]]


@pytest.mark.parametrize(
    ("mode", "config", "changed"),
    [
        ("merge", MERGE, True),
        ("merge", "interfaces {\n    xe-0/1/0 {\n        description spare;\n    }\n}\n", False),
        ("replace", REPLACE, True),
        ("replace", BASE, False),
    ],
)
def test_check_mode_reports_the_diff_and_commits_nothing(
    sim: SimFactory, mode: str, config: str, changed: bool
) -> None:
    dev, srv = sim()
    before = dev.running_text()
    res = push_config(request(config, mode=mode, check=True), opener(target(srv)))
    assert res.changed is changed
    assert bool(res.diff) is changed
    assert not res.committed
    assert dev.running_text() == before
    assert commits(dev) == []
    assert dev.candidate_text() == before, "the candidate must be rolled back (rollback 0)"
    assert dev.holder is None, "the configuration lock must be released"
    action = "override" if mode == "replace" else "replace"  # NAPALM's merge is Junos's `load replace`
    assert any(f"load-configuration format=text action={action}" in line for line in dev.log)
    if mode == "replace" and changed:
        assert "[edit]\n-   protocols {\n-       bgp {" in res.diff
        assert NEW_DESCRIPTION in res.diff


@pytest.mark.parametrize(("mode", "config"), [("merge", MERGE), ("replace", REPLACE)])
def test_commit_confirms_after_post_checks_and_second_run_is_clean(
    sim: SimFactory, tmp_path: Path, mode: str, config: str
) -> None:
    dev, srv = sim()
    before = dev.running_text()
    res = push_config(request(config, mode=mode, archive_dir=tmp_path, expect_hostname="r1"), opener(target(srv)))
    assert res.changed and res.committed
    assert "[edit interfaces xe-0/1/0]\n-   description spare;\n" in res.diff
    assert NEW_DESCRIPTION in res.diff
    assert "management reachable" in res.checks
    running = dev.running_text()
    assert 'description "fra1-srv01:ext0";' in running
    assert ("protocols {" in running) is (mode == "merge")
    assert ("mtu 1514;" in running) is (mode == "merge")
    # archived: the running config as it was before the commit
    assert res.archive is not None and res.archive.parent == tmp_path / "r1"
    archived = res.archive.read_text()
    assert archived.startswith("## Last commit: ") and archived.endswith(before)
    # committed with a 1-minute confirm timer, then confirmed by a plain commit; nothing pending
    assert commits(dev) == ["commit-configuration confirmed confirm-timeout=1", "commit-configuration"]
    assert not dev.pending_confirm()
    assert dev.holder is None

    again = push_config(request(config, mode=mode, archive_dir=tmp_path), opener(target(srv)))
    assert not again.changed and not again.committed and again.diff == ""
    assert dev.running_text() == running
    assert len(commits(dev)) == 2
    assert len(list((tmp_path / "r1").iterdir())) == 1, "no archive without a commit"


def test_base10_framing_when_the_device_offers_no_base11(sim: SimFactory) -> None:
    """Older Junos offers base:1.0 only: ncclient stays with the `]]>]]>` end-of-message framing."""
    dev, srv = sim(base11=False)
    res = push_config(request(MERGE, check=True), opener(target(srv)))
    assert res.changed and NEW_DESCRIPTION in res.diff
    assert dev.candidate_text() == dev.running_text()


def test_no_change_commits_nothing(sim: SimFactory, tmp_path: Path) -> None:
    dev, srv = sim()
    res = push_config(request(BASE, mode="replace", archive_dir=tmp_path), opener(target(srv)))
    assert not res.changed and not res.committed
    assert commits(dev) == []
    assert not (tmp_path / "r1").exists()


def test_rejected_statement_fails_and_nothing_is_committed(sim: SimFactory) -> None:
    dev, srv = sim(reject=[r"^speed turbo$"])
    before = dev.running_text()
    config = MERGE.replace("mtu 1514;", "mtu 1514;\n        speed turbo;")
    with pytest.raises(ConfigRejected) as err:
        push_config(request(config), opener(target(srv)))
    assert "speed turbo" in str(err.value)
    assert "syntax error" in str(err.value)
    assert not err.value.committed
    assert dev.running_text() == before
    # the device loaded the rest, as Junos does; the driver's rollback 0 threw it away again
    assert dev.candidate_text() == before
    assert commits(dev) == []
    assert dev.holder is None


def test_failing_bgp_post_check_rolls_back(sim: SimFactory, tmp_path: Path) -> None:
    dev, srv = sim()
    before = dev.running_text()
    broken = "protocols {\n    bgp {\n        group transit {\n            neighbor 203.0.113.145 {\n"
    broken += "                peer-as 64999;\n            }\n        }\n    }\n}\n"
    with pytest.raises(PostCheckFailed) as err:
        push_config(request(broken, archive_dir=tmp_path), opener(target(srv)))
    assert "global 203.0.113.145" in str(err.value)
    assert "rolled back" in str(err.value)
    assert dev.running_text() == before
    assert not dev.pending_confirm()
    # NAPALM's rollback: load rollback 1 into the candidate and commit it (which also confirms)
    assert any(line.endswith("load-configuration compare=rollback rollback=1") for line in dev.log)
    assert commits(dev) == ["commit-configuration confirmed confirm-timeout=1", "commit-configuration"]
    assert "peer-as 64999;" in render(dev.history[1].config), "the broken config was committed, then rolled back"


def test_expected_bgp_session_that_never_comes_up_rolls_back(sim: SimFactory) -> None:
    dev, srv = sim()
    before = dev.running_text()
    new_peer = "protocols {\n    bgp {\n        group transit {\n            neighbor 203.0.113.147 {\n"
    new_peer += "                peer-as 64500;\n            }\n        }\n    }\n}\n"
    with pytest.raises(PostCheckFailed, match=r"203\.0\.113\.147"):
        push_config(request(new_peer, expect_bgp_up=("203.0.113.147",)), opener(target(srv)))
    assert dev.running_text() == before
    # the same change goes through once the provider's side is there
    dev.bgp_remotes["203.0.113.147"] = 64500
    res = push_config(request(new_peer, expect_bgp_up=("203.0.113.147",)), opener(target(srv)))
    assert res.committed and "BGP: 2 of 2 sessions established" in res.checks


def test_lost_management_reverts_on_the_device_timer(sim: SimFactory) -> None:
    dev, srv = sim(minute=2.0)
    before = dev.running_text()
    cut = REPLACE.replace("    fxp0 {\n        unit 0 {\n            family inet {\n", "    fxp0 {\n        unit 0 {\n")
    cut = cut.replace("                address 203.0.113.10/25;\n            }\n", "")
    assert "203.0.113.10" not in cut
    started = time.monotonic()
    with pytest.raises(PostCheckFailed) as err:
        push_config(request(cut, mode="replace"), opener(target(srv)))
    assert "management no longer reachable" in str(err.value)
    assert "reverts by itself" in str(err.value)
    assert not dev.reachable() or time.monotonic() - started >= 2.0
    deadline = time.monotonic() + 10
    while not dev.reachable() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dev.reachable()
    assert dev.running_text() == before
    assert dev.history[0].comment == "automatic rollback"
    assert dev.log[-1] == "- automatic rollback: commit not confirmed in time"
    # and the device answers again
    again = push_config(request(MERGE, check=True), opener(target(srv)))
    assert again.changed


def test_wrong_hostname_after_commit_rolls_back(sim: SimFactory) -> None:
    dev, srv = sim()
    before = dev.running_text()
    with pytest.raises(PostCheckFailed, match="hostname 'r9'"):
        push_config(request("system {\n    host-name r9;\n}\n", expect_hostname="r1"), opener(target(srv)))
    assert dev.running_text() == before


def test_unreachable_device() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tgt = Target(host="r1", platform="junos", address="127.0.0.1", username="admin", password="x", port=port)
    with pytest.raises(DeviceUnreachable, match="r1: device unreachable while connecting"):
        push_config(request(MERGE), opener(tgt))


def test_wrong_password(sim: SimFactory) -> None:
    dev, srv = sim()
    with pytest.raises(AuthenticationFailed, match="authentication failed while connecting"):
        push_config(request(MERGE), opener(target(srv, password="wrong")))
    assert dev.log == []


def test_configuration_locked_by_another_session(sim: SimFactory) -> None:
    dev, srv = sim()
    dev.holder = 4000  # someone in `configure exclusive`
    before = dev.running_text()
    with pytest.raises(ConfigLocked, match="locked by another session") as err:
        push_config(request(MERGE), opener(target(srv)))
    assert "configuration database locked by" in str(err.value)
    assert dev.running_text() == before and dev.candidate_text() == before
    assert dev.holder == 4000
    assert not any("load-configuration" in line for line in dev.log)


def test_uncommitted_changes_of_someone_else_lock_the_configuration(sim: SimFactory) -> None:
    dev, srv = sim()
    dev.load("system {\n    host-name other;\n}\n", "merge")  # someone in plain `configure`, not committed
    with pytest.raises(ConfigLocked, match="configuration database modified"):
        push_config(request(MERGE), opener(target(srv)))
    assert "host-name other;" in dev.candidate_text(), "someone else's candidate is not ours to discard"
    assert commits(dev) == []


def test_pending_confirmed_commit_is_left_alone(sim: SimFactory) -> None:
    dev, srv = sim()
    dev.load("system {\n    host-name other;\n}\n", "merge")
    dev.commit(confirm_minutes=10)
    with pytest.raises(ConfigLocked, match="confirmed commit is pending"):
        push_config(request(MERGE), opener(target(srv)))
    assert "host-name other;" in dev.running_text()
    assert dev.pending_confirm()
    assert not any("load-configuration" in line for line in dev.log)


def test_rendered_router_config_merges_into_a_factory_config(sim: SimFactory, tmp_path: Path) -> None:
    """The golden Junos render of fra1-rtr01 goes through load, diff, commit and a clean second run."""
    rendered = (REPO / "tests/golden/expected/example-fra1/fra1-rtr01/junos.conf").read_text()
    factory = BASE.split("routing-options {")[0].replace("host-name r1;", "host-name Amnesiac;")
    dev, srv = sim(factory, bgp_remotes={})
    check = push_config(request(rendered, check=True), opener(target(srv)))
    assert "[edit system]\n-   host-name Amnesiac;\n+   host-name fra1-rtr01;" in check.diff
    assert "[edit]\n+   routing-options {" in check.diff and "+   protocols {\n+       bgp {" in check.diff
    assert dev.running_text() == canonical(factory)
    res = push_config(request(rendered, archive_dir=tmp_path, expect_hostname="fra1-rtr01"), opener(target(srv)))
    assert res.committed
    running = dev.running_text()
    assert "neighbor 203.0.113.145 {" in running and "fxp0 {" in running
    assert "/*" not in running and "##" not in running, "comments are not configuration"
    again = push_config(request(rendered), opener(target(srv)))
    assert not again.changed


def canonical(text: str) -> str:
    """A config as the simulator prints it."""
    return render(parse(text))
