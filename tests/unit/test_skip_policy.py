"""Skips fail the run unless the test is marked opt_in (tests/skip_policy.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent

CASES = """
import pytest

def test_skips_for_a_missing_tool():
    pytest.skip("needs frobnicate")

@pytest.mark.opt_in
def test_real_device():
    pytest.skip("EDGEPOP_REAL_EOS is not set")

@pytest.mark.skipif(True, reason="not root")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

def test_passes():
    pass
"""

MODULE_SKIP = """
import pytest
pytest.skip("the lab needs podman", allow_module_level=True)

def test_never_runs():
    pass
"""


def _pytest(tmp_path: Path, **files: str) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "skip_policy", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), "-rA", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip


def test_a_skip_is_a_failure_unless_opt_in(tmp_path: Path) -> None:
    run = _pytest(tmp_path, test_cases=CASES)
    assert run.returncode == 1, run.stdout
    out = run.stdout
    assert "FAILED test_cases.py::test_skips_for_a_missing_tool" in out
    assert "skipped, which counts as a failure: Skipped: needs frobnicate" in out
    assert "ERROR test_cases.py::test_skipif" in out  # a skipif mark skips in the setup phase
    assert "SKIPPED" in out and "EDGEPOP_REAL_EOS is not set" in out
    assert "XFAIL test_cases.py::test_xfail" in out
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in out


def test_a_module_level_skip_is_a_failure(tmp_path: Path) -> None:
    run = _pytest(tmp_path, test_module=MODULE_SKIP)
    assert run.returncode != 0, run.stdout
    assert "the lab needs podman" in run.stdout
    assert "1 error" in run.stdout or "1 failed" in run.stdout, run.stdout
