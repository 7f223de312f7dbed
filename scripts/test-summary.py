#!/usr/bin/env python3
"""Add up the results of a `make test` run: pytest JUnit reports plus one line per non-pytest step.

Prints per-step lines and the closing line `N passed, N failed, N skipped`. Exits 1 when anything
failed, when a whole step skipped, or when no test ran at all (an empty run must never look green).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(results: Path) -> int:
    passed = failed = skipped = 0
    lines: list[str] = []
    for report in sorted(results.glob("*.xml")):
        root = ET.parse(report).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        t = sum(int(s.get("tests", 0)) for s in suites)
        f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
        s_ = sum(int(s.get("skipped", 0)) for s in suites)
        passed += t - f - s_
        failed += f
        skipped += s_
        lines.append(f"  pytest {report.stem:<12} {t - f - s_} passed, {f} failed, {s_} skipped")
    for step in sorted(results.glob("*.step")):
        status = step.read_text().strip()
        if status == "ok":
            passed += 1
        elif status.startswith("skip"):
            # a whole step that skipped proved nothing: it fails the run like a failed step
            failed += 1
            status = f"{status} (counts as a failure)"
        else:
            failed += 1
        lines.append(f"  step   {step.stem:<12} {status}")
    print("\n".join(lines))
    if passed + failed == 0:
        print("no test ran: counting that as a failure")
        failed = 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/test-results")))
