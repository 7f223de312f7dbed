"""The edgepop_validate action plugin and the playbooks that start with it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "action" / "edgepop_validate.py"
LAB = ROOT / "inventory" / "lab"


def _load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edgepop_validate_action", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin = _load_plugin()


@dataclass
class FakeIssue:
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class FakeReport:
    errors: list[FakeIssue] = field(default_factory=list)
    model: Any = None

    @property
    def ok(self) -> bool:
        return not self.errors


def _action(args: dict[str, Any] | None = None) -> Any:
    task = mock.MagicMock()
    task.args = args or {}
    task.async_val = 0
    task.check_mode = False
    task.action = "edgepop_validate"
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    loader = DataLoader()
    loader.set_basedir(str(ROOT / "playbooks"))
    return plugin.ActionModule(task, connection, mock.MagicMock(), loader, mock.MagicMock(), None)


def _fake_validate(report: FakeReport, seen: list[Path]) -> SimpleNamespace:
    def validate_inventory(path: Path) -> FakeReport:
        seen.append(path)
        return report

    return SimpleNamespace(validate_inventory=validate_inventory, __file__="fake.py")


def test_valid_inventory_reports_the_host_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    model = SimpleNamespace(hostnames=["rtr1", "srv1", "srv2"])
    monkeypatch.setattr(plugin, "_import_validate", lambda: _fake_validate(FakeReport(model=model), seen))

    result = _action().run(task_vars={"inventory_dir": str(tmp_path)})

    assert seen == [tmp_path]
    assert result["changed"] is False
    assert "failed" not in result
    assert result["msg"] == f"inventory {tmp_path} valid (3 hosts)"


def test_invalid_inventory_fails_with_every_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = FakeReport(errors=[FakeIssue("pop.yml:3: pop.asn: bad"), FakeIssue("srv1.yml:9: nics: bad")])
    monkeypatch.setattr(plugin, "_import_validate", lambda: _fake_validate(report, []))

    result = _action({"inventory": str(tmp_path)}).run(task_vars={})

    assert result["failed"] is True
    assert result["msg"] == f"inventory {tmp_path} is invalid: 2 errors"
    assert result["errors"] == ["pop.yml:3: pop.asn: bad", "srv1.yml:9: nics: bad"]


def test_default_inventory_falls_back_to_the_first_source(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("all: {}\n")
    # implicit localhost: no inventory_dir; a host from "-i a,b," gets the text "None"
    assert plugin._default_inventory({"ansible_inventory_sources": [str(hosts)]}) == str(tmp_path)
    assert plugin._default_inventory({"ansible_inventory_sources": [str(tmp_path)]}) == str(tmp_path)
    assert plugin._default_inventory({"inventory_dir": "None", "ansible_inventory_sources": ["a,b,"]}) is None


def test_no_inventory_directory_is_a_clear_failure() -> None:
    with pytest.raises(AnsibleActionFail, match="pass inventory=<directory>"):
        _action().run(task_vars={"ansible_inventory_sources": ["localhost,"]})


def test_missing_package_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ModuleNotFoundError("No module named 'edgepop'", name="edgepop")

    monkeypatch.setattr(plugin, "_import_validate", broken)

    with pytest.raises(AnsibleActionFail, match=r"cannot import edgepop\.validate .*make setup"):
        _action({"inventory": str(tmp_path)}).run(task_vars={})


def test_falls_back_to_the_checkout_when_not_installed() -> None:
    """Without site processing the editable install's .pth is not read: only src/ can serve edgepop."""
    site_packages = sysconfig.get_paths()["purelib"]
    code = (
        "import sys, importlib.util\n"
        f"sys.path.append({site_packages!r})\n"
        "import importlib\n"
        "assert importlib.util.find_spec('edgepop') is None, 'edgepop is importable without src/'\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(PLUGIN)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "print(mod._import_validate().__file__)\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "src" / "edgepop" / "validate.py")


# --- through ansible-playbook, with the project's ansible.cfg ----------------------------------


def _playbook(name: str, inventory: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "ansible-playbook"
    # JSON results: one line per result, so long paths are not wrapped as in the YAML format.
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    }
    return subprocess.run(
        [str(binary), "-i", str(inventory), str(ROOT / "playbooks" / name), "-v"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    if not (LAB / "hosts.yml").is_file():
        pytest.skip("inventory/lab is not there yet")
    copy = tmp_path / "lab"
    shutil.copytree(LAB, copy)
    return copy


def test_validate_playbook_passes_a_valid_inventory(lab_copy: Path) -> None:
    result = _playbook("validate.yml", lab_copy)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f'"msg": "inventory {lab_copy} valid (' in result.stdout


def test_site_stops_on_an_invalid_inventory(lab_copy: Path) -> None:
    pop_file = lab_copy / "group_vars" / "all" / "pop.yml"
    data = yaml.safe_load(pop_file.read_text())
    data["pop"]["name"] = "Not A Valid Name!"
    pop_file.write_text(yaml.safe_dump(data))

    result = _playbook("site.yml", lab_copy)

    assert result.returncode == 2, result.stdout + result.stderr
    assert f'"msg": "inventory {lab_copy} is invalid: 1 error"' in result.stdout
    assert "pop.name" in result.stdout and "Not A Valid Name!" in result.stdout
    # nothing after the gate ran: no device was derived, let alone touched
    assert "Derive each device" not in result.stdout and "Converge" not in result.stdout


def test_a_crashing_validator_is_reported_as_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def validate_inventory(path: Path) -> None:
        raise AttributeError("'list' object has no attribute 'ranges'")

    monkeypatch.setattr(plugin, "_import_validate", lambda: SimpleNamespace(validate_inventory=validate_inventory))

    with pytest.raises(AnsibleActionFail, match=r"crashed \(AttributeError: .*bug in edgepop"):
        _action({"inventory": str(tmp_path)}).run(task_vars={})
