"""The push engine against the eAPI simulator, through NAPALM's real `eos` driver and pyeapi."""

from __future__ import annotations

import socket
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sims.eos_eapi import EapiServer
from sims.eos_model import Config, EosDevice

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
hostname sw1
interface Management1
   ip address 203.0.113.16/25
!
interface Ethernet1
   description spare
!
management api http-commands
   protocol https
   no shutdown
!
router bgp 64496
   router-id 203.0.113.131
   neighbor 198.51.100.1 remote-as 64496
!
"""
MERGE = "interface Ethernet1\n   description fra1-srv01:ext0\n   switchport access vlan 100\n"
REPLACE = BASE.replace("   description spare\n", "   description fra1-srv01:ext0\n").replace(
    "router bgp 64496\n   router-id 203.0.113.131\n   neighbor 198.51.100.1 remote-as 64496\n!\n", ""
)

SimFactory = Callable[..., tuple[EosDevice, EapiServer]]


@pytest.fixture
def sim() -> Iterator[SimFactory]:
    servers: list[EapiServer] = []

    def make(running: str = BASE, **kwargs: object) -> tuple[EosDevice, EapiServer]:
        kwargs.setdefault("bgp_remotes", {"198.51.100.1": 64496})
        dev = EosDevice(running, **kwargs)  # type: ignore[arg-type]
        srv = EapiServer(dev).start()
        servers.append(srv)
        return dev, srv

    try:
        yield make
    finally:
        for srv in servers:
            srv.stop()


def target(srv: EapiServer, password: str = "admin") -> Target:
    return Target(host="sw1", platform="eos", address="127.0.0.1", username="admin", password=password, port=srv.port)


def request(config: str, **kwargs: object) -> PushRequest:
    kwargs.setdefault("bgp_wait", 1.0)
    kwargs.setdefault("poll_interval", 0.1)
    return PushRequest(host="sw1", config=config, **kwargs)  # type: ignore[arg-type]


def commits(dev: EosDevice) -> list[str]:
    return dev.commands_matching(r"^configure session \S+ commit|^configure replace|^write memory")


@pytest.mark.parametrize(
    ("mode", "config", "changed"),
    [
        ("merge", MERGE, True),
        ("merge", "interface Ethernet1\n   description spare\n", False),
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
    assert dev.sessions == {}, "the candidate session must be aborted"
    if mode == "replace" and changed:
        assert "-router bgp 64496" in res.diff
        assert "+   description fra1-srv01:ext0" in res.diff


@pytest.mark.parametrize(
    ("mode", "config"),
    [("merge", MERGE), ("replace", REPLACE)],
)
def test_commit_confirms_after_post_checks_and_second_run_is_clean(
    sim: SimFactory, tmp_path: Path, mode: str, config: str
) -> None:
    dev, srv = sim()
    before = dev.running_text()
    res = push_config(request(config, mode=mode, archive_dir=tmp_path, expect_hostname="sw1"), opener(target(srv)))
    assert res.changed and res.committed
    assert "+   description fra1-srv01:ext0" in res.diff
    assert "management reachable" in res.checks
    running = dev.running_text()
    assert "description fra1-srv01:ext0" in running
    assert ("router bgp" in running) is (mode == "merge")
    # archived: the running config as it was before the commit
    assert res.archive is not None and res.archive.parent == tmp_path / "sw1"
    assert res.archive.read_text().endswith(before)
    # committed with a timer, then confirmed and saved; nothing pending afterwards
    timed = dev.commands_matching(r"^configure session \S+ commit timer 00:05:00$")
    assert len(timed) == 1
    session = timed[0].split()[2]
    assert dev.commands_matching(rf"^configure session {session} commit$")
    assert dev.commands_matching(r"^write memory$")
    assert dev.sessions[session].state == "completed"

    again = push_config(request(config, mode=mode, archive_dir=tmp_path), opener(target(srv)))
    assert not again.changed and not again.committed and again.diff == ""
    assert dev.running_text() == running
    assert len(list((tmp_path / "sw1").iterdir())) == 1, "no archive without a commit"


def test_no_change_commits_nothing(sim: SimFactory, tmp_path: Path) -> None:
    dev, srv = sim()
    res = push_config(request(BASE, mode="replace", archive_dir=tmp_path), opener(target(srv)))
    assert not res.changed and not res.committed
    assert commits(dev) == []
    assert not (tmp_path / "sw1").exists()


def test_rejected_line_fails_and_nothing_is_committed(sim: SimFactory) -> None:
    dev, srv = sim(reject=[r"^lacp timer turbo"])
    before = dev.running_text()
    config = MERGE + "   lacp timer turbo\n"
    with pytest.raises(ConfigRejected) as err:
        push_config(request(config), opener(target(srv)))
    assert "lacp timer turbo" in str(err.value)
    assert not err.value.committed
    assert dev.running_text() == before
    assert commits(dev) == []
    assert dev.sessions == {}


def test_failing_bgp_post_check_rolls_back(sim: SimFactory, tmp_path: Path) -> None:
    dev, srv = sim()
    before = dev.running_text()
    broken = "router bgp 64496\n   neighbor 198.51.100.1 remote-as 64999\n"
    with pytest.raises(PostCheckFailed) as err:
        push_config(request(broken, archive_dir=tmp_path), opener(target(srv)))
    assert "global 198.51.100.1" in str(err.value)
    assert "rolled back" in str(err.value)
    assert dev.running_text() == before
    assert dev.sessions == {}
    assert dev.commands_matching(r"^configure session \S+ abort$")
    assert not dev.commands_matching(r"^configure session \S+ commit$")


def test_expected_bgp_session_that_never_comes_up_rolls_back(sim: SimFactory) -> None:
    dev, srv = sim()
    before = dev.running_text()
    new_peer = "router bgp 64496\n   neighbor 198.51.100.9 remote-as 64500\n"
    with pytest.raises(PostCheckFailed, match=r"198\.51\.100\.9"):
        push_config(request(new_peer, expect_bgp_up=("198.51.100.9",)), opener(target(srv)))
    assert dev.running_text() == before
    # the same change goes through once the provider's side is there
    dev.bgp_remotes["198.51.100.9"] = 64500
    res = push_config(request(new_peer, expect_bgp_up=("198.51.100.9",)), opener(target(srv)))
    assert res.committed and "BGP: 2 of 2 sessions established" in res.checks


def test_lost_management_reverts_on_the_device_timer(sim: SimFactory) -> None:
    dev, srv = sim()
    before = dev.running_text()
    cut = "management api http-commands\n   shutdown\n"
    with pytest.raises(PostCheckFailed) as err:
        push_config(request(cut, revert_in=2), opener(target(srv)))
    assert "management no longer reachable" in str(err.value)
    assert "reverts by itself" in str(err.value)
    deadline = time.monotonic() + 10
    while not dev.eapi_enabled() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dev.eapi_enabled()
    assert dev.running_text() == before


def test_wrong_hostname_after_commit_rolls_back(sim: SimFactory) -> None:
    dev, srv = sim()
    before = dev.running_text()
    with pytest.raises(PostCheckFailed, match="hostname 'sw9'"):
        push_config(request("hostname sw9\n", expect_hostname="sw1"), opener(target(srv)))
    assert dev.running_text() == before


def test_unreachable_device() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tgt = Target(host="sw1", platform="eos", address="127.0.0.1", username="admin", password="x", port=port)
    with pytest.raises(DeviceUnreachable, match="sw1: device unreachable while connecting"):
        push_config(request(MERGE), opener(tgt))


def test_wrong_password(sim: SimFactory) -> None:
    dev, srv = sim()
    with pytest.raises(AuthenticationFailed, match="authentication failed while connecting"):
        push_config(request(MERGE), opener(target(srv, password="wrong")))
    assert dev.sessions == {}


def test_pending_confirmed_commit_is_left_alone(sim: SimFactory) -> None:
    dev, srv = sim()
    with dev.lock:
        dev.hold_session("someone")
        dev.config_line(dev.sessions["someone"], None, "hostname other")
        dev.exec_command("configure session someone commit timer 00:10:00")
    with pytest.raises(ConfigLocked, match="confirmed commit is pending"):
        push_config(request(MERGE), opener(target(srv)))
    assert "description spare" in dev.running_text()
    assert dev.sessions["someone"].state == "pendingCommitTimer"


def test_config_session_held_by_someone_else(sim: SimFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    import napalm.eos.eos as eos_driver

    # NAPALM waits 10 s for the lock, polling every second: run its clock fast
    fake_now = [0.0]

    def fast_time() -> float:
        fake_now[0] += 2.0
        return fake_now[0]

    fake = types.SimpleNamespace(time=fast_time, sleep=lambda s: None, strftime=time.strftime, gmtime=time.gmtime)
    monkeypatch.setattr(eos_driver, "time", fake)
    dev, srv = sim()
    dev.hold_session("someone")
    before = dev.running_text()
    with pytest.raises(ConfigLocked, match="locked by another session"):
        push_config(request(MERGE), opener(target(srv)))
    assert dev.running_text() == before
    assert set(dev.sessions) == {"someone"}


def test_rendered_switch_config_replaces_a_factory_config(sim: SimFactory, tmp_path: Path) -> None:
    """The golden EOS render of fra1-sw01 goes through load, diff, commit and a clean second run."""
    rendered = (REPO / "tests/golden/expected/example-fra1/fra1-sw01/eos.cfg").read_text()
    factory = "hostname localhost\nmanagement api http-commands\n   no shutdown\n!\n"
    dev, srv = sim(factory, bgp_remotes={})
    check = push_config(request(rendered, mode="replace", check=True), opener(target(srv)))
    assert "-hostname localhost" in check.diff and "+hostname fra1-sw01" in check.diff
    assert dev.running_text() == canonical(factory)
    res = push_config(
        request(rendered, mode="replace", archive_dir=tmp_path, expect_hostname="fra1-sw01"), opener(target(srv))
    )
    assert res.committed
    assert "interface Port-Channel1" in dev.running_text()
    again = push_config(request(rendered, mode="replace"), opener(target(srv)))
    assert not again.changed


def canonical(text: str) -> str:
    """A config as the simulator prints it."""
    return Config.parse(text).render()
