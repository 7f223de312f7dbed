"""Run a playbook the way the tests drive roles and modules: ansible-playbook with the project's
ansible.cfg and the JSON callback, on the controller itself unless an inventory is given.

`from playbook_run import run_play` (tests/ is on sys.path, see conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


@dataclass
class PlayRun:
    """The JSON callback's report of one run, and everything the run printed (for failure messages)."""

    report: dict[str, Any]
    output: str

    def stats(self, host: str = "localhost") -> dict[str, Any]:
        stats: dict[str, Any] = self.report["stats"][host]
        return stats

    def tasks(self, host: str = "localhost", play: int = 0) -> dict[str, dict[str, Any]]:
        """Each task's result on `host`, by task name (as the callback names it: `role : task`)."""
        return {t["task"]["name"]: t["hosts"].get(host, {}) for t in self.report["plays"][play]["tasks"]}

    def first(self, host: str = "localhost") -> dict[str, Any]:
        """The first task's result on `host`: what a one-task play registered."""
        result: dict[str, Any] = self.report["plays"][0]["tasks"][0]["hosts"][host]
        return result


def run_play(
    tmp_path: Path,
    plays: list[dict[str, Any]],
    *flags: str,
    inventory: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> PlayRun:
    """Write `plays` to tmp_path/play.yml and run it; without `inventory`, on localhost over the
    local connection with this interpreter."""
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump(plays))
    target = ["-i", "localhost,", "-c", "local"] if inventory is None else ["-i", str(inventory)]
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        **(env or {}),
    }
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *target, str(book), *flags],
        capture_output=True, text=True, env=environ, cwd=ROOT, check=False, timeout=timeout,
    )  # fmt: skip
    start = done.stdout.find("{")
    assert start >= 0, done.stdout + done.stderr
    report, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    return PlayRun(report, done.stdout + done.stderr)
