"""edgepop st-ping: which providers it probes, the ICMP it sends and parses, and what it prints.
The probes themselves go out in the lab (tests/lab/test_arprelay_lab.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from edgepop import stping
from edgepop.cli import main
from edgepop.stping import Probe, Route, StPingError, echo_request, format_table, parse_reply, routes_from_state

STATE = {
    "epoch": "e",
    "version": 3,
    "complete": True,
    "nexthops": [
        {"provider": "transit-b", "address": "203.0.113.83", "mac": "02:00:5e:00:53:02", "table": 1002},
        {"provider": "transit-a", "address": "203.0.113.81", "mac": "02:00:5e:00:53:01", "table": 1001},
        {"provider": "transit-a", "address": "2001:db8:0:f0::1", "mac": "02:00:5e:00:53:01", "table": 1001},
    ],
}


@pytest.fixture
def state(tmp_path: Path) -> str:
    path = tmp_path / "arprelay.json"
    path.write_text(json.dumps(STATE))
    return str(path)


def test_routes_of_the_destinations_family_sorted_by_provider(state: str) -> None:
    assert routes_from_state(state, 4) == [
        Route("transit-a", "203.0.113.81", "02:00:5e:00:53:01", 1001),
        Route("transit-b", "203.0.113.83", "02:00:5e:00:53:02", 1002),
    ]
    assert [r.address for r in routes_from_state(state, 6)] == ["2001:db8:0:f0::1"]
    with pytest.raises(StPingError, match="no such file"):
        routes_from_state(state + ".missing", 4)


def test_echo_request_checksum_and_reply_parsing() -> None:
    packet = echo_request(False, 0x1234, 7, b"edgepop st-ping")
    assert stping._checksum(packet) == 0, "a packet with its checksum in sums to zero"
    reply = bytes([0]) + packet[1:]  # type 0: echo reply
    ip_header = bytes([0x45]) + bytes(19)
    assert parse_reply(False, ip_header + reply) == (0x1234, 7)
    assert parse_reply(False, ip_header + packet) is None  # our own request, looped back
    v6 = echo_request(True, 0x1234, 8, b"x")
    assert struct.unpack("!BBHHH", v6[:8]) == (128, 0, 0, 0x1234, 8)
    assert parse_reply(True, bytes([129]) + v6[1:]) == (0x1234, 8)


def test_the_table_shows_every_provider_with_its_rtts() -> None:
    a = Probe(Route("transit-a", "203.0.113.81", "02:00:5e:00:53:01", 1001), sent=3, rtts_ms=[1.5, 2.0, 2.5])
    b = Probe(Route("transit-b", "203.0.113.83", "02:00:5e:00:53:02", 1002), sent=3, rtts_ms=[10.25])
    c = Probe(Route("transit-c", "203.0.113.85", "02:00:5e:00:53:03", 1003), sent=0, error="Network is unreachable")
    assert format_table("203.0.113.200", [a, b, c]) == (
        "st-ping 203.0.113.200 over 3 providers\n"
        "provider   table  next hop      MAC                sent  recv  loss  min ms  avg ms  max ms\n"
        "transit-a  1001   203.0.113.81  02:00:5e:00:53:01  3     3     0%    1.500   2.000   2.500\n"
        "transit-b  1002   203.0.113.83  02:00:5e:00:53:02  3     1     66%   10.250  10.250  10.250\n"
        "transit-c  1003   203.0.113.85  02:00:5e:00:53:03  0     0     -     -       -       Network is unreachable\n"
    )


def test_cli_probes_each_provider_and_exits_by_the_answers(
    state: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, int, str, int]] = []

    def fake(route: Route, dest: str, count: int, timeout: float, interval: float) -> Probe:
        calls.append((route.provider, route.table, dest, count))
        return Probe(route, sent=count, rtts_ms=[1.0] * count if route.provider == "transit-a" else [])

    monkeypatch.setattr(stping, "ping_over", fake)
    assert main(["st-ping", "203.0.113.200", "--state", state, "-c", "2"]) == 0
    assert calls == [("transit-a", 1001, "203.0.113.200", 2), ("transit-b", 1002, "203.0.113.200", 2)]
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "st-ping 203.0.113.200 over 2 providers"
    assert main(["st-ping", "203.0.113.200", "--state", state, "-p", "transit-b"]) == 1  # nobody answered
    assert main(["st-ping", "2001:db8:99::1", "--state", state]) == 0
    assert main(["st-ping", "not-an-address", "--state", state]) == 64
    assert main(["st-ping", "203.0.113.200", "--state", state + ".missing"]) == 66
    assert "no such file (is the arprelay host agent running?)" in capsys.readouterr().err
