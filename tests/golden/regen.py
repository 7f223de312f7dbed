"""Re-render the golden files: `python tests/golden/regen.py` (or `python -m tests.golden.regen`).

Every golden inventory (tests/golden/inventories/<name>), the lab (inventory/lab) and each example
PoP (inventory/examples/<name>) is rendered exactly as `edgepop render` does, into
tests/golden/expected/<name>/. tests/unit/test_render_golden.py asserts the committed files equal a
fresh render, so a template or derive change shows up as a reviewable diff of these files.
Expected trees whose inventory no longer exists are removed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
EXPECTED = GOLDEN / "expected"
MANIFEST = ".edgepop-render"


def golden_inventories() -> dict[str, Path]:
    """Expected-tree name -> inventory directory, for every inventory under golden test."""
    found: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        if name in found:
            raise SystemExit(f"two golden inventories are both named {name!r}: {found[name]} and {path}")
        found[name] = path

    for path in sorted((GOLDEN / "inventories").iterdir()):
        if (path / "hosts.yml").is_file():
            add(path.name, path)
    if (REPO / "inventory" / "lab" / "hosts.yml").is_file():
        add("lab", REPO / "inventory" / "lab")
    examples = REPO / "inventory" / "examples"
    if examples.is_dir():
        for path in sorted(examples.iterdir()):
            if (path / "hosts.yml").is_file():
                add(f"example-{path.name}", path)
    return found


def render_inventory(path: Path) -> dict[str, str]:
    """Relative path -> content, as `edgepop render` writes it; raises on an invalid inventory."""
    from edgepop.render import render_pop
    from edgepop.validate import validate_inventory

    report = validate_inventory(path)
    if report.model is None:
        raise ValueError(f"{path} is not a valid inventory:\n{report.format(str(path))}")
    return render_pop(report.model)


def read_tree(root: Path) -> dict[str, str]:
    """The committed expected files of one inventory (the render manifest excluded)."""
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def main() -> int:
    from edgepop.render import write_tree

    inventories = golden_inventories()
    EXPECTED.mkdir(parents=True, exist_ok=True)
    for stale in sorted(p for p in EXPECTED.iterdir() if p.is_dir() and p.name not in inventories):
        shutil.rmtree(stale)
        print(f"removed {stale.relative_to(REPO)} (its inventory is gone)")
    for name, path in inventories.items():
        out = EXPECTED / name
        files = render_inventory(path)
        # write_tree removes only what its manifest lists: start clean so strays cannot survive
        if out.is_dir() and set(read_tree(out)) - set(files):
            shutil.rmtree(out)
        changed, removed = write_tree(files, out)
        print(f"{out.relative_to(REPO)}: {len(changed)} changed, {len(removed)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
