"""A pytest plugin: skips may not hide a step of `make test`.

A lab or VM test that skips because this machine lacks a prerequisite would let `make test` pass
without proving anything. Every skip is turned into a failure that names the reason, except for
tests marked `opt_in` (the real-device tests, which need hardware and credentials from the operator).
`edgepop doctor` lists what a machine is missing and how to get it. tests/conftest.py loads it.
"""

from __future__ import annotations

import pytest

_SKIP_HINT = "a test may only skip when marked opt_in; run `edgepop doctor` (or `make setup`) to get what is missing"


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("opt_in") is None:
        report.outcome = "failed"
        report.longrepr = f"skipped, which counts as a failure: {_skip_reason(report.longrepr)}\n({_SKIP_HINT})"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """A module-level `pytest.skip(..., allow_module_level=True)` skips a whole file at collection."""
    report: pytest.CollectReport = yield
    if report.skipped and not _module_opts_in(collector):
        report.outcome = "failed"
        report.longrepr = f"skipped, which counts as a failure: {_skip_reason(report.longrepr)}\n({_SKIP_HINT})"
    return report


def _module_opts_in(collector: pytest.Collector) -> bool:
    module = getattr(collector, "_obj", None)  # never `.obj`: it would import a skipping module again
    marks = getattr(module, "pytestmark", [])
    marks = marks if isinstance(marks, list) else [marks]
    return any(getattr(m, "name", "") == "opt_in" for m in marks)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker when this plugin is loaded on its own (`-p skip_policy`)."""
    config.addinivalue_line("markers", "opt_in: needs something only an operator can provide; may skip")
