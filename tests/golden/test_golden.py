"""Golden files: a fresh render of every golden inventory equals the committed expected tree.

A failure here means a template, derive or an inventory changed the output. If the change is
intended, regenerate with `python tests/golden/regen.py` and review the diff of tests/golden/expected/.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
REGEN_HINT = "if the change is intended, run `python tests/golden/regen.py` and review the diff"


def _load_regen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("golden_regen", REPO / "tests" / "golden" / "regen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regen = _load_regen()
INVENTORIES: dict[str, Path] = regen.golden_inventories()


@cache
def rendered(name: str) -> dict[str, str]:
    files: dict[str, str] = regen.render_inventory(INVENTORIES[name])
    return files


def test_golden_inventories_found() -> None:
    # the synthetic ones are always there; a broken discovery must not pass as "nothing to compare"
    assert {"junos-router", "bird-edge"} <= set(INVENTORIES)


@pytest.mark.parametrize("name", sorted(INVENTORIES))
def test_render_matches_golden(name: str) -> None:
    expected_dir = regen.EXPECTED / name
    assert expected_dir.is_dir(), f"no golden files for {name} in {expected_dir}; {REGEN_HINT}"
    expected = regen.read_tree(expected_dir)
    actual = rendered(name)
    missing = sorted(set(actual) - set(expected))
    extra = sorted(set(expected) - set(actual))
    assert not missing, f"{name}: rendered but not in the golden files: {missing}; {REGEN_HINT}"
    assert not extra, f"{name}: golden files the render no longer produces: {extra}; {REGEN_HINT}"
    for rel in sorted(actual):
        if actual[rel] != expected[rel]:
            diff = "".join(
                difflib.unified_diff(
                    expected[rel].splitlines(keepends=True),
                    actual[rel].splitlines(keepends=True),
                    f"golden/{name}/{rel}",
                    f"rendered/{name}/{rel}",
                )
            )
            pytest.fail(f"{name}/{rel} differs from its golden file; {REGEN_HINT}\n{diff[:4000]}")


def _bird() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("bird", path=path)


@pytest.mark.skipif(_bird() is None, reason="the bird binary (Debian package bird2) is not installed")
@pytest.mark.parametrize("name", sorted(INVENTORIES))
def test_bird_accepts_rendered_configs(name: str, tmp_path: Path) -> None:
    """`bird -p` parses every rendered bird.conf: the golden files are real BIRD 2 configs."""
    bird = _bird()
    assert bird is not None
    configs = {rel: text for rel, text in rendered(name).items() if rel.endswith("/bird.conf")}
    assert configs, f"{name} renders no bird.conf (every PoP has servers, which run BIRD)"
    rejected = []
    for rel, text in sorted(configs.items()):
        conf = tmp_path / rel.replace("/", "_")
        conf.write_text(text, encoding="utf-8")
        proc = subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            rejected.append(f"{rel}: {proc.stderr.strip() or proc.stdout.strip()}")
    assert not rejected, f"bird rejects configs of {name}:\n" + "\n".join(rejected)
