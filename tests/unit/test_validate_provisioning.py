"""Cross-checks of pop.provisioning: the call-home URL on a boot network and a control server's
address, the pool for unknown MACs inside that network and clear of every inventory address."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgepop.validate import validate_inventory

LAB = Path(__file__).resolve().parents[2] / "inventory" / "lab"
URL = "callhome_url: http://203.0.113.5:8080/callhome"


def _errors(tmp_path: Path, old: str, new: str) -> list[str]:
    inventory = tmp_path / "lab"
    shutil.copytree(LAB, inventory)
    pop = inventory / "group_vars" / "all" / "pop.yml"
    text = pop.read_text()
    assert old in text
    pop.write_text(text.replace(old, new))
    return [str(e) for e in validate_inventory(inventory).errors]


def test_lab_is_valid_with_a_pool(tmp_path: Path) -> None:
    pool = f"{URL}\n    dhcp_pool: {{start: 203.0.113.50, end: 203.0.113.60}}"
    assert _errors(tmp_path, URL, pool) == []


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (
            "callhome_url: http://198.51.100.200:8080/callhome",
            "198.51.100.200 is in neither management_v4 (203.0.113.0/26) nor lan_v4 (198.51.100.0/27)",
        ),
        ("callhome_url: http://203.0.113.9:8080/callhome", "203.0.113.9 is not an address of a control server"),
        ("callhome_url: https://203.0.113.5:8443/callhome", "provisiond serves plain HTTP"),
        (
            f"{URL}\n    dhcp_pool: {{start: 203.0.113.50, end: 203.0.113.70}}",
            "provisioning.dhcp_pool.end: 203.0.113.70 is outside management_v4 203.0.113.0/26",
        ),
        (
            f"{URL}\n    dhcp_pool: {{start: 203.0.113.10, end: 203.0.113.20}}",
            "203.0.113.10-203.0.113.20 holds 203.0.113.11, the address of srv1 mgmt0",
        ),
        (
            f"{URL}\n    dhcp_pool: {{start: 203.0.113.30, end: 203.0.113.20}}",
            "start (203.0.113.30) is after end (203.0.113.20)",
        ),
    ],
)
def test_provisioning_mistakes_are_named(tmp_path: Path, new: str, expected: str) -> None:
    errors = _errors(tmp_path, URL, new)
    assert any(expected in e for e in errors), errors
