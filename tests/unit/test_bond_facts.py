"""bond_facts: recorded /proc/net/bonding and sysfs of a healthy bond and of three broken ones."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "bonding"
MEMBERS = {"bond0": ["ext0", "ext1", "ext2"]}

_spec = importlib.util.spec_from_file_location("bond_facts_under_test", ROOT / "plugins/modules/bond_facts.py")
assert _spec and _spec.loader
bond_facts: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bond_facts)


def run(args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    out = io.StringIO()
    payload = {**args, "_ansible_check_mode": check}
    with patch_module_args(payload), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        bond_facts.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def test_healthy_bond_parses_into_facts() -> None:
    out = run({"root": str(DATA / "healthy"), "members": MEMBERS})
    assert out["changed"] is False and out["ok"] is True and out["problems"] == {}
    bond = out["ansible_facts"]["bond_facts"]["bond0"]
    assert {
        k: bond[k] for k in ("mode", "lacp_rate", "xmit_hash_policy", "miimon", "aggregator_id", "partner_mac")
    } == {
        "mode": "802.3ad",
        "lacp_rate": "fast",
        "xmit_hash_policy": "layer3+4",
        "miimon": 100,
        "aggregator_id": 1,
        "partner_mac": "44:4c:a8:12:34:56",
    }
    assert sorted(bond["slaves"]) == ["ext0", "ext1", "ext2"]
    ext1 = bond["slaves"]["ext1"]
    assert ext1["aggregator_id"] == 1 and ext1["partner_mac"] == "44:4c:a8:12:34:56"
    assert ext1["actor_churn"] == ext1["partner_churn"] == "none"
    assert ext1["actor_port_state"] == ext1["partner_port_state"] == 63
    assert bond["ok"] is True and bond["problems"] == []


@pytest.mark.parametrize(
    ("layout", "problems"),
    [
        ("other-aggregator", ["bond0 port ext2 is in aggregator 2, not the active aggregator 1"]),
        ("slow-rate", ["bond0 LACP rate is slow, not fast"]),
        (
            "partner-zero",
            [
                "bond0 has no LACP partner (partner MAC 00:00:00:00:00:00): the switch sends no LACPDUs",
                "bond0 port ext1 is in aggregator 2, not the active aggregator 1",
                "bond0 port ext2 is in aggregator 3, not the active aggregator 1",
            ],
        ),
    ],
)
def test_broken_bonds_are_named_with_their_problem(layout: str, problems: list[str]) -> None:
    out = run({"root": str(DATA / layout), "members": MEMBERS})
    assert out["ok"] is False
    assert out["problems"] == {"bond0": problems}
    assert out["ansible_facts"]["bond_facts"]["bond0"]["ok"] is False


def test_churn_is_reported_for_a_silent_partner() -> None:
    bond = run({"root": str(DATA / "partner-zero")})["ansible_facts"]["bond_facts"]["bond0"]
    assert {s["partner_churn"] for s in bond["slaves"].values()} == {"churned"}


def test_wrong_members_and_a_missing_bond(tmp_path: Path) -> None:
    out = run(
        {
            "root": str(DATA / "healthy"),
            "names": ["bond0", "bond1"],
            "members": {"bond0": ["ext0", "ext1", "ext3"]},
        }
    )
    assert out["problems"] == {
        "bond0": ["bond0 ports are not the inventory's: missing ext3; extra ext2"],
        "bond1": ["bond1 does not exist (no /proc/net/bonding/bond1)"],
    }


def test_sysfs_alone_is_enough(tmp_path: Path) -> None:
    root = tmp_path / "host"
    shutil.copytree(DATA / "healthy", root)
    (root / "proc/net/bonding/bond0").unlink()
    out = run({"root": str(root), "names": ["bond0"], "members": MEMBERS})
    bond = out["ansible_facts"]["bond_facts"]["bond0"]
    assert bond["mode"] == "802.3ad" and bond["lacp_rate"] == "fast" and bond["miimon"] == 100
    assert sorted(bond["slaves"]) == ["ext0", "ext1", "ext2"]
    assert out["ok"] is True


def test_no_bonds_on_the_host_is_not_an_error(tmp_path: Path) -> None:
    out = run({"root": str(tmp_path)}, check=True)
    assert out["ok"] is True and out["ansible_facts"]["bond_facts"] == {}
