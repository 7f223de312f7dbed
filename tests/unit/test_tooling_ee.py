"""The execution environment definition produces a build context with our pins (no container build)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==", 1)
            pins[name.lower().replace("_", "-")] = version
    return pins


def _ansible_builder() -> str:
    beside_python = Path(sys.executable).parent / "ansible-builder"
    found = str(beside_python) if beside_python.exists() else shutil.which("ansible-builder")
    if found is None:
        pytest.skip("ansible-builder is not installed (pip install -r requirements.txt)")
    return found


def test_ee_python_pins_match_the_controller() -> None:
    controller = _pins(ROOT / "requirements.txt")
    ee = _pins(ROOT / "requirements-ee.txt")
    assert {"napalm", "netmiko", "pydantic", "ruamel.yaml", "jinja2", "pyyaml"} <= set(ee)
    assert {name: controller.get(name) for name in ee} == ee

    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    core = definition["dependencies"]["ansible_core"]["package_pip"]
    assert core == f"ansible-core=={controller['ansible-core']}"


def test_ansible_builder_create_writes_the_context(tmp_path: Path) -> None:
    builder = _ansible_builder()
    context = tmp_path / "ee"

    result = subprocess.run(
        [builder, "create", "-f", str(ROOT / "execution-environment.yml"), "--context", str(context)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core==2.19.14" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (ROOT / "requirements-ee.txt").read_text()
    assert (build / "requirements.yml").read_text() == (ROOT / "requirements.yml").read_text()
    assert (build / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
