"""Decrypt an inventory secret for the lab's own stand-ins (a provider must know the BGP password).

Only the lab needs plaintext outside Ansible; it uses the `ansible-vault` command so the project's
Python code never imports Ansible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgepop.lab.topology import LabError
from edgepop.model.loader import load_inventory
from edgepop.model.pop import PopModel
from edgepop.model.secrets import VaultText, vault_reference

DEFAULT_PASSWORD_FILE = Path(__file__).resolve().parents[3] / "lab" / "vault-password"


def password_file() -> Path:
    return Path(os.environ.get("EDGEPOP_VAULT_PASSWORD_FILE", DEFAULT_PASSWORD_FILE))


def _ansible_vault() -> str:
    """ansible-vault of the environment edgepop runs in (its venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("ansible-vault")
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-vault")
    if found is None:
        raise LabError("ansible-vault is not installed (run `make setup`)")
    return found


def decrypt(ciphertext: str) -> str:
    pw = password_file()
    if not pw.is_file():
        raise LabError(f"vault password file {pw} not found (set EDGEPOP_VAULT_PASSWORD_FILE)")
    with tempfile.NamedTemporaryFile("w", suffix=".vault", delete=False) as fh:
        fh.write("\n".join(line.strip() for line in ciphertext.strip().splitlines()) + "\n")
        path = fh.name
    try:
        proc = subprocess.run(
            [_ansible_vault(), "decrypt", "--vault-password-file", str(pw), "--output", "-", path],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise LabError(f"cannot decrypt a vaulted secret: {proc.stderr.strip()}")
    return proc.stdout


def resolve_secret(model: PopModel, value: str) -> str:
    """Plaintext of an inline !vault value or of a '{{ vault_x }}' reference."""
    if isinstance(value, VaultText):
        return decrypt(value)
    name = vault_reference(value)
    if name is None:
        raise LabError(f"not a vaulted secret: {value!r}")
    inv = load_inventory(model.root)
    for variables in [inv.group_vars.get("all", {}), *inv.group_vars.values()]:
        if name in variables:
            raw = variables[name].value
            return decrypt(raw) if isinstance(raw, VaultText) else str(raw)
    raise LabError(f"{name} is not defined in the inventory's group_vars")
