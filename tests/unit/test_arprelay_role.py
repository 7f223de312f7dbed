"""The arprelay role on the controller itself, once as the relay (the golden inventory's Linux switch)
and once as a server's host agent: connection local, every path under a temporary directory and
`arprelay__service: false` (no systemd here), so what runs is the bundle, the release switch and the
configuration rendered with the vaulted token and checked by the agent's own `--check-config`."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from playbook_run import run_play

from edgepop.agents.arprelay.config import HostConfig, RelayConfig, load_config
from edgepop.derive import derive_all
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "golden" / "inventories" / "arprelay-switch"
TOKEN = "relay-t0ken: 'quoted'"


def play(tmp_path: Path, host: str) -> tuple[dict[str, Any], str]:
    configs = derive_all(load_valid(INVENTORY))
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "edgepop_device": configs[host]}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    variables = {
        "vault_arprelay_token": TOKEN,
        "arprelay__service": False,
        "arprelay__python": sys.executable,
        "arprelay__prefix": str(tmp_path / "opt"),
        "arprelay__bundle": str(tmp_path / "build" / "bundle.tar.gz"),
        "arprelay__config": str(tmp_path / "etc" / "arprelay.yml"),
        "arprelay__state_file": str(tmp_path / "lib" / "arprelay.json"),
    }
    book = [{"hosts": "all", "gather_facts": False, "vars": variables, "roles": ["arprelay"]}]
    run = run_play(tmp_path, book, inventory=tmp_path / "hosts.yml", timeout=300)
    return run.stats(), run.output


@pytest.mark.parametrize(("host", "kind"), [("sw1", RelayConfig), ("srv1", HostConfig)])
def test_role_installs_a_checked_config_with_the_vaulted_token_then_changes_nothing(
    tmp_path: Path, host: str, kind: type
) -> None:
    stats, output = play(tmp_path, host)
    assert stats["failures"] == 0 and stats["unreachable"] == 0, output
    assert stats["changed"] > 0
    conf = tmp_path / "etc" / "arprelay.yml"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    cfg = load_config(str(conf))
    assert isinstance(cfg, kind)
    assert cfg.token is not None and cfg.token.get_secret_value() == TOKEN
    assert (tmp_path / "opt" / "lib" / "EDGEPOP_BUNDLE.json").is_file()
    assert TOKEN not in output, "the token in the play's output"

    again, output = play(tmp_path, host)
    assert again["failures"] == 0 and again["changed"] == 0, output


def test_role_does_nothing_where_the_pop_has_no_relay(tmp_path: Path) -> None:
    configs = derive_all(load_valid(ROOT / "inventory" / "lab"))
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "edgepop_device": configs["srv1"]}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    book = [{"hosts": "all", "gather_facts": False, "vars": {"arprelay__prefix": str(tmp_path / "opt")},
             "roles": ["arprelay"]}]  # fmt: skip
    run = run_play(tmp_path, book, inventory=tmp_path / "hosts.yml")
    assert run.stats()["failures"] == 0 and run.stats()["changed"] == 0, run.output
    assert not (tmp_path / "opt").exists()
