"""The recovery role on the controller itself: connection local, every path under a temporary
directory and `recovery__service: false` (no systemd unit on this machine), so what is exercised is
the bundle, the release switch and the configuration rendered with vaulted credentials and checked
by the agent's own `--check-config`."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import yaml
from playbook_run import run_play

from edgepop.agents.recoveryd.config import load_config
from edgepop.derive import derive_all
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
IPMI_SECRET = "ipmi'pw: #1"
PDU_SECRET = "pdu-community-9"


def play(tmp_path: Path, **role_vars: Any) -> tuple[dict[str, Any], str]:
    configs = derive_all(load_valid(ROOT / "inventory" / "lab"))
    inventory = {
        "all": {
            "children": {
                "control": {"hosts": {"localhost": {"ansible_connection": "local", "edgepop_device": configs["ctl1"]}}},
                "servers": {
                    "hosts": {name: {"edgepop_device": sc} for name, sc in configs.items() if sc["kind"] == "server"}
                },
            }
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    variables = {
        "vault_ipmi_password": IPMI_SECRET,
        "vault_pdu_community": PDU_SECRET,
        "recovery__service": False,
        "recovery__python": sys.executable,
        "recovery__prefix": str(tmp_path / "opt"),
        "recovery__bundle": str(tmp_path / "build" / "bundle.tar.gz"),
        "recovery__config": str(tmp_path / "etc" / "recoveryd.yml"),
        "recovery__audit_log": str(tmp_path / "log" / "audit.jsonl"),
        "recovery__state_file": str(tmp_path / "lib" / "state.json"),
        **role_vars,
    }
    play = [{"hosts": "control", "gather_facts": False, "vars": variables, "roles": ["recovery"]}]
    run = run_play(tmp_path, play, inventory=tmp_path / "hosts.yml", timeout=300)
    return run.stats(), run.output


def test_role_installs_a_valid_config_with_vaulted_credentials_then_changes_nothing(tmp_path: Path) -> None:
    stats, output = play(tmp_path)
    assert stats["failures"] == 0 and stats["unreachable"] == 0, output
    assert stats["changed"] > 0
    conf = tmp_path / "etc" / "recoveryd.yml"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    cfg = load_config(conf)
    assert [s.name for s in cfg.servers] == ["srv1", "srv2", "srv3", "srv4"]
    assert cfg.servers[0].ipmi is not None and cfg.servers[0].ipmi.password.get_secret_value() == IPMI_SECRET
    assert cfg.pdus[0].community.get_secret_value() == PDU_SECRET
    assert cfg.audit_log == str(tmp_path / "log" / "audit.jsonl")
    assert (tmp_path / "opt" / "lib" / "EDGEPOP_BUNDLE.json").is_file()
    assert IPMI_SECRET not in output and PDU_SECRET not in output, "credentials in the play's output"

    again, output = play(tmp_path)
    assert again["failures"] == 0 and again["changed"] == 0, output


def test_role_disabled_installs_nothing(tmp_path: Path) -> None:
    stats, output = play(tmp_path, recovery__enabled=False)
    assert stats["failures"] == 0 and stats["changed"] == 0, output
    assert not (tmp_path / "etc").exists() and not (tmp_path / "opt").exists()
