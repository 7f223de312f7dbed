"""Shared fixtures: a private, writable copy of the lab inventory."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAB_INVENTORY = REPO / "inventory" / "lab"


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    """A copy of inventory/lab that a test may edit freely."""
    target = tmp_path / "lab"
    shutil.copytree(LAB_INVENTORY, target)
    return target


# tests/sims holds the device simulators (`from sims.eos_eapi import EapiServer`)
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


# Every skip fails unless the test is marked opt_in (tests/skip_policy.py says why).
from skip_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402

__all__ = ["lab_copy", "pytest_make_collect_report", "pytest_runtest_makereport"]
