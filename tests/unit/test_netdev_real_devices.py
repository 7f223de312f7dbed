"""Opt-in: the push engine against a real EOS switch or Junos router (skipped unless configured).

    EDGEPOP_REAL_EOS=address,username,password[,port[,transport]]   transport: https (default) or ssh
    EDGEPOP_REAL_JUNOS=address,username,password[,port]
    EDGEPOP_REAL_COMMIT=1   also commit-confirm the description "edgepop commit test" on
                            EDGEPOP_REAL_INTERFACE (default Ethernet1 / ge-0/0/0) and push it again
    EDGEPOP_REAL_INTERFACE  the interface both tests put a description on

Without EDGEPOP_REAL_COMMIT nothing is committed: the tests load, compare and discard. Use a lab
device: the commit test leaves that description on the interface.
"""

from __future__ import annotations

import os

import pytest

from edgepop.netdev.drivers import Platform, Target, opener
from edgepop.netdev.push import PushRequest, push_config

pytestmark = pytest.mark.opt_in

DEVICES: list[tuple[Platform, str]] = [("eos", "EDGEPOP_REAL_EOS"), ("junos", "EDGEPOP_REAL_JUNOS")]


def target(platform: Platform, env: str) -> Target:
    raw = os.environ.get(env)
    if not raw:
        pytest.skip(f"{env} is not set (address,username,password[,port])")
    parts = raw.split(",")
    if len(parts) < 3:
        pytest.fail(f"{env} must be address,username,password[,port[,transport]]")
    port = int(parts[3]) if len(parts) > 3 and parts[3] else None
    transport = parts[4] if len(parts) > 4 else None
    return Target("real", platform, parts[0], parts[1], parts[2], port=port, transport=transport)


def description(platform: Platform, interface: str, text: str) -> str:
    if platform == "eos":
        return f"interface {interface}\n   description {text}\n"
    return f'interfaces {{\n    {interface} {{\n        description "{text}";\n    }}\n}}\n'


@pytest.mark.parametrize(("platform", "env"), DEVICES)
def test_check_mode_predicts_and_discards(platform: Platform, env: str) -> None:
    tgt = target(platform, env)
    drv = opener(tgt)()
    try:
        hostname = drv.get_facts()["hostname"]
        running = drv.get_config(retrieve="running")["running"]
    finally:
        drv.close()
    iface = os.environ.get("EDGEPOP_REAL_INTERFACE", "Ethernet1" if platform == "eos" else "ge-0/0/0")
    res = push_config(
        PushRequest(host="real", config=description(platform, iface, "edgepop check"), check=True), opener(tgt)
    )
    assert res.changed and "edgepop check" in res.diff and not res.committed
    drv = opener(tgt)()
    try:
        assert drv.get_facts()["hostname"] == hostname
        assert "edgepop check" not in drv.get_config(retrieve="running")["running"]
        assert not drv.has_pending_commit()
    finally:
        drv.close()
    assert running


@pytest.mark.parametrize(("platform", "env"), DEVICES)
def test_commit_confirm_and_second_run(platform: Platform, env: str) -> None:
    tgt = target(platform, env)
    if os.environ.get("EDGEPOP_REAL_COMMIT") != "1":
        pytest.skip("EDGEPOP_REAL_COMMIT=1 is not set: no commit on a real device")
    iface = os.environ.get("EDGEPOP_REAL_INTERFACE", "Ethernet1" if platform == "eos" else "ge-0/0/0")
    revert = 120 if platform == "junos" else 60
    multiple = 60 if platform == "junos" else 1
    config = description(platform, iface, "edgepop commit test")
    common = {"host": "real", "revert_in": revert, "revert_multiple": multiple, "bgp_wait": 30.0}
    res = push_config(PushRequest(config=config, **common), opener(tgt))  # type: ignore[arg-type]
    assert res.committed or not res.changed
    again = push_config(PushRequest(config=config, **common), opener(tgt))  # type: ignore[arg-type]
    assert not again.changed
