"""arprelay's protocol: the relay's versioned mapping and long poll, the host's rule for taking a
mapping, keeping the last good one, and the configuration. The kernel is not touched here: the
host's `converge` is replaced by a recorder (tests/unit/test_nexthop.py and the lab cover it)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepop.agents.arprelay import cli, daemon
from edgepop.agents.arprelay.config import HostConfig, parse_config
from edgepop.agents.arprelay.core import HostState, Mapping, RelayState
from edgepop.agents.arprelay.server import RelayServer
from edgepop.agents.common import ConfigError
from edgepop.nexthop import Nexthop, Result

A = {"provider": "transit-a", "address": "203.0.113.81", "mac": "02:00:5e:00:53:01", "table": 1001}
A6 = {**A, "address": "2001:db8:0:f0::1"}
B = {"provider": "transit-b", "address": "203.0.113.83", "mac": "02:00:5e:00:53:02", "table": 1002}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_version_moves_only_when_the_content_does() -> None:
    state = RelayState(remove_after_s=0)
    assert state.mapping.version == 0 and not state.mapping.complete
    assert state.observe([A, B])
    first = state.mapping
    assert (first.version, first.complete) == (1, True)
    assert not state.observe([B, A]), "same content in another order is no change"
    assert state.observe([{**A, "mac": "02:00:5e:00:53:99"}, B])
    assert state.mapping.version == 2 and state.mapping.epoch == first.epoch
    assert [n["mac"] for n in state.mapping.to_json()["nexthops"]] == ["02:00:5e:00:53:99", "02:00:5e:00:53:02"]


def test_a_missing_provider_is_removed_only_after_the_hold_down() -> None:
    clock = Clock()
    state = RelayState(remove_after_s=0.5, clock=clock)
    state.observe([A, B])
    clock.now += 0.2
    assert not state.observe([A]) and state.pending_removals()  # one read without B is not enough
    clock.now += 0.2
    assert not state.observe([A])
    assert state.observe([A, B]) is False and not state.pending_removals()  # back in time: nothing moved
    state.observe([A])
    clock.now += 0.6
    assert state.observe([A])
    assert [n["provider"] for n in state.mapping.to_json()["nexthops"]] == ["transit-a"]


def test_a_source_failure_serves_the_mapping_as_incomplete() -> None:
    state = RelayState()
    state.observe([A])
    assert state.source_failed() and not state.mapping.complete
    assert len(state.mapping.nexthops) == 1, "the content stays for anyone who looks"
    assert state.observe([A]) and state.mapping.complete


def test_host_takes_only_complete_and_newer_mappings() -> None:
    host = HostState()
    m1 = Mapping("e1", 1, True, ())
    assert host.wants(m1)
    host.applied = Mapping("e1", 3, True, ())
    assert not host.wants(Mapping("e1", 2, True, ()))
    assert not host.wants(Mapping("e1", 3, True, ()))
    assert host.wants(Mapping("e1", 4, True, ()))
    assert not host.wants(Mapping("e1", 9, False, ())), "never an incomplete one"
    assert host.wants(Mapping("e2", 1, True, ())), "a restarted relay counts from 1 again"


def test_mapping_json_round_trip_and_refusals() -> None:
    state = RelayState()
    state.observe([A, B])
    doc = json.loads(json.dumps(state.mapping.to_json()))
    assert Mapping.from_json(doc) == state.mapping
    with pytest.raises(ValueError, match="no 'epoch'"):
        Mapping.from_json({"version": 1})
    with pytest.raises(ValueError, match=r"nexthops\[0\] lacks"):
        Mapping.from_json({**doc, "nexthops": [{"provider": "x"}]})


@pytest.fixture
def relay() -> Any:
    state = RelayState(remove_after_s=0)
    server = RelayServer(state, "127.0.0.1", 0, "s3cret", max_wait_s=5).start()
    try:
        yield state, server
    finally:
        server.stop()


def get(url: str, token: str | None = "s3cret") -> tuple[int, dict[str, Any] | None]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_server_wants_the_token(relay: Any) -> None:
    _, server = relay
    base = f"http://127.0.0.1:{server.port}"
    assert get(f"{base}/v1/mapping", token=None)[0] == 401
    assert get(f"{base}/v1/mapping", token="wrong")[0] == 401
    status, doc = get(f"{base}/v1/mapping")
    assert status == 200 and doc is not None and doc["version"] == 0 and doc["complete"] is False
    assert get(f"{base}/v1/health", token=None)[0] == 200


def test_long_poll_answers_a_change_at_once_and_304_after_the_wait(relay: Any) -> None:
    state, server = relay
    state.observe([A])
    m = state.mapping
    url = f"http://127.0.0.1:{server.port}/v1/mapping?epoch={m.epoch}&version={m.version}"
    t0 = time.monotonic()
    assert get(f"{url}&wait=0.3")[0] == 304
    assert 0.25 < time.monotonic() - t0 < 2
    threading.Timer(0.2, lambda: state.observe([{**A, "mac": "02:00:5e:00:53:99"}])).start()
    t0 = time.monotonic()
    status, doc = get(f"{url}&wait=4")
    took = time.monotonic() - t0
    assert status == 200 and doc is not None and doc["version"] == m.version + 1
    assert 0.15 < took < 1.0, f"the change took {took:.2f} s to arrive"
    # another epoch (the relay restarted since): the current mapping at once
    status, doc = get(f"http://127.0.0.1:{server.port}/v1/mapping?epoch=old&version=99&wait=4")
    assert status == 200 and doc is not None and doc["epoch"] == m.epoch


def host_config(tmp_path: Path, url: str, **extra: Any) -> HostConfig:
    data = {"role": "host", "relay_url": url, "token": "s3cret", "interface": "ext0", "local_v4": "198.51.100.11",
            "state_file": str(tmp_path / "state.json"), "long_poll_s": 1, "retry_s": 0.05, **extra}  # fmt: skip
    cfg = parse_config(data)
    assert isinstance(cfg, HostConfig)
    return cfg


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[list[Nexthop]]:
    calls: list[list[Nexthop]] = []

    def fake_converge(items: Any, settings: Any, *, check: bool = False, netns: str | None = None) -> Result:
        calls.append(list(items))
        return Result(True, [f"{n.address} {n.mac}" for n in items], [], [])

    monkeypatch.setattr(daemon, "converge", fake_converge)
    return calls


def test_host_applies_new_mappings_and_keeps_the_last_good_one(
    relay: Any, tmp_path: Path, applied: list[list[Nexthop]]
) -> None:
    state, server = relay
    host = daemon.HostDaemon(host_config(tmp_path, f"http://127.0.0.1:{server.port}/v1/mapping"))
    host.step(0)
    assert applied == [], "an incomplete mapping (the relay has not read the switch yet) is never applied"
    state.observe([A, A6, B])
    host.step(1)
    # the host has no IPv6 address toward the providers: it takes the IPv4 next hops only
    assert [(n.provider, n.address, n.local, n.interface) for n in applied[-1]] == [
        ("transit-a", "203.0.113.81", "198.51.100.11", "ext0"),
        ("transit-b", "203.0.113.83", "198.51.100.11", "ext0"),
    ]
    kept = json.loads((tmp_path / "state.json").read_text())
    assert kept["version"] == 1 and len(kept["nexthops"]) == 3
    state.source_failed()  # the relay cannot read the switch: incomplete, not applied
    host.step(1)
    assert len(applied) == 1
    state.observe([A])  # B gone
    host.step(1)
    assert [n.provider for n in applied[-1]] == ["transit-a"]
    server.stop()  # the relay goes away
    with pytest.raises(OSError):
        host.step(0.2)
    assert json.loads((tmp_path / "state.json").read_text())["version"] == 3
    # a restarted host agent applies the kept mapping before it hears from any relay
    again = daemon.HostDaemon(host_config(tmp_path, "http://127.0.0.1:9/v1/mapping"))
    kept_mapping = again.load_state()
    assert kept_mapping is not None and again.apply(kept_mapping)
    assert [n.provider for n in applied[-1]] == ["transit-a"]


def test_config_errors_name_the_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "arprelay.yml"
    path.write_text(yaml.safe_dump({"role": "relay", "listen": "198.51.100.2", "source": "eapi", "bogus": 1}))
    assert cli.main(["--config", str(path), "--check-config"]) == 78  # EX_CONFIG
    err = capsys.readouterr().err
    assert f"{path}: bogus: Extra inputs are not permitted" in err
    with pytest.raises(ConfigError, match="source eapi needs the eapi settings"):
        parse_config({"role": "relay", "listen": "198.51.100.2", "source": "eapi"})
    with pytest.raises(ConfigError, match="local_v4, local_v6 or both"):
        parse_config({"role": "host", "relay_url": "http://x/", "interface": "ext0"})
    path.write_text(yaml.safe_dump({"role": "host", "relay_url": "http://198.51.100.2:8790/v1/mapping",
                                    "interface": "ext0", "local_v4": "198.51.100.11", "token": "s3cret"}))  # fmt: skip
    assert cli.main(["--config", str(path), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "token: '**********'" in out
    assert cli.main(["--config", str(tmp_path / "missing.yml"), "--check-config"]) == 66
