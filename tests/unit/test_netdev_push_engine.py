"""Engine paths a simulator cannot easily provoke: failures of the rollback and of the confirm.

The driver here is a scripted double that records the calls it gets; the behaviour of real
drivers against simulated devices is covered in test_netdev_push_eos.py and test_netdev_eos_ssh.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgepop.netdev.errors import CommitFailed, InvalidRequest, PostCheckFailed
from edgepop.netdev.push import PushRequest, missing_sessions, push_config


class Scripted:
    def __init__(self, calls: list[str], *, bgp: list[dict[str, bool]], fail: dict[str, Exception]) -> None:
        self.calls, self.bgp, self.fail = calls, bgp, fail

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    def close(self) -> None:
        self._call("close")

    def load_merge_candidate(self, filename: str | None = None, config: str | None = None) -> None:
        self._call("load_merge")

    def load_replace_candidate(self, filename: str | None = None, config: str | None = None) -> None:
        self._call("load_replace")

    def compare_config(self) -> str:
        self._call("compare")
        return "+set something"

    def discard_config(self) -> None:
        self._call("discard")

    def commit_config(self, message: str = "", revert_in: int | None = None) -> None:
        self._call(f"commit revert_in={revert_in}")

    def confirm_commit(self) -> None:
        self._call("confirm")

    def rollback(self) -> None:
        self._call("rollback")

    def has_pending_commit(self) -> bool:
        self._call("has_pending_commit")
        return False

    def get_config(self, retrieve: str = "all", full: bool = False, sanitized: bool = False) -> dict[str, str]:
        self._call(f"get_config {retrieve}")
        return {"running": "old config\n", "startup": "", "candidate": ""}

    def get_facts(self) -> dict[str, Any]:
        self._call("get_facts")
        return {"hostname": "rtr1"}

    def get_bgp_neighbors(self) -> dict[str, Any]:
        self._call("get_bgp_neighbors")
        state = self.bgp.pop(0) if len(self.bgp) > 1 else self.bgp[0]
        return {"global": {"peers": {peer: {"is_up": up} for peer, up in state.items()}}}


def opener(calls: list[str], bgp: list[dict[str, bool]], fail: dict[str, Exception] | None = None) -> Any:
    return lambda: Scripted(calls, bgp=bgp, fail=fail or {})


def req(tmp_path: Path, **kwargs: Any) -> PushRequest:
    return PushRequest(host="rtr1", config="x", archive_dir=tmp_path, bgp_wait=0.3, poll_interval=0.05, **kwargs)


def test_order_of_events(tmp_path: Path) -> None:
    calls: list[str] = []
    res = push_config(req(tmp_path, revert_in=120), opener(calls, [{"198.51.100.1": True}]))
    assert res.committed
    assert calls == [
        "has_pending_commit",
        "load_merge",
        "compare",
        "get_config running",
        "get_bgp_neighbors",
        "commit revert_in=120",
        "get_facts",  # on the second connection
        "get_bgp_neighbors",
        "close",
        "confirm",
        "close",
    ]
    assert res.archive is not None and res.archive.read_text() == "old config\n"


def test_bgp_session_that_comes_back_in_time_passes(tmp_path: Path) -> None:
    calls: list[str] = []
    states = [{"198.51.100.1": True}, {"198.51.100.1": False}, {"198.51.100.1": False}, {"198.51.100.1": True}]
    res = push_config(req(tmp_path), opener(calls, states))
    assert res.committed and calls.count("get_bgp_neighbors") == 4


def test_rollback_that_fails_says_the_timer_will_revert(tmp_path: Path) -> None:
    calls: list[str] = []
    states = [{"198.51.100.1": True}, {"198.51.100.1": False}]
    with pytest.raises(PostCheckFailed) as err:
        push_config(req(tmp_path), opener(calls, states, {"rollback": OSError("connection reset")}))
    assert "rolling back failed" in str(err.value) and "reverts by itself" in str(err.value)
    assert "confirm" not in calls


def test_confirm_that_fails_is_a_commit_failure(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(CommitFailed, match="reverts by itself within 300 s"):
        push_config(req(tmp_path), opener(calls, [{}], {"confirm": OSError("broken pipe")}))


def test_commit_that_fails_discards_the_candidate(tmp_path: Path) -> None:
    calls: list[str] = []
    fail = {"commit revert_in=300": RuntimeError("commit check failed")}
    with pytest.raises(CommitFailed, match="commit check failed"):
        push_config(req(tmp_path), opener(calls, [{}], fail))
    assert calls[-2:] == ["discard", "close"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"revert_in": 90, "revert_multiple": 60}, "multiple of 60"),
        ({"mode": "override"}, "merge or replace"),
        ({"config": "  \n"}, "empty"),
    ],
)
def test_invalid_requests_touch_nothing(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    calls: list[str] = []
    params = {"host": "rtr1", "config": "x", **kwargs}
    with pytest.raises(InvalidRequest, match=message):
        push_config(PushRequest(**params), opener(calls, [{}]))
    assert calls == []


def test_missing_sessions() -> None:
    before = {"global 198.51.100.1": True, "global 198.51.100.2": True, "global 198.51.100.3": False}
    after = {"global 198.51.100.1": False, "global 198.51.100.3": False, "global 2001:db8::1": False}
    # .2 was removed by the change: not missing; .3 was down before: not required
    assert missing_sessions(before, after, ()) == ["global 198.51.100.1"]
    assert missing_sessions(before, after, ("2001:db8::1", "198.51.100.9")) == [
        "global 198.51.100.1",
        "global 2001:db8::1",
        "198.51.100.9 (not configured)",
    ]


class PendingAfterCommit(Scripted):
    """A device whose commit went through although the session died: a commit is pending."""

    def has_pending_commit(self) -> bool:
        self._call("has_pending_commit")
        return any(call.startswith("commit ") for call in self.calls)


def test_session_lost_in_the_commit_and_device_unreachable_is_left_to_the_timer(tmp_path: Path) -> None:
    calls: list[str] = []
    connections = [Scripted(calls, bgp=[{}], fail={"commit revert_in=300": OSError("connection reset")})]

    def open_driver() -> Any:
        if not connections:
            raise ConnectionRefusedError("refused")
        return connections.pop()

    with pytest.raises(PostCheckFailed) as err:
        push_config(req(tmp_path), open_driver)
    assert "management no longer reachable after the commit" in str(err.value)
    assert "reverts by itself when its 300 s confirm timer expires" in str(err.value)
    assert "discard" not in calls and "rollback" not in calls


def test_session_lost_in_the_commit_rolls_back_the_pending_commit(tmp_path: Path) -> None:
    calls: list[str] = []
    fail: dict[str, Exception] = {"commit revert_in=300": EOFError()}
    drivers = iter([Scripted(calls, bgp=[{}], fail=fail), PendingAfterCommit(calls, bgp=[{}], fail={})])
    with pytest.raises(CommitFailed, match="the commit went through and was rolled back"):
        push_config(req(tmp_path), lambda: next(drivers))
    assert calls[-5:] == ["commit revert_in=300", "has_pending_commit", "rollback", "close", "close"]


def test_session_lost_in_a_commit_that_did_not_happen(tmp_path: Path) -> None:
    calls: list[str] = []
    fail: dict[str, Exception] = {"commit revert_in=300": EOFError()}
    drivers = iter([Scripted(calls, bgp=[{}], fail=fail), Scripted(calls, bgp=[{}], fail={})])
    with pytest.raises(CommitFailed, match="nothing was left pending"):
        push_config(req(tmp_path), lambda: next(drivers))
    assert "rollback" not in calls
