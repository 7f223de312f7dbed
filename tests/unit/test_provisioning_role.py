"""The provisioning role on the controller itself: connection local, every path under a temporary
directory and `provisioning__service: false` (no systemd here), so what is exercised is the bundle,
the plan rendered with the vaulted token and checked by provisiond's `--check-config`, dnsmasq's
configuration, boot.ipxe and the per-MAC iPXE scripts, and a second run that changes nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from edgepop.agents.provisiond.config import load_plan
from edgepop.derive import derive_all
from edgepop.image.release import generate_key
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "role-callhome-token-'0123456789"


def play(tmp_path: Path, *, image_key: bool = True, **role_vars: Any) -> tuple[dict[str, Any], str]:
    control = derive_all(load_valid(ROOT / "inventory" / "lab"))["ctl1"]
    key = tmp_path / "signing.pem"
    public = generate_key(key) if not key.exists() else (tmp_path / "public").read_text()
    (tmp_path / "public").write_text(public)
    control["provisioning"]["image"]["public_key"] = public if image_key else None
    inventory = {"all": {"children": {"control": {"hosts": {"localhost": {
        "ansible_connection": "local", "edgepop_device": control}}}}}}  # fmt: skip
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    variables = {
        "vault_callhome_token": TOKEN,
        "provisioning__service": False,
        "provisioning__interface": "epztp0",
        "provisioning__python": sys.executable,
        "provisioning__prefix": str(tmp_path / "opt"),
        "provisioning__bundle": str(tmp_path / "build" / "bundle.tar.gz"),
        "provisioning__plan": str(tmp_path / "etc" / "provisiond.json"),
        "provisioning__ipxe_dir": str(tmp_path / "etc" / "ipxe"),
        "provisioning__dnsmasq_conf": str(tmp_path / "etc" / "dnsmasq-pxe.conf"),
        "provisioning__state_dir": str(tmp_path / "state"),
        "provisioning__tftp_root": str(tmp_path / "tftp"),
        "provisioning__undionly": str(tmp_path / "no-ipxe-here"),
        **role_vars,
    }
    book = tmp_path / "play.yml"
    book.write_text(
        yaml.safe_dump([{"hosts": "control", "gather_facts": False, "vars": variables, "roles": ["provisioning"]}])
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "PYTHONPATH": str(ROOT / "src"),
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(book)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=300,
    )  # fmt: skip
    start = done.stdout.find("{")
    assert start >= 0, done.stdout + done.stderr
    report, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    return report["stats"]["localhost"], done.stdout + done.stderr


def test_role_installs_plan_and_boot_files_then_changes_nothing(tmp_path: Path) -> None:
    stats, output = play(tmp_path)
    assert stats["failures"] == 0 and stats["unreachable"] == 0, output
    plan_file = tmp_path / "etc" / "provisiond.json"
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o600
    plan = load_plan(plan_file)
    assert plan.callhome_token.get_secret_value() == TOKEN and plan.pop == "lab1"
    scripts = sorted(p.name for p in (tmp_path / "etc" / "ipxe").iterdir())
    assert scripts == [f"02-00-00-00-0{i}-00.ipxe" for i in range(1, 5)] + ["default.ipxe"]
    assert "edgepop.host=srv1" in (tmp_path / "etc" / "ipxe" / "02-00-00-00-01-00.ipxe").read_text()
    assert (tmp_path / "tftp" / "boot.ipxe").read_text().startswith("#!ipxe\n")
    assert "dhcp-host=02:00:00:00:01:00,203.0.113.11,srv1,1h" in (tmp_path / "etc" / "dnsmasq-pxe.conf").read_text()
    assert (tmp_path / "opt" / "lib" / "EDGEPOP_BUNDLE.json").is_file()
    assert TOKEN not in output, "the call-home token in the play's output"

    again, output = play(tmp_path)
    assert again["failures"] == 0 and again["changed"] == 0, output


def test_role_refuses_a_pop_without_an_image_key(tmp_path: Path) -> None:
    stats, output = play(tmp_path, image_key=False)
    assert stats["failures"] == 1 and "provisioning__interface" not in output
    assert "image_public_key is not set" in output
    assert not (tmp_path / "etc").exists()
