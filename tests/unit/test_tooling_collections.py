"""The offline collection tooling: the lists agree, and the fetch script unpacks exactly them."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fetch-collections.sh"


def _collections_txt(path: Path = ROOT / "collections.txt") -> dict[str, str]:
    wanted = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split()
            wanted[name] = version
    return wanted


def _script_pin() -> str:
    match = re.search(r'^ANSIBLE_WHEEL_VERSION="([^"]+)"', SCRIPT.read_text(), re.MULTILINE)
    assert match, "fetch-collections.sh lost its ANSIBLE_WHEEL_VERSION pin"
    return match.group(1)


def _run(env_extra: dict[str, str], root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, **env_extra}
    return subprocess.run(
        ["bash", str(root / "scripts" / "fetch-collections.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_requirements_yml_matches_collections_txt() -> None:
    data = yaml.safe_load((ROOT / "requirements.yml").read_text())
    galaxy = {c["name"]: str(c["version"]) for c in data["collections"]}
    assert galaxy == _collections_txt()


def test_collections_we_rely_on_are_listed() -> None:
    assert {"ansible.posix", "ansible.utils", "ansible.netcommon", "community.general"} <= set(_collections_txt())


def test_wheel_pin_matches_ansible_core_series() -> None:
    """ansible N.x ships for one ansible-core series; 12.x is the one for ansible-core 2.19."""
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["ansible-core"].startswith("2.19.")
    assert _script_pin().split(".")[0] == "12"


def test_ansible_cfg_points_at_the_project_trees() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    defaults = cfg["defaults"]
    assert defaults["collections_path"].split(":")[0] == "./collections"
    assert defaults["inventory"] == "inventory/lab"
    assert defaults["roles_path"] == "./roles"
    assert defaults["library"] == "./plugins/modules"
    assert defaults["module_utils"] == "./plugins/module_utils"
    assert defaults["action_plugins"] == "./plugins/action"
    assert defaults["filter_plugins"] == "./plugins/filter"
    assert defaults["interpreter_python"] == "auto_silent"
    assert defaults.getboolean("retry_files_enabled") is False
    assert cfg["ssh_connection"].getboolean("pipelining") is True
    assert "host_key_checking" not in defaults, "lab-only SSH settings belong in inventory/lab"


# The fetch tests share the project's wheel cache (.cache/); the first run downloads the wheel.
def test_fetch_unpacks_exactly_the_listed_collections(tmp_path: Path) -> None:
    dest = tmp_path / "collections"
    env = {"EDGEPOP_COLLECTIONS_DIR": str(dest), "EDGEPOP_CACHE_DIR": str(ROOT / ".cache")}

    first = _run(env)
    assert first.returncode == 0, first.stderr
    wanted = _collections_txt()
    found = {}
    for manifest in (dest / "ansible_collections").glob("*/*/MANIFEST.json"):
        info = json.loads(manifest.read_text())["collection_info"]
        found[f"{info['namespace']}.{info['name']}"] = info["version"]
    assert found == wanted

    second = _run(env)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout

    # A collection removed by hand is noticed and put back.
    shutil.rmtree(dest / "ansible_collections" / "ansible" / "posix")
    third = _run(env)
    assert third.returncode == 0, third.stderr
    assert "up to date" not in third.stdout
    assert (dest / "ansible_collections" / "ansible" / "posix" / "MANIFEST.json").is_file()


def test_fetch_refuses_a_version_the_wheel_does_not_ship(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, root / "scripts" / "fetch-collections.sh")
    (root / "collections.txt").write_text("ansible.posix 0.0.1\n")
    dest = root / "collections"

    result = _run({"EDGEPOP_CACHE_DIR": str(ROOT / ".cache")}, root=root)

    assert result.returncode != 0
    assert "ansible.posix: collections.txt wants 0.0.1, the wheel ships" in result.stderr
    assert not (dest / "ansible_collections").exists()
    assert not (dest / ".edgepop-collections.stamp").exists()
