"""The lacp_bond role on the controller, reading recorded bonds (tests/data/bonding/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playbook_run import run_play

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "bonding"
BOND0 = {"name": "bond0", "group": "external", "members": ["ext0", "ext1", "ext2"], "lacp_rate": "fast"}


def play_role(tmp_path: Path, layout: str, *flags: str) -> dict[str, Any]:
    variables = {
        "edgepop_device": {"hostname": "srv", "kind": "server", "interfaces": {"bonds": [BOND0]}},
        "lacp_bond__root": str(DATA / layout),
        "lacp_bond__retries": 1,
        "lacp_bond__delay": 0,
    }
    run = run_play(
        tmp_path, [{"hosts": "localhost", "gather_facts": False, "vars": variables, "roles": ["lacp_bond"]}], *flags
    )
    return {"stats": run.stats(), "tasks": run.tasks()}


FAIL = "lacp_bond : Check that every LACP bond has aggregated"


def test_a_healthy_bond_passes(tmp_path: Path) -> None:
    out = play_role(tmp_path, "healthy")
    assert out["stats"]["failures"] == 0 and out["stats"]["changed"] == 0, out


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("other-aggregator", "bond0 port ext2 is in aggregator 2, not the active aggregator 1"),
        ("partner-zero", "bond0 has no LACP partner (partner MAC 00:00:00:00:00:00)"),
        ("slow-rate", "bond0 LACP rate is slow, not fast"),
    ],
)
def test_a_broken_bond_fails_naming_the_bond_and_the_problem(tmp_path: Path, layout: str, message: str) -> None:
    out = play_role(tmp_path, layout)
    assert out["stats"]["failures"] == 1
    assert message in json.dumps(out["tasks"][FAIL])


def test_check_mode_reads_nothing(tmp_path: Path) -> None:
    out = play_role(tmp_path, "other-aggregator", "--check")
    assert out["stats"]["failures"] == 0, out
