"""Anycast across the WAN: two PoPs built from the lab inventory behind one internet (edgepop.lab.wan).

Both PoPs' routers run their rendered BIRD configs and announce the PoP's anycast aggregates to
their provider; a client behind the internet reaches the anycast service through the PoP the
internet prefers. When that PoP's router is gone — its link cut, or its BIRD dead — the client lands
on the other PoP, and comes back when the router does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgepop.lab.wan import WanLab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("bird", "birdc", "busybox", "curl", "ip", "nft")):
    pytest.skip("needs root, bird2, busybox, curl, iproute2 and nft", allow_module_level=True)


def wait(what: str, predicate: object, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def wan(tmp_path: Path) -> Iterator[WanLab]:
    lab = WanLab(ROOT / "inventory" / "lab", tmp_path / "wan", log=print)
    try:
        lab.up()
        wait("both PoPs' provider sessions", lambda: set(lab.sessions().values()) == {"Established"}, 30)
        yield lab
    finally:
        tag = lab.tag
        lab.down()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        assert not [ns for ns in left if ns.startswith(tag)], left


def settled(wan: WanLab, pop: str) -> None:
    """The first request over a new path also resolves its neighbours hop by hop, which a loaded
    machine can stretch past a request's timeout: wait for one answer from `pop` before counting."""
    wait(f"a first answer from PoP {pop}", lambda: wan.requests(1) == {pop: 1}, 10)


def test_client_lands_on_the_other_pop_when_a_router_is_gone(wan: WanLab) -> None:
    first = wan.preferred()
    assert first in ("A", "B")
    other = "B" if first == "A" else "A"
    assert wan.requests(10) == {first: 10}

    # the preferred PoP's router is cut off: the internet withdraws it, the client moves
    wan.cut(first)
    took = wait(f"the internet to prefer PoP {other}", lambda: wan.preferred() == other, 10)
    print(f"link cut: the internet moved to PoP {other} in {took:.2f} s")
    settled(wan, other)
    assert wan.requests(10) == {other: 10}

    # it comes back, as a rebooted router would: the link is up and both ends start the session
    # afresh (instead of waiting out BIRD's error wait of a minute after the session broke)
    wan.restore(first)
    assert wan.internet is not None and wan.pops[first].router is not None
    provider = wan.pops[first].provider["name"].replace("-", "_")
    wan.pops[first].router.birdc("restart", f"provider_{provider}_v4")
    wan.internet.birdc("restart", f"pop_{first}")
    wait(f"PoP {first}'s session again", lambda: wan.sessions()[first] == "Established", 30)
    wait(f"the internet to prefer PoP {first} again", lambda: wan.preferred() == first, 10)
    settled(wan, first)
    assert wan.requests(10) == {first: 10}

    # the router's BIRD dies (the box is up, its routing is not): the session drops, the client moves
    router = wan.pops[first].router
    assert router is not None
    router.procs["bird"].send_signal(signal.SIGKILL)
    took = wait(f"the internet to prefer PoP {other}", lambda: wan.preferred() == other, 15)
    print(f"router BIRD killed: the internet moved to PoP {other} in {took:.2f} s")
    assert wan.sessions()[first] != "Established"
    settled(wan, other)
    assert wan.requests(10) == {other: 10}
